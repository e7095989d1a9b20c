//! Round-trip checks of the two codecs.
//!
//! JSON and postcard do not carry exactly the same things: JSON writes a
//! payload that is valid JSON as raw JSON text (so the whitespace around
//! it is not kept) and anything else as `data_b64`; a presence `info` that
//! is not JSON is written as `null`. [`normalize_server`] maps a frame to
//! what survives a trip through JSON, so that frames decoded from postcard
//! can be compared with the same frames after JSON.

use switchboard_core::protocol::{
    ClientFrame, Codec, Data, Member, MessageFrame, Recover, Sender, Seq, ServerFrame, Text,
};

/// Is `b` JSON whitespace?
fn json_ws(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// `bytes` without the JSON whitespace around it.
pub fn trim_json(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !json_ws(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !json_ws(b))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// Is `bytes` one JSON value (what the JSON encoder writes as raw `data`)?
pub fn is_json(bytes: &[u8]) -> bool {
    switchboard_core::protocol::json::is_json(bytes)
}

fn owned_text(t: &Text<'_>) -> Text<'static> {
    Text::Owned(t.as_str().to_owned())
}

fn owned_data(d: &[u8]) -> Data<'static> {
    Data::Owned(d.to_vec())
}

/// A payload as it comes back from JSON: raw JSON trimmed, other bytes as is.
fn json_data(d: &[u8]) -> Data<'static> {
    if is_json(d) {
        owned_data(trim_json(d))
    } else {
        owned_data(d)
    }
}

fn sender(s: &Sender<'_>) -> Sender<'static> {
    Sender {
        client: owned_text(&s.client),
        user: s.user.as_ref().map(owned_text),
    }
}

fn message(m: &MessageFrame<'_>, json: bool) -> MessageFrame<'static> {
    MessageFrame {
        room: owned_text(&m.room),
        epoch: owned_text(&m.epoch),
        offset: m.offset,
        from: m.from.as_ref().map(sender),
        data: if json {
            json_data(&m.data)
        } else {
            owned_data(&m.data)
        },
    }
}

fn member(m: &Member<'_>, json: bool) -> Member<'static> {
    let info = m.info.as_ref().and_then(|i| {
        if !json {
            return Some(owned_data(i));
        }
        // Not JSON: written as `null`; `null`: read back as no info.
        (is_json(i) && trim_json(i) != b"null").then(|| owned_data(trim_json(i)))
    });
    Member {
        client: owned_text(&m.client),
        user: m.user.as_ref().map(owned_text),
        info,
    }
}

fn messages(ms: &[MessageFrame<'_>], json: bool) -> Seq<'static, MessageFrame<'static>> {
    Seq::Owned(ms.iter().map(|m| message(m, json)).collect())
}

/// An owned copy of `frame`; with `json`, as it reads back after JSON.
pub fn normalize_server(frame: &ServerFrame<'_>, json: bool) -> ServerFrame<'static> {
    match frame {
        ServerFrame::Welcome {
            client,
            user,
            ping_interval_ms,
            protocol,
        } => ServerFrame::Welcome {
            client: owned_text(client),
            user: user.as_ref().map(owned_text),
            ping_interval_ms: *ping_interval_ms,
            protocol: *protocol,
        },
        ServerFrame::Message(m) => ServerFrame::Message(message(m, json)),
        ServerFrame::Join { room, member: m } => ServerFrame::Join {
            room: owned_text(room),
            member: member(m, json),
        },
        ServerFrame::Leave { room, member: m } => ServerFrame::Leave {
            room: owned_text(room),
            member: member(m, json),
        },
        ServerFrame::Subscribed {
            id,
            room,
            epoch,
            offset,
            recovered,
            messages: ms,
        } => ServerFrame::Subscribed {
            id: *id,
            room: owned_text(room),
            epoch: owned_text(epoch),
            offset: *offset,
            recovered: *recovered,
            messages: messages(ms, json),
        },
        ServerFrame::Unsubscribed { id, room } => ServerFrame::Unsubscribed {
            id: *id,
            room: owned_text(room),
        },
        ServerFrame::Ack { id, room, offset } => ServerFrame::Ack {
            id: *id,
            room: owned_text(room),
            offset: *offset,
        },
        ServerFrame::Presence { id, room, members } => ServerFrame::Presence {
            id: *id,
            room: owned_text(room),
            members: Seq::Owned(members.iter().map(|m| member(m, json)).collect()),
        },
        ServerFrame::History {
            id,
            room,
            epoch,
            offset,
            messages: ms,
        } => ServerFrame::History {
            id: *id,
            room: owned_text(room),
            epoch: owned_text(epoch),
            offset: *offset,
            messages: messages(ms, json),
        },
        ServerFrame::Pong { id } => ServerFrame::Pong { id: *id },
        ServerFrame::Authed { user } => ServerFrame::Authed {
            user: user.as_ref().map(owned_text),
        },
        ServerFrame::Error { id, code, reason } => ServerFrame::Error {
            id: *id,
            code: *code,
            reason: owned_text(reason),
        },
    }
}

/// An owned copy of a client frame; with `json`, its payload as it reads
/// back after JSON (trimmed).
pub fn normalize_client(frame: &ClientFrame<'_>, json: bool) -> ClientFrame<'static> {
    match frame {
        ClientFrame::Auth { token } => ClientFrame::Auth {
            token: owned_text(token),
        },
        ClientFrame::Subscribe {
            room,
            id,
            recover,
            presence,
        } => ClientFrame::Subscribe {
            room: owned_text(room),
            id: *id,
            recover: recover.as_ref().map(|r| Recover {
                epoch: owned_text(&r.epoch),
                offset: r.offset,
            }),
            presence: *presence,
        },
        ClientFrame::Unsubscribe { room, id } => ClientFrame::Unsubscribe {
            room: owned_text(room),
            id: *id,
        },
        ClientFrame::Publish {
            room,
            data,
            id,
            key,
        } => ClientFrame::Publish {
            room: owned_text(room),
            data: if json {
                json_data(data)
            } else {
                owned_data(data)
            },
            id: *id,
            key: key.as_ref().map(owned_text),
        },
        ClientFrame::Presence { room, id } => ClientFrame::Presence {
            room: owned_text(room),
            id: *id,
        },
        ClientFrame::History {
            room,
            id,
            since,
            limit,
        } => ClientFrame::History {
            room: owned_text(room),
            id: *id,
            since: *since,
            limit: *limit,
        },
        ClientFrame::Ping { id } => ClientFrame::Ping { id: *id },
    }
}

/// Encodes a client frame with `codec`.
pub fn encode_client(codec: Codec, frame: &ClientFrame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    codec
        .encode_client(frame, &mut out)
        .unwrap_or_else(|e| panic!("{codec:?} cannot encode the client frame {frame:?}: {e}"));
    if codec == Codec::Postcard {
        // The allocation-free encoder writes the same bytes.
        let mut buf = vec![0u8; out.len()];
        let n = codec
            .encode_client_to_slice(frame, &mut buf)
            .expect("encode_client_to_slice with a buffer of the right size");
        assert_eq!(
            &buf[..n],
            &out[..],
            "encode_client_to_slice ≠ encode_client"
        );
        if n > 0 {
            assert_eq!(
                codec.encode_client_to_slice(frame, &mut buf[..n - 1]),
                Err(switchboard_core::protocol::EncodeError::BufferFull),
                "a buffer one byte short must answer BufferFull"
            );
        }
    }
    out
}

/// Encodes a server frame with `codec`.
pub fn encode_server(codec: Codec, frame: &ServerFrame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    codec
        .encode_server(frame, &mut out)
        .unwrap_or_else(|e| panic!("{codec:?} cannot encode the server frame {frame:?}: {e}"));
    if codec == Codec::Postcard {
        let mut buf = vec![0u8; out.len()];
        let n = codec
            .encode_server_to_slice(frame, &mut buf)
            .expect("encode_server_to_slice with a buffer of the right size");
        assert_eq!(
            &buf[..n],
            &out[..],
            "encode_server_to_slice ≠ encode_server"
        );
    }
    out
}

/// The client-frame check of the `client_frame_*` targets: `bytes` decoded
/// with `codec` never panics; a frame that decodes re-encodes to bytes that
/// decode to the same frame, and encoding is then a fixed point; the same
/// frame survives the other codec (JSON only carries JSON payloads).
pub fn check_client(codec: Codec, bytes: &[u8]) {
    let frame = match codec.decode_client(bytes) {
        Ok(frame) => frame,
        Err(e) => {
            assert_eq!(e.code.code(), 4000, "decode errors answer 4000");
            assert!(!e.reason.is_empty());
            return;
        }
    };
    let _ = (frame.id(), frame.type_name());
    let encoded = encode_client(codec, &frame);
    let again = codec.decode_client(&encoded).unwrap_or_else(|e| {
        panic!("re-encoded frame does not decode: {e}\n{frame:?}\n{encoded:?}")
    });
    assert_eq!(
        frame, again,
        "decode(encode(frame)) ≠ frame; bytes {encoded:?}"
    );
    assert_eq!(frame.id(), again.id());
    assert_eq!(
        encoded,
        encode_client(codec, &again),
        "encoding is not a fixed point"
    );

    // Across codecs.
    let other = match codec {
        Codec::Json => Codec::Postcard,
        Codec::Postcard => Codec::Json,
    };
    let encoded = encode_client(other, &frame);
    let decoded = other.decode_client(&encoded);
    match (&frame, other) {
        (ClientFrame::Publish { data, .. }, Codec::Json) if !is_json(data) => {
            // Sent as `data_b64`, which a server refuses (JSON clients
            // publish JSON values).
            assert!(decoded.is_err(), "non-JSON data accepted: {decoded:?}");
        }
        _ => {
            let decoded = decoded.unwrap_or_else(|e| {
                panic!("{other:?} cannot read back {frame:?}: {e}; bytes {encoded:?}")
            });
            let json = other == Codec::Json;
            assert_eq!(
                normalize_client(&frame, json),
                normalize_client(&decoded, false),
                "{codec:?} → {other:?} changed the frame"
            );
        }
    }
}

/// The server-frame check of the `server_frame` target, for one codec.
pub fn check_server(codec: Codec, bytes: &[u8]) {
    let frame = match codec.decode_server(bytes) {
        Ok(frame) => frame,
        Err(e) => {
            assert_eq!(e.code.code(), 4000);
            return;
        }
    };
    let _ = frame.type_name();
    let encoded = encode_server(codec, &frame);
    let again = codec.decode_server(&encoded).unwrap_or_else(|e| {
        panic!("re-encoded frame does not decode: {e}\n{frame:?}\n{encoded:?}")
    });
    let json = codec == Codec::Json;
    assert_eq!(
        normalize_server(&frame, json),
        normalize_server(&again, false),
        "decode(encode(frame)) ≠ frame; bytes {:?}",
        String::from_utf8_lossy(&encoded)
    );
    assert_eq!(
        encoded,
        encode_server(codec, &again),
        "encoding is not a fixed point"
    );

    let other = match codec {
        Codec::Json => Codec::Postcard,
        Codec::Postcard => Codec::Json,
    };
    let encoded = encode_server(other, &frame);
    let decoded = other.decode_server(&encoded).unwrap_or_else(|e| {
        panic!(
            "{other:?} cannot read back {frame:?}: {e}; bytes {:?}",
            String::from_utf8_lossy(&encoded)
        )
    });
    let json = other == Codec::Json;
    assert_eq!(
        normalize_server(&frame, json),
        normalize_server(&decoded, false),
        "{codec:?} → {other:?} changed the frame"
    );
}
