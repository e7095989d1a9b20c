//! The one mapping from a JSON object's fields to a frame, shared by both
//! JSON readers: [`super::json`] (serde_json) and [`super::json_slice`] (no
//! allocator). Each reader only finds the keys and types their values; which
//! keys a frame type needs, and the error when one is missing, is decided
//! here once.

use super::codec::DecodeError;
use super::frame::{ClientFrame, Member, MessageFrame, Recover, Sender, ServerFrame};
use super::text::{Data, Seq, Text};

/// The typed value of every key a client frame may carry (unknown keys are
/// ignored by the readers).
pub(crate) struct FlatClient<'a> {
    pub(crate) ty: Option<Text<'a>>,
    pub(crate) id: Option<u64>,
    pub(crate) room: Option<Text<'a>>,
    pub(crate) token: Option<Text<'a>>,
    /// The raw JSON text of `data` (`null` included: it is a JSON value).
    pub(crate) data: Option<&'a [u8]>,
    pub(crate) recover: Option<Recover<'a>>,
    pub(crate) presence: Option<bool>,
    pub(crate) since: Option<u64>,
    pub(crate) limit: Option<u64>,
    pub(crate) key: Option<Text<'a>>,
}

impl<'a> FlatClient<'a> {
    /// The frame these fields make, or 4000 naming the missing field.
    pub(crate) fn into_frame(self) -> Result<ClientFrame<'a>, DecodeError> {
        let id = self.id;
        let missing = |what| DecodeError::malformed(id, what);
        let ty = self.ty.ok_or(missing("missing field `type`"))?;
        let room = self.room;
        let need_room = || room.clone().ok_or(missing("missing field `room`"));
        Ok(match ty.as_str() {
            "auth" => ClientFrame::Auth {
                token: self.token.ok_or(missing("missing field `token`"))?,
            },
            "subscribe" => ClientFrame::Subscribe {
                room: need_room()?,
                id,
                recover: self.recover,
                presence: self.presence,
            },
            "unsubscribe" => ClientFrame::Unsubscribe {
                room: need_room()?,
                id,
            },
            "publish" => ClientFrame::Publish {
                room: need_room()?,
                data: Data::Borrowed(self.data.ok_or(missing("missing field `data`"))?),
                id,
                key: self.key,
            },
            "presence" => ClientFrame::Presence {
                room: need_room()?,
                id,
            },
            "history" => ClientFrame::History {
                room: need_room()?,
                id,
                since: self.since,
                limit: self.limit,
            },
            "ping" => ClientFrame::Ping { id },
            _ => return Err(missing("unknown frame type")),
        })
    }
}

/// The typed value of every key a server frame may carry.
pub(crate) struct FlatServer<'a> {
    pub(crate) ty: Text<'a>,
    pub(crate) id: Option<u64>,
    pub(crate) room: Option<Text<'a>>,
    pub(crate) client: Option<Text<'a>>,
    pub(crate) user: Option<Text<'a>>,
    pub(crate) ping_interval_ms: Option<u64>,
    pub(crate) protocol: Option<u64>,
    pub(crate) epoch: Option<Text<'a>>,
    pub(crate) offset: Option<u64>,
    pub(crate) from: Option<Sender<'a>>,
    /// `data` (raw JSON text) or `data_b64` (already decoded), see
    /// [`payload`].
    pub(crate) data: Option<Result<Data<'a>, DecodeError>>,
    pub(crate) member: Option<Member<'a>>,
    pub(crate) recovered: Option<bool>,
    /// Decoded lazily: a bad nested message only matters to the frame types
    /// that carry `messages`.
    pub(crate) messages: Option<Result<Seq<'a, MessageFrame<'a>>, DecodeError>>,
    pub(crate) members: Option<Seq<'a, Member<'a>>>,
    pub(crate) code: Option<u16>,
    pub(crate) reason: Option<Text<'a>>,
}

impl<'a> FlatServer<'a> {
    /// The frame these fields make, or 4000 naming the missing field.
    pub(crate) fn into_frame(self) -> Result<ServerFrame<'a>, DecodeError> {
        let id = self.id;
        let missing = |what| DecodeError::malformed(id, what);
        let room = self.room.ok_or(missing("missing field `room`"));
        let epoch = self.epoch.ok_or(missing("missing field `epoch`"));
        let offset = self.offset.ok_or(missing("missing field `offset`"));
        Ok(match self.ty.as_str() {
            "welcome" => ServerFrame::Welcome {
                client: self.client.ok_or(missing("missing field `client`"))?,
                user: self.user,
                ping_interval_ms: self.ping_interval_ms.unwrap_or(0),
                protocol: self.protocol.unwrap_or(1),
            },
            "message" => ServerFrame::Message(MessageFrame {
                room: room?,
                epoch: epoch?,
                offset: offset?,
                from: self.from,
                data: self.data.ok_or(missing("missing field `data`"))??,
            }),
            "join" | "leave" => {
                let member = self.member.ok_or(missing("missing field `member`"))?;
                let room = room?;
                if self.ty == "join" {
                    ServerFrame::Join { room, member }
                } else {
                    ServerFrame::Leave { room, member }
                }
            }
            "subscribed" => ServerFrame::Subscribed {
                id,
                room: room?,
                epoch: epoch?,
                offset: offset?,
                recovered: self.recovered.unwrap_or(false),
                messages: self.messages.transpose()?.unwrap_or_default(),
            },
            "unsubscribed" => ServerFrame::Unsubscribed { id, room: room? },
            "ack" => ServerFrame::Ack {
                id: id.ok_or(missing("missing field `id`"))?,
                room: room?,
                offset: offset?,
            },
            "presence" => ServerFrame::Presence {
                id,
                room: room?,
                members: self.members.unwrap_or_default(),
            },
            "history" => ServerFrame::History {
                id,
                room: room?,
                epoch: epoch?,
                offset: offset?,
                messages: self.messages.transpose()?.unwrap_or_default(),
            },
            "pong" => ServerFrame::Pong { id },
            "authed" => ServerFrame::Authed { user: self.user },
            "error" => ServerFrame::Error {
                id,
                code: self.code.ok_or(missing("missing field `code`"))?,
                reason: self.reason.unwrap_or(Text::Borrowed("")),
            },
            _ => return Err(missing("unknown frame type")),
        })
    }
}

/// A message's payload from its `data` (raw JSON text) or `data_b64`
/// (standard base64, decoded by `b64`); `None` when it has neither.
pub(crate) fn payload<'a>(
    data: Option<&'a [u8]>,
    b64: Option<Text<'a>>,
    id: Option<u64>,
    decode: impl FnOnce(&str) -> Option<Data<'a>>,
) -> Option<Result<Data<'a>, DecodeError>> {
    match (data, b64) {
        (Some(raw), _) => Some(Ok(Data::Borrowed(raw))),
        (None, Some(text)) => Some(
            decode(text.as_str()).ok_or(DecodeError::malformed(id, "bad base64 in `data_b64`")),
        ),
        (None, None) => None,
    }
}

/// A member from its fields; `info: null` is no info (the writers write
/// `null` for `None`).
pub(crate) fn member<'a>(
    client: Text<'a>,
    user: Option<Text<'a>>,
    info: Option<&'a [u8]>,
) -> Member<'a> {
    Member {
        client,
        user,
        info: info.filter(|i| *i != b"null").map(Data::Borrowed),
    }
}
