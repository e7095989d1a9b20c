//! The JSON codec (`switchboard.v1.json`), PROTOCOL.md §4–§5.
//!
//! Frames are objects with a `type` key. `data` is carried as raw JSON text:
//! a payload that is valid JSON is written as-is, anything else as
//! `data_b64` (standard base64). Decoding borrows from the input and only
//! allocates for strings with escapes and for `data_b64`.

use alloc::vec::Vec;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use super::codec::{DecodeError, EncodeError};
use super::flat;
use super::frame::{ClientFrame, Member, MessageFrame, Recover, Sender, ServerFrame};
use super::text::{Data, Seq, Text};

/// Is `bytes` one valid JSON value?
pub fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<&RawValue>(bytes).is_ok()
}

/// Appends the compact form of the JSON value `raw` to `out` (whitespace
/// outside strings removed). `raw` must be valid JSON.
pub fn compact_into(raw: &[u8], out: &mut Vec<u8>) {
    out.reserve(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
}

fn raw_some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Every key any client frame may carry; unknown keys are ignored.
#[derive(Deserialize)]
struct FlatClient<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Text<'a>>,
    id: Option<u64>,
    #[serde(borrow)]
    room: Option<Text<'a>>,
    #[serde(borrow)]
    token: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "raw_some")]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    recover: Option<Recover<'a>>,
    presence: Option<bool>,
    since: Option<u64>,
    limit: Option<u64>,
    #[serde(borrow)]
    key: Option<Text<'a>>,
}

/// Reads just the id of a frame that failed to decode as a whole.
#[derive(Deserialize)]
struct IdOnly {
    id: Option<u64>,
}

/// Decodes a client frame from JSON text.
pub fn decode_client(bytes: &[u8]) -> Result<ClientFrame<'_>, DecodeError> {
    let flat: FlatClient<'_> = match serde_json::from_slice(bytes) {
        Ok(flat) => flat,
        Err(_) => {
            let id = serde_json::from_slice::<IdOnly>(bytes)
                .ok()
                .and_then(|f| f.id);
            return Err(DecodeError::malformed(id, "malformed JSON frame"));
        }
    };
    flat::FlatClient {
        ty: flat.ty,
        id: flat.id,
        room: flat.room,
        token: flat.token,
        data: flat.data.map(|raw| raw.get().as_bytes()),
        recover: flat.recover,
        presence: flat.presence,
        since: flat.since,
        limit: flat.limit,
        key: flat.key,
    }
    .into_frame()
}

/// Every key any server frame may carry.
#[derive(Deserialize)]
struct FlatServer<'a> {
    #[serde(rename = "type", borrow)]
    ty: Text<'a>,
    id: Option<u64>,
    #[serde(borrow)]
    room: Option<Text<'a>>,
    #[serde(borrow)]
    client: Option<Text<'a>>,
    #[serde(borrow)]
    user: Option<Text<'a>>,
    ping_interval_ms: Option<u64>,
    protocol: Option<u64>,
    #[serde(borrow)]
    epoch: Option<Text<'a>>,
    offset: Option<u64>,
    #[serde(borrow)]
    from: Option<JsonSender<'a>>,
    #[serde(default, borrow, deserialize_with = "raw_some")]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    data_b64: Option<Text<'a>>,
    #[serde(borrow)]
    member: Option<JsonMember<'a>>,
    recovered: Option<bool>,
    #[serde(borrow, default)]
    messages: Option<Vec<JsonMessage<'a>>>,
    #[serde(borrow, default)]
    members: Option<Vec<JsonMember<'a>>>,
    code: Option<u16>,
    #[serde(borrow)]
    reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct JsonSender<'a> {
    #[serde(borrow)]
    client: Text<'a>,
    #[serde(borrow)]
    user: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct JsonMember<'a> {
    #[serde(borrow)]
    client: Text<'a>,
    #[serde(borrow)]
    user: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "raw_some")]
    info: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct JsonMessage<'a> {
    #[serde(borrow)]
    room: Text<'a>,
    #[serde(borrow)]
    epoch: Text<'a>,
    offset: u64,
    #[serde(borrow)]
    from: Option<JsonSender<'a>>,
    #[serde(default, borrow, deserialize_with = "raw_some")]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    data_b64: Option<Text<'a>>,
}

fn b64<'a>(text: &str) -> Option<Data<'a>> {
    B64.decode(text.as_bytes()).ok().map(Data::Owned)
}

fn data<'a>(
    raw: Option<&'a RawValue>,
    b64_text: Option<Text<'a>>,
    id: Option<u64>,
) -> Option<Result<Data<'a>, DecodeError>> {
    flat::payload(raw.map(|r| r.get().as_bytes()), b64_text, id, b64)
}

fn sender(s: Option<JsonSender<'_>>) -> Option<Sender<'_>> {
    s.map(|s| Sender {
        client: s.client,
        user: s.user,
    })
}

fn member(m: JsonMember<'_>) -> Member<'_> {
    flat::member(m.client, m.user, m.info.map(|r| r.get().as_bytes()))
}

fn messages(list: Vec<JsonMessage<'_>>) -> Result<Seq<'_, MessageFrame<'_>>, DecodeError> {
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        out.push(MessageFrame {
            data: data(m.data, m.data_b64, None)
                .unwrap_or(Err(DecodeError::malformed(None, "missing field `data`")))?,
            room: m.room,
            epoch: m.epoch,
            offset: m.offset,
            from: sender(m.from),
        });
    }
    Ok(Seq::Owned(out))
}

/// Decodes a server frame from JSON text (client side).
pub fn decode_server(bytes: &[u8]) -> Result<ServerFrame<'_>, DecodeError> {
    let f: FlatServer<'_> = serde_json::from_slice(bytes)
        .map_err(|_| DecodeError::malformed(None, "malformed JSON frame"))?;
    let id = f.id;
    flat::FlatServer {
        ty: f.ty,
        id,
        room: f.room,
        client: f.client,
        user: f.user,
        ping_interval_ms: f.ping_interval_ms,
        protocol: f.protocol,
        epoch: f.epoch,
        offset: f.offset,
        from: sender(f.from),
        data: data(f.data, f.data_b64, id),
        member: f.member.map(member),
        recovered: f.recovered,
        messages: f.messages.map(messages),
        members: f
            .members
            .map(|list| Seq::Owned(list.into_iter().map(member).collect())),
        code: f.code,
        reason: f.reason,
    }
    .into_frame()
}

/// Serializes a payload as `data` (valid JSON) or `data_b64`.
struct Payload<'p>(&'p [u8]);

impl Payload<'_> {
    fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        match serde_json::from_slice::<&RawValue>(self.0) {
            Ok(raw) => map.serialize_entry("data", raw),
            Err(_) => map.serialize_entry("data_b64", &B64.encode(self.0)),
        }
    }
}

/// JSON view of a nested message.
struct JsonMsgOut<'m, 'a>(&'m MessageFrame<'a>, bool);

impl Serialize for JsonMsgOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = s.serialize_map(None)?;
        if self.1 {
            map.serialize_entry("type", "message")?;
        }
        map.serialize_entry("room", &m.room)?;
        map.serialize_entry("epoch", &m.epoch)?;
        map.serialize_entry("offset", &m.offset)?;
        map.serialize_entry("from", &m.from.as_ref().map(JsonSenderOut))?;
        Payload(&m.data).write(&mut map)?;
        map.end()
    }
}

struct JsonSenderOut<'m, 'a>(&'m Sender<'a>);

impl Serialize for JsonSenderOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("client", &self.0.client)?;
        map.serialize_entry("user", &self.0.user)?;
        map.end()
    }
}

struct JsonMemberOut<'m, 'a>(&'m Member<'a>);

impl Serialize for JsonMemberOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("client", &m.client)?;
        map.serialize_entry("user", &m.user)?;
        let info = m
            .info
            .as_ref()
            .and_then(|i| serde_json::from_slice::<&RawValue>(i).ok());
        map.serialize_entry("info", &info)?;
        map.end()
    }
}

struct MessagesOut<'s, 'a>(&'s [MessageFrame<'a>]);

impl Serialize for MessagesOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|m| JsonMsgOut(m, false)))
    }
}

struct MembersOut<'s, 'a>(&'s [Member<'a>]);

impl Serialize for MembersOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(JsonMemberOut))
    }
}

struct ServerOut<'f, 'a>(&'f ServerFrame<'a>);

impl Serialize for ServerOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let frame = self.0;
        if let ServerFrame::Message(m) = frame {
            return JsonMsgOut(m, true).serialize(s);
        }
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", frame.type_name())?;
        match frame {
            ServerFrame::Welcome {
                client,
                user,
                ping_interval_ms,
                protocol,
            } => {
                map.serialize_entry("client", client)?;
                map.serialize_entry("user", user)?;
                map.serialize_entry("ping_interval_ms", ping_interval_ms)?;
                map.serialize_entry("protocol", protocol)?;
            }
            ServerFrame::Message(_) => {}
            ServerFrame::Join { room, member } | ServerFrame::Leave { room, member } => {
                map.serialize_entry("room", room)?;
                map.serialize_entry("member", &JsonMemberOut(member))?;
            }
            ServerFrame::Subscribed {
                id,
                room,
                epoch,
                offset,
                recovered,
                messages,
            } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("room", room)?;
                map.serialize_entry("epoch", epoch)?;
                map.serialize_entry("offset", offset)?;
                map.serialize_entry("recovered", recovered)?;
                map.serialize_entry("messages", &MessagesOut(messages))?;
            }
            ServerFrame::Unsubscribed { id, room } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("room", room)?;
            }
            ServerFrame::Ack { id, room, offset } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("room", room)?;
                map.serialize_entry("offset", offset)?;
            }
            ServerFrame::Presence { id, room, members } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("room", room)?;
                map.serialize_entry("members", &MembersOut(members))?;
            }
            ServerFrame::History {
                id,
                room,
                epoch,
                offset,
                messages,
            } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("room", room)?;
                map.serialize_entry("epoch", epoch)?;
                map.serialize_entry("offset", offset)?;
                map.serialize_entry("messages", &MessagesOut(messages))?;
            }
            ServerFrame::Pong { id } => map.serialize_entry("id", id)?,
            ServerFrame::Authed { user } => map.serialize_entry("user", user)?,
            ServerFrame::Error { id, code, reason } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("code", code)?;
                map.serialize_entry("reason", reason)?;
            }
        }
        map.end()
    }
}

struct ClientOut<'f, 'a>(&'f ClientFrame<'a>);

impl Serialize for ClientOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let frame = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", frame.type_name())?;
        if let Some(id) = frame.id() {
            map.serialize_entry("id", &id)?;
        }
        match frame {
            ClientFrame::Auth { token } => map.serialize_entry("token", token)?,
            ClientFrame::Subscribe {
                room,
                recover,
                presence,
                ..
            } => {
                map.serialize_entry("room", room)?;
                if let Some(r) = recover {
                    map.serialize_entry("recover", r)?;
                }
                if let Some(p) = presence {
                    map.serialize_entry("presence", p)?;
                }
            }
            ClientFrame::Publish {
                room, data, key, ..
            } => {
                map.serialize_entry("room", room)?;
                Payload(data).write(&mut map)?;
                if let Some(k) = key {
                    map.serialize_entry("key", k)?;
                }
            }
            ClientFrame::Unsubscribe { room, .. } | ClientFrame::Presence { room, .. } => {
                map.serialize_entry("room", room)?;
            }
            ClientFrame::History {
                room, since, limit, ..
            } => {
                map.serialize_entry("room", room)?;
                if let Some(s) = since {
                    map.serialize_entry("since", s)?;
                }
                if let Some(l) = limit {
                    map.serialize_entry("limit", l)?;
                }
            }
            ClientFrame::Ping { .. } => {}
        }
        map.end()
    }
}

fn append<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let bytes = serde_json::to_vec(value).map_err(|_| EncodeError::Invalid)?;
    if out.is_empty() {
        *out = bytes;
    } else {
        out.extend_from_slice(&bytes);
    }
    Ok(())
}

/// Appends the JSON encoding of a server frame to `out`.
pub fn encode_server(frame: &ServerFrame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    append(&ServerOut(frame), out)
}

/// Appends the JSON encoding of a client frame to `out`. A publish whose
/// `data` is not valid JSON is sent as `data_b64`; the server will then
/// refuse it (JSON clients publish JSON values).
pub fn encode_client(frame: &ClientFrame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    append(&ClientOut(frame), out)
}
