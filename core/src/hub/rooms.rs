//! Rooms: subscribers, offsets and epochs, fan-out of messages.

use super::*;

impl<A: Authenticator, S: Storage> Hub<A, S> {
    pub(super) fn leave_all(&mut self, id: ConnId) {
        loop {
            let Some(conn) = self.conns.at_mut(id) else {
                return;
            };
            let n = conn.rooms.as_slice().len();
            if n == 0 {
                conn.rooms.shrink();
                return;
            }
            let room = conn.rooms.swap_remove(n - 1);
            self.remove_subscriber(room, id);
        }
    }

    /// Removes `id` from room `key`'s subscribers (not from the
    /// connection's own list), with `leave` and vacancy as needed.
    pub(super) fn remove_subscriber(&mut self, key: u32, id: ConnId) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some(pos) = room
            .subscribers
            .as_slice()
            .iter()
            .position(|s| s.conn == id)
        else {
            return;
        };
        let sub = room.subscribers.swap_remove(pos);
        match sub.codec {
            Codec::Json => room.json -= 1,
            Codec::Postcard => room.postcard -= 1,
        }
        // A subscriber still waiting for its store read never joined.
        #[cfg(feature = "alloc")]
        let joined = sub.after != WAITING;
        #[cfg(not(feature = "alloc"))]
        let joined = true;
        #[cfg(feature = "alloc")]
        if !joined && let Some(relay) = room.relay.as_mut() {
            relay.holding = relay.holding.saturating_sub(1);
        }
        room.subscribers.shrink();
        let presence = self.config.namespace_of(&room.name).presence && joined;
        let member = if presence {
            self.member_of(id).map(|m| member_static(&m))
        } else {
            None
        };
        #[cfg(feature = "alloc")]
        if let Some(member) = &member {
            self.announce_to_store(key, false, member);
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if room.subscribers.as_slice().is_empty() {
            let name = room.name.clone();
            if let Ok(r) = self.arena.push(name.as_bytes()) {
                self.push(Record::Vacant { name: r });
            }
            self.free_if_unused(key);
            return;
        }
        if let Some(member) = member {
            self.broadcast_presence(key, false, &member);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe(
        &mut self,
        now: Instant,
        id: ConnId,
        req: Option<u64>,
        name: &str,
        presence_events: bool,
        recover: Option<&crate::protocol::Recover<'_>>,
    ) {
        let max_rooms = self.config.max_rooms_per_connection;
        let Some(conn) = self.conns.at(id) else {
            return;
        };
        let codec = conn.codec;
        let existing = self.index.find(name);
        let already = existing.is_some_and(|k| conn.rooms.as_slice().contains(&k));
        if !already && conn.rooms.as_slice().len() >= max_rooms {
            return self.reply_error(
                id,
                req,
                ErrorCode::Limit,
                "too many rooms for this connection",
            );
        }
        let key = match existing {
            Some(k) => k,
            None if self.rooms.len() >= self.config.max_rooms => {
                return self.reply_error(id, req, ErrorCode::Limit, "room limit reached");
            }
            None => match self.create_room(name, now) {
                Some(k) => k,
                None => return self.reply_error(id, req, ErrorCode::Limit, "room table full"),
            },
        };
        if !already
            && self
                .rooms
                .get(key)
                .is_some_and(|r| r.subscribers.as_slice().is_empty())
            && let Ok(r) = self.arena.push(name.as_bytes())
        {
            self.push(Record::Occupied { name: r });
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if already {
            if let Some(s) = room
                .subscribers
                .as_mut_slice()
                .iter_mut()
                .find(|s| s.conn == id)
            {
                s.presence_events = presence_events;
            }
        } else {
            if room
                .subscribers
                .push(Subscriber {
                    conn: id,
                    codec,
                    presence_events,
                    after: 0,
                })
                .is_err()
            {
                return self.reply_error(id, req, ErrorCode::Limit, "room is full");
            }
            match codec {
                Codec::Json => room.json += 1,
                Codec::Postcard => room.postcard += 1,
            }
            if let Some(conn) = self.conns.at_mut(id)
                && conn.rooms.push(key).is_err()
            {
                self.remove_subscriber(key, id);
                return self.reply_error(
                    id,
                    req,
                    ErrorCode::Limit,
                    "too many rooms for this connection",
                );
            }
        }
        #[cfg(feature = "alloc")]
        if self.remote.is_some() {
            return self.subscribe_remote(now, id, req, key, !already, recover);
        }
        self.trim_history(key, now);
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        // Recovery (PROTOCOL.md §3): the same epoch, and every message after
        // the client's offset still kept (history is contiguous, so the
        // oldest kept offset is enough to tell).
        let replay_from = recover.and_then(|r| {
            if r.epoch != room.epoch.as_str() || r.offset > room.offset {
                return None;
            }
            if r.offset == room.offset {
                return Some(room.history.len());
            }
            let (oldest, _, _) = room.history.get(0)?;
            (oldest <= r.offset + 1).then(|| (r.offset + 1 - oldest) as usize)
        });
        // Replies are bounded (PROTOCOL.md §9): a replay of more than
        // `max_recover` messages or `max_reply_bytes` is not a recovery.
        // `min` is a no-op with `alloc` (REPLY_MESSAGES is usize::MAX there).
        #[allow(clippy::unnecessary_min_or_max)]
        let replay_from = replay_from.filter(|from| {
            room.history.len() - from <= self.config.max_recover.min(REPLY_MESSAGES)
        });
        let mut r = encode_with_messages(
            &mut self.arena,
            codec,
            room,
            replay_from.unwrap_or(usize::MAX),
            usize::MAX,
            WithMessages::Subscribed {
                id: req,
                recovered: replay_from.is_some(),
            },
        );
        if let Ok(range) = &r
            && replay_from.is_some()
            && range.len() > self.config.max_reply_bytes
        {
            self.arena.truncate(range.start);
            r = encode_with_messages(
                &mut self.arena,
                codec,
                room,
                usize::MAX,
                0,
                WithMessages::Subscribed {
                    id: req,
                    recovered: false,
                },
            );
        }
        self.unicast(id, codec, r);
        if !already
            && self.config.namespace_of(name).presence
            && let Some(member) = self.member_of(id)
        {
            let member = member_static(&member);
            self.broadcast_presence(key, true, &member);
        }
    }

    /// Creates room `name` with a fresh epoch: the seed's randomness mixed
    /// with the time, so that a restart (even with a fixed seed) never
    /// reuses an epoch (PROTOCOL.md §9).
    pub(super) fn create_room(&mut self, name: &str, now: Instant) -> Option<u32> {
        let mut epoch = Epoch::new();
        let mut mixed = splitmix(&mut self.rng) ^ now.as_micros();
        let _ = write!(epoch, "{:016x}", splitmix(&mut mixed));
        let room = Room::<S> {
            name: room::to_name(name)?,
            epoch,
            offset: 0,
            subscribers: Default::default(),
            json: 0,
            postcard: 0,
            history: Default::default(),
            #[cfg(feature = "alloc")]
            relay: self.remote.is_some().then(Default::default),
        };
        let k = self.rooms.insert(room).ok()?;
        if self.index.insert(room::to_name(name)?, k).is_err() {
            self.rooms.remove(k);
            return None;
        }
        Some(k)
    }

    /// Frees room `key` if nobody is subscribed and nothing is kept; a room
    /// that comes back later gets a new epoch.
    pub(super) fn free_if_unused(&mut self, key: u32) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        if room.subscribers.as_slice().is_empty() && room.history.is_empty() {
            let name = room.name.clone();
            self.index.remove(&name);
            self.rooms.remove(key);
        }
    }

    /// Assigns the next offset in `name`, keeps the message in the room's
    /// history (namespaces with `history_size > 0`) and fans it out. A room
    /// with neither subscribers nor history has no state: the message
    /// reaches nobody, is not kept, and gets offset 0.
    pub(super) fn broadcast_message(
        &mut self,
        now: Instant,
        name: &str,
        from: Option<ConnId>,
        data: &[u8],
    ) -> Result<u64, PublishError> {
        // Counted once accepted: a publish refused (4006, a full table) is
        // not a published message in the stats and metrics.
        let offset = self.accept_message(now, name, from, data)?;
        self.published += 1;
        Ok(offset)
    }

    /// [`Hub::broadcast_message`] before it is counted.
    fn accept_message(
        &mut self,
        now: Instant,
        name: &str,
        from: Option<ConnId>,
        data: &[u8],
    ) -> Result<u64, PublishError> {
        let keep = self.config.namespace_of(name).history_size as usize;
        let key = match self.index.find(name) {
            Some(k) => k,
            None if keep > 0 && S::History::default().capacity() > 0 => {
                if self.rooms.len() >= self.config.max_rooms {
                    return Err(PublishError::RoomLimit);
                }
                self.create_room(name, now).ok_or(PublishError::Full)?
            }
            None => return Ok(0),
        };
        let sender = from.and_then(|f| self.conns.at(f)).map(|c| {
            (
                c.client.clone(),
                c.identity
                    .as_ref()
                    .and_then(|i| i.user())
                    .and_then(to_short),
            )
        });
        let from_frame = sender.as_ref().map(|(client, user)| Sender {
            client: Text::Borrowed(client),
            user: user.as_ref().map(|u| Text::Borrowed(u.as_str())),
        });
        let Some(room) = self.rooms.get(key) else {
            return Ok(0);
        };
        // The offset is taken only once the message is queued and kept: a
        // refused publish leaves no gap (PROTOCOL.md §3).
        let offset = room.offset + 1;
        self.fan_out(key, offset, from_frame.clone(), data)?;
        if let Some(room) = self.rooms.get_mut(key) {
            room.offset = offset;
        }
        if keep > 0 {
            self.keep_message(key, offset, now, &(from_frame, Data::Borrowed(data)));
        }
        Ok(offset)
    }

    /// Queues message `offset` of room `key` for its subscribers: encoded
    /// once per codec that a subscriber speaks.
    pub(super) fn fan_out(
        &mut self,
        key: u32,
        offset: u64,
        from: Option<Sender<'_>>,
        data: &[u8],
    ) -> Result<(), PublishError> {
        let Some(room) = self.rooms.get(key) else {
            return Ok(());
        };
        let frame = ServerFrame::Message(MessageFrame {
            room: Text::Borrowed(&room.name),
            epoch: Text::Borrowed(&room.epoch),
            offset,
            from,
            data: Data::Borrowed(data),
        });
        let json = if room.json > 0 {
            Some(
                self.arena
                    .encode(Codec::Json, &frame)
                    .map_err(|_| PublishError::Full)?,
            )
        } else {
            None
        };
        let postcard = if room.postcard > 0 {
            Some(
                self.arena
                    .encode(Codec::Postcard, &frame)
                    .map_err(|_| PublishError::Full)?,
            )
        } else {
            None
        };
        if json.is_some() || postcard.is_some() {
            self.records
                .push_back(Record::Broadcast {
                    room: key,
                    json,
                    postcard,
                    audience: Audience::All,
                    offset,
                })
                .map_err(|_| PublishError::Full)?;
        }
        Ok(())
    }
}
