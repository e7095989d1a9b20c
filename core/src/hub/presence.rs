//! Presence: members of a room and their `join`/`leave` events.

use super::*;

impl<A: Authenticator, S: Storage> Hub<A, S> {
    pub(super) fn member_of(&self, id: ConnId) -> Option<Member<'_>> {
        member_in::<S, A::Identity>(&self.conns, id)
    }

    pub(super) fn presence_reply(
        &mut self,
        now: Instant,
        id: ConnId,
        req: Option<u64>,
        name: &str,
    ) {
        let Some(codec) = self.conns.at(id).map(|c| c.codec) else {
            return;
        };
        #[cfg(feature = "alloc")]
        if self.remote.is_some() {
            return self.presence_remote(now, id, req, name);
        }
        #[cfg(not(feature = "alloc"))]
        let _ = now;
        match self.presence_local(codec, req, name) {
            Ok(encoded) => self.unicast(id, codec, encoded),
            Err((code, reason)) => self.reply_error(id, req, code, reason),
        }
    }

    /// Encodes the `presence` frame of `name` from this hub's own tables.
    /// The list is gathered in the storage's own member list, so it holds
    /// every member a room can have: never truncated. A reply larger than
    /// the output storage (fixed capacities) answers 4006 instead.
    pub(super) fn presence_local(
        &mut self,
        codec: Codec,
        req: Option<u64>,
        name: &str,
    ) -> Result<Result<Range<usize>, crate::protocol::EncodeError>, (ErrorCode, &'static str)> {
        let mut members: S::Members<Member<'_>> = Default::default();
        if let Some(room) = self.index.find(name).and_then(|k| self.rooms.get(k)) {
            for s in room.subscribers.as_slice() {
                if let Some(m) = member_in::<S, A::Identity>(&self.conns, s.conn)
                    && members.push(m).is_err()
                {
                    // Cannot happen: a room has no more subscribers than
                    // one member list holds. Still never a truncated list.
                    return Err((ErrorCode::Limit, "presence list larger than one reply"));
                }
            }
        }
        let frame = ServerFrame::Presence {
            id: req,
            room: Text::Borrowed(name),
            members: crate::protocol::Seq::Borrowed(members.as_slice()),
        };
        let r = self.arena.encode(codec, &frame);
        drop(members);
        match r {
            Err(crate::protocol::EncodeError::BufferFull) => Err((
                ErrorCode::Limit,
                "presence list larger than the output buffer",
            )),
            r => Ok(r),
        }
    }

    /// Sends `join` (or `leave`) of `member` to the presence watchers of room `key`.
    pub(super) fn broadcast_presence(&mut self, key: u32, join: bool, member: &MemberCopy) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let (name, member) = (Text::Borrowed(room.name.as_str()), member.get());
        let frame = if join {
            ServerFrame::Join { room: name, member }
        } else {
            ServerFrame::Leave { room: name, member }
        };
        let json = (room.json > 0)
            .then(|| self.arena.encode(Codec::Json, &frame).ok())
            .flatten();
        let postcard = (room.postcard > 0)
            .then(|| self.arena.encode(Codec::Postcard, &frame).ok())
            .flatten();
        // Presence events are best-effort when a fixed-capacity queue is full.
        let _ = self.records.push_back(Record::Broadcast {
            room: key,
            json,
            postcard,
            audience: Audience::PresenceWatchers,
            offset: u64::MAX,
        });
    }
}

pub(super) fn member_in<'c, S: Storage + 'c, I: Identity + 'c>(
    conns: &'c S::Conns<Conn<S, I>>,
    id: ConnId,
) -> Option<Member<'c>> {
    let conn = conns.at(id)?;
    let identity = conn.identity.as_ref();
    Some(Member {
        client: Text::Borrowed(&conn.client),
        user: identity.and_then(|i| i.user()).map(Text::Borrowed),
        info: identity.and_then(|i| i.info()).map(Data::Borrowed),
    })
}

/// A user id copied inline (user ids longer than this are cut in `from`).
pub(super) type ShortUser = heapless::String<128>;

pub(super) fn to_short(user: &str) -> Option<ShortUser> {
    let mut s = ShortUser::new();
    let mut end = user.len().min(128);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    s.push_str(&user[..end]).ok()?;
    Some(s)
}

/// A member copied out of the tables so that the tables can be borrowed
/// again while its frame is encoded.
pub(super) struct MemberCopy {
    client: ClientId,
    user: Option<ShortUser>,
    #[cfg(feature = "alloc")]
    info: Option<Vec<u8>>,
    #[cfg(not(feature = "alloc"))]
    info: Option<heapless::Vec<u8, 256>>,
}

impl MemberCopy {
    pub(super) fn get(&self) -> Member<'_> {
        Member {
            client: Text::Borrowed(&self.client),
            user: self.user.as_ref().map(|u| Text::Borrowed(u.as_str())),
            info: self.info.as_ref().map(|i| Data::Borrowed(i)),
        }
    }
}

pub(super) fn member_static(m: &Member<'_>) -> MemberCopy {
    let mut client = ClientId::new();
    let _ = client.push_str(&m.client);
    MemberCopy {
        client,
        user: m.user.as_ref().and_then(|u| to_short(u)),
        #[cfg(feature = "alloc")]
        info: m.info.as_ref().map(|i| i.to_vec()),
        #[cfg(not(feature = "alloc"))]
        info: m
            .info
            .as_ref()
            .and_then(|i| heapless::Vec::from_slice(i).ok()),
    }
}
