//! The two codecs of PROTOCOL.md §1, §4, §5, §9: decode(encode(x)) == x for
//! every client and server frame (property tests), the postcard variant
//! indices and field order, and the JSON shapes.

use proptest::prelude::*;
use switchboard_core::protocol::{
    ClientFrame, Codec, Data, FrameKind, Member, MessageFrame, Recover, Sender, Seq, ServerFrame,
};

/// Owned material the frames of one test case borrow from.
#[derive(Debug, Clone)]
struct Fields {
    room: String,
    other: String,
    token: String,
    id: Option<u64>,
    n: u64,
    m: u64,
    opt: Option<u64>,
    flag: bool,
    presence: Option<bool>,
    user: Option<String>,
    data: Vec<u8>,
    info: Option<Vec<u8>>,
    code: u16,
    recover: bool,
    nested: usize,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Room-like names.
        "[A-Za-z0-9_.:@/-]{1,24}",
        // Anything, including quotes, backslashes and control characters.
        prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
    ]
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        (
            text(),
            text(),
            text(),
            any::<Option<u64>>(),
            any::<u64>(),
            any::<u64>(),
            any::<Option<u64>>(),
        ),
        (
            any::<bool>(),
            any::<Option<bool>>(),
            prop::option::of(text()),
        ),
        (
            prop::collection::vec(any::<u8>(), 0..48),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
        ),
        (any::<u16>(), any::<bool>(), 0usize..4),
    )
        .prop_map(
            |(
                (room, other, token, id, n, m, opt),
                (flag, presence, user),
                (data, info),
                (code, recover, nested),
            )| {
                Fields {
                    room,
                    other,
                    token,
                    id,
                    n,
                    m,
                    opt,
                    flag,
                    presence,
                    user,
                    data,
                    info,
                    code,
                    recover,
                    nested,
                }
            },
        )
}

fn sender(f: &Fields) -> Option<Sender<'_>> {
    f.flag.then(|| Sender {
        client: f.other.as_str().into(),
        user: f.user.as_deref().map(Into::into),
    })
}

fn member(f: &Fields) -> Member<'_> {
    Member {
        client: f.other.as_str().into(),
        user: f.user.as_deref().map(Into::into),
        info: f.info.as_deref().map(Into::into),
    }
}

fn message(f: &Fields, offset: u64) -> MessageFrame<'_> {
    MessageFrame {
        room: f.room.as_str().into(),
        epoch: f.other.as_str().into(),
        offset,
        from: sender(f),
        data: f.data.as_slice().into(),
    }
}

/// Nested lists only decode with `alloc` when they are not empty.
fn nested_len(f: &Fields) -> usize {
    if cfg!(feature = "alloc") { f.nested } else { 0 }
}

fn client_frames(f: &Fields) -> Vec<ClientFrame<'_>> {
    vec![
        ClientFrame::Auth {
            token: f.token.as_str().into(),
        },
        ClientFrame::Subscribe {
            room: f.room.as_str().into(),
            id: f.id,
            recover: f.recover.then(|| Recover {
                epoch: f.other.as_str().into(),
                offset: f.n,
            }),
            presence: f.presence,
        },
        ClientFrame::Unsubscribe {
            room: f.room.as_str().into(),
            id: f.id,
        },
        ClientFrame::Publish {
            room: f.room.as_str().into(),
            data: f.data.as_slice().into(),
            id: f.id,
            key: None,
        },
        ClientFrame::Presence {
            room: f.room.as_str().into(),
            id: f.id,
        },
        ClientFrame::History {
            room: f.room.as_str().into(),
            id: f.id,
            since: f.opt,
            limit: f.opt.map(|x| x ^ f.n),
        },
        ClientFrame::Ping { id: f.id },
    ]
}

fn server_frames<'a>(
    f: &'a Fields,
    messages: &'a [MessageFrame<'a>],
    members: &'a [Member<'a>],
) -> Vec<ServerFrame<'a>> {
    vec![
        ServerFrame::Welcome {
            client: f.other.as_str().into(),
            user: f.user.as_deref().map(Into::into),
            ping_interval_ms: f.n,
            protocol: f.m,
        },
        ServerFrame::Message(message(f, f.n)),
        ServerFrame::Join {
            room: f.room.as_str().into(),
            member: member(f),
        },
        ServerFrame::Leave {
            room: f.room.as_str().into(),
            member: member(f),
        },
        ServerFrame::Subscribed {
            id: f.id,
            room: f.room.as_str().into(),
            epoch: f.other.as_str().into(),
            offset: f.n,
            recovered: f.flag,
            messages: Seq::Borrowed(messages),
        },
        ServerFrame::Unsubscribed {
            id: f.id,
            room: f.room.as_str().into(),
        },
        ServerFrame::Ack {
            id: f.n,
            room: f.room.as_str().into(),
            offset: f.m,
        },
        ServerFrame::Presence {
            id: f.id,
            room: f.room.as_str().into(),
            members: Seq::Borrowed(members),
        },
        ServerFrame::History {
            id: f.id,
            room: f.room.as_str().into(),
            epoch: f.other.as_str().into(),
            offset: f.m,
            messages: Seq::Borrowed(messages),
        },
        ServerFrame::Pong { id: f.id },
        ServerFrame::Authed {
            user: f.user.as_deref().map(Into::into),
        },
        ServerFrame::Error {
            id: f.id,
            code: f.code,
            reason: f.token.as_str().into(),
        },
    ]
}

fn postcard_client(frame: &ClientFrame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = Codec::Postcard
        .encode_client_to_slice(frame, &mut buf)
        .expect("encode");
    buf.truncate(n);
    #[cfg(feature = "alloc")]
    {
        let mut out = vec![0xAA];
        Codec::Postcard
            .encode_client(frame, &mut out)
            .expect("encode");
        assert_eq!(&out[1..], &buf[..], "both encoders agree, and append");
    }
    buf
}

fn postcard_server(frame: &ServerFrame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 8192];
    let n = Codec::Postcard
        .encode_server_to_slice(frame, &mut buf)
        .expect("encode");
    buf.truncate(n);
    #[cfg(feature = "alloc")]
    {
        let mut out = vec![0xAA];
        Codec::Postcard
            .encode_server(frame, &mut out)
            .expect("encode");
        assert_eq!(&out[1..], &buf[..], "both encoders agree, and append");
    }
    buf
}

proptest! {
    #[test]
    fn postcard_client_frames_round_trip(f in fields()) {
        for frame in client_frames(&f) {
            let bytes = postcard_client(&frame);
            prop_assert_eq!(Codec::Postcard.decode_client(&bytes).expect("decode"), frame);
        }
    }

    #[test]
    fn postcard_server_frames_round_trip(f in fields()) {
        let messages: Vec<_> = (0..nested_len(&f) as u64).map(|i| message(&f, i)).collect();
        let members: Vec<_> = (0..nested_len(&f)).map(|_| member(&f)).collect();
        for frame in server_frames(&f, &messages, &members) {
            let bytes = postcard_server(&frame);
            prop_assert_eq!(Codec::Postcard.decode_server(&bytes).expect("decode"), frame);
        }
    }

    #[test]
    fn postcard_decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Err(e) = Codec::Postcard.decode_client(&bytes) {
            prop_assert_eq!((e.code.code(), e.id), (4000, None));
        }
        let _ = Codec::Postcard.decode_server(&bytes);
    }

    #[test]
    fn encoding_into_a_short_buffer_is_buffer_full(f in fields(), cut in 0usize..8) {
        let frame = ClientFrame::Publish { room: f.room.as_str().into(), data: f.data.as_slice().into(), id: f.id, key: None, };
        let len = postcard_client(&frame).len();
        let mut buf = vec![0u8; len.saturating_sub(cut + 1)];
        prop_assert_eq!(
            Codec::Postcard.encode_client_to_slice(&frame, &mut buf),
            Err(switchboard_core::protocol::EncodeError::BufferFull)
        );
    }
}

#[test]
fn postcard_variant_indices_follow_protocol_section_9() {
    let f = Fields {
        room: "chat:lobby".into(),
        other: "e".into(),
        token: "t".into(),
        id: Some(1),
        n: 2,
        m: 3,
        opt: None,
        flag: true,
        presence: None,
        user: Some("alice".into()),
        data: b"{}".to_vec(),
        info: None,
        code: 4000,
        recover: false,
        nested: 0,
    };
    let names: Vec<_> = client_frames(&f).iter().map(|c| c.type_name()).collect();
    assert_eq!(
        names,
        [
            "auth",
            "subscribe",
            "unsubscribe",
            "publish",
            "presence",
            "history",
            "ping"
        ]
    );
    for (i, frame) in client_frames(&f).iter().enumerate() {
        assert_eq!(postcard_client(frame)[0], i as u8, "{frame:?}");
    }
    let names: Vec<_> = server_frames(&f, &[], &[])
        .iter()
        .map(|s| s.type_name())
        .collect();
    assert_eq!(
        names,
        [
            "welcome",
            "message",
            "join",
            "leave",
            "subscribed",
            "unsubscribed",
            "ack",
            "presence",
            "history",
            "pong",
            "authed",
            "error"
        ]
    );
    for (i, frame) in server_frames(&f, &[], &[]).iter().enumerate() {
        assert_eq!(postcard_server(frame)[0], i as u8, "{frame:?}");
    }
    assert_eq!(postcard_client(&ClientFrame::Ping { id: None })[0], 6);
    assert_eq!(
        postcard_server(&ServerFrame::Error {
            id: None,
            code: 1,
            reason: "".into()
        })[0],
        11
    );
}

#[test]
fn postcard_field_order_and_integer_encoding() {
    // Ping {id: Some(5)}: variant 6, Some, varint 5.
    assert_eq!(
        postcard_client(&ClientFrame::Ping { id: Some(5) }),
        [6, 1, 5]
    );
    // Error {id: None, code: 4000 (u16 varint), reason: "x"}.
    assert_eq!(
        postcard_server(&ServerFrame::Error {
            id: None,
            code: 4000,
            reason: "x".into()
        }),
        [11, 0, 0xA0, 0x1F, 1, b'x']
    );
    // Publish {room, data (bytes), id}.
    assert_eq!(
        postcard_client(&ClientFrame::Publish {
            room: "r".into(),
            data: b"12"[..].into(),
            id: Some(300),
            key: None,
        }),
        [3, 1, b'r', 2, b'1', b'2', 1, 0xAC, 0x02, 0]
    );
    // …with a key at the end.
    assert_eq!(
        postcard_client(&ClientFrame::Publish {
            room: "r".into(),
            data: b"1"[..].into(),
            id: None,
            key: Some("k1".into()),
        }),
        [3, 1, b'r', 1, b'1', 0, 1, 2, b'k', b'1']
    );
    // Welcome {client, user, ping_interval_ms, protocol}.
    assert_eq!(
        postcard_server(&ServerFrame::Welcome {
            client: "c".into(),
            user: None,
            ping_interval_ms: 25_000,
            protocol: 1
        }),
        [0, 1, b'c', 0, 0xA8, 0xC3, 0x01, 1]
    );
    // Message {room, epoch, offset, from: Option<{client, user}>, data}.
    assert_eq!(
        postcard_server(&ServerFrame::Message(MessageFrame {
            room: "r".into(),
            epoch: "e".into(),
            offset: 7,
            from: Some(Sender {
                client: "c".into(),
                user: Some("u".into())
            }),
            data: b"1"[..].into(),
        })),
        [1, 1, b'r', 1, b'e', 7, 1, 1, b'c', 1, 1, b'u', 1, b'1']
    );
    // Subscribe {room, id, recover: Option<{epoch, offset}>, presence}.
    assert_eq!(
        postcard_client(&ClientFrame::Subscribe {
            room: "r".into(),
            id: None,
            recover: Some(Recover {
                epoch: "e".into(),
                offset: 2
            }),
            presence: Some(true),
        }),
        [1, 1, b'r', 0, 1, 1, b'e', 2, 1, 1]
    );
}

#[test]
fn negotiation_and_frame_kinds() {
    assert_eq!(Codec::negotiate([]), Ok((Codec::Json, false)));
    assert_eq!(Codec::negotiate([""]), Ok((Codec::Json, false)));
    assert_eq!(
        Codec::negotiate(["switchboard.v1.postcard"]),
        Ok((Codec::Postcard, true))
    );
    assert_eq!(
        Codec::negotiate(["foo, switchboard.v1.json"]),
        Ok((Codec::Json, true))
    );
    assert_eq!(
        Codec::negotiate(["switchboard.v1.postcard, switchboard.v1.json"]),
        Ok((Codec::Postcard, true))
    );
    assert_eq!(
        Codec::negotiate(["switchboard.v1.json", "switchboard.v1.postcard"]),
        Ok((Codec::Json, true))
    );
    assert_eq!(Codec::negotiate(["foo", "bar"]), Err(()));
    assert_eq!(Codec::Json.frame_kind(), FrameKind::Text);
    assert_eq!(Codec::Postcard.frame_kind(), FrameKind::Binary);
    assert_eq!(Codec::Json.subprotocol(), "switchboard.v1.json");
    assert_eq!(
        Codec::from_subprotocol(" switchboard.v1.postcard "),
        Some(Codec::Postcard)
    );
    // JSON encodes into a slice too, without an allocator.
    let mut buf = [0u8; 64];
    let n = Codec::Json
        .encode_server_to_slice(&ServerFrame::Pong { id: None }, &mut buf)
        .unwrap();
    assert_eq!(&buf[..n], br#"{"type":"pong","id":null}"#);
}

#[test]
fn borrowed_and_owned_wrappers_compare_by_content() {
    let data = vec![1u8, 2, 3];
    let list = [1u8, 2];
    #[cfg(feature = "alloc")]
    {
        use switchboard_core::protocol::Text;
        let text = String::from("chat:lobby");
        assert_eq!(Text::Borrowed(&text), Text::Owned(text.clone()));
        assert_eq!(Data::Borrowed(&data), Data::Owned(data.clone()));
        assert_eq!(Seq::Borrowed(&list[..]), Seq::Owned(list.to_vec()));
        assert_ne!(Text::Borrowed("a"), Text::Owned("b".into()));
        let hash = |t: &Text<'_>| {
            use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
            BuildHasherDefault::<DefaultHasher>::default().hash_one(t)
        };
        assert_eq!(
            hash(&Text::Borrowed(&text)),
            hash(&Text::Owned(text.clone()))
        );
        assert_eq!(
            Text::Borrowed("a").cmp(&Text::Owned("b".into())),
            std::cmp::Ordering::Less
        );
    }
    assert_eq!(Data::Borrowed(&data).as_bytes(), &data[..]);
    assert_eq!(Seq::Borrowed(&list[..]).as_slice(), &list[..]);
}

// ------------------------------------------------------------------ JSON

#[cfg(feature = "json")]
mod json {
    use super::*;
    use serde_json::{Value, json};
    use switchboard_core::protocol::json::is_json;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            super::text().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(super::text(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A JSON text, compact or pretty.
    fn json_text() -> impl Strategy<Value = Vec<u8>> {
        (value(), any::<bool>()).prop_map(|(v, pretty)| {
            if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            }
        })
    }

    /// What JSON can carry of a payload: a JSON value as its text without
    /// surrounding whitespace, anything else as bytes (via `data_b64`).
    fn carried(bytes: &[u8]) -> Vec<u8> {
        match serde_json::from_slice::<&serde_json::value::RawValue>(bytes) {
            Ok(raw) => raw.get().as_bytes().to_vec(),
            Err(_) => bytes.to_vec(),
        }
    }

    fn encode_client(frame: &ClientFrame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        Codec::Json.encode_client(frame, &mut out).unwrap();
        out
    }

    fn encode_server(frame: &ServerFrame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        Codec::Json.encode_server(frame, &mut out).unwrap();
        out
    }

    proptest! {
        #[test]
        fn json_client_frames_round_trip(mut f in fields(), data in json_text()) {
            // JSON clients publish JSON values.
            f.data = data;
            for frame in client_frames(&f) {
                let bytes = encode_client(&frame);
                prop_assert_eq!(Codec::Json.decode_client(&bytes).expect("decode"), frame);
            }
        }

        #[test]
        fn json_server_frames_round_trip(
            mut f in fields(),
            json_data in json_text(),
            use_json in any::<bool>(),
            info in prop::option::of(json_text()),
        ) {
            if use_json {
                f.data = json_data;
            }
            f.data = carried(&f.data);
            // `info` is JSON text; anything else is not representable.
            // `info: null` is no info.
            f.info = info.map(|i| carried(&i)).filter(|i| i != b"null");
            let messages: Vec<_> = (0..f.nested as u64).map(|i| message(&f, i)).collect();
            let members: Vec<_> = (0..f.nested).map(|_| member(&f)).collect();
            for frame in server_frames(&f, &messages, &members) {
                let bytes = encode_server(&frame);
                let decoded = Codec::Json.decode_server(&bytes).expect("decode");
                prop_assert_eq!(decoded, frame, "{}", String::from_utf8_lossy(&bytes));
            }
        }

        #[test]
        fn json_payloads_reach_json_as_the_same_value(data in prop::collection::vec(any::<u8>(), 0..32)) {
            let f = ServerFrame::Message(MessageFrame {
                room: "r".into(), epoch: "e".into(), offset: 1, from: None, data: data.as_slice().into(),
            });
            let v: Value = serde_json::from_slice(&encode_server(&f)).unwrap();
            if is_json(&data) {
                prop_assert_eq!(&v["data"], &serde_json::from_slice::<Value>(&data).unwrap());
                prop_assert!(v.get("data_b64").is_none());
            } else {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
                prop_assert_eq!(&v["data_b64"], &Value::from(b64));
                prop_assert!(v.get("data").is_none());
            }
        }

        #[test]
        fn json_decoding_arbitrary_text_never_panics(s in ".{0,64}") {
            let _ = Codec::Json.decode_client(s.as_bytes());
            let _ = Codec::Json.decode_server(s.as_bytes());
        }
    }

    #[test]
    fn json_shapes_follow_protocol_section_5() {
        let enc = |f: &ServerFrame<'_>| serde_json::from_slice::<Value>(&encode_server(f)).unwrap();
        assert_eq!(
            enc(&ServerFrame::Welcome {
                client: "n-1".into(),
                user: None,
                ping_interval_ms: 25_000,
                protocol: 1
            }),
            json!({"type": "welcome", "client": "n-1", "user": null, "ping_interval_ms": 25000, "protocol": 1})
        );
        let msg = MessageFrame {
            room: "chat:a".into(),
            epoch: "e1".into(),
            offset: 3,
            from: Some(Sender {
                client: "n-1".into(),
                user: Some("alice".into()),
            }),
            data: br#"{"a":1}"#[..].into(),
        };
        assert_eq!(
            enc(&ServerFrame::Message(msg.clone())),
            json!({"type": "message", "room": "chat:a", "epoch": "e1", "offset": 3,
                   "from": {"client": "n-1", "user": "alice"}, "data": {"a": 1}})
        );
        assert_eq!(
            enc(&ServerFrame::Subscribed {
                id: Some(1),
                room: "chat:a".into(),
                epoch: "e1".into(),
                offset: 3,
                recovered: true,
                messages: Seq::Borrowed(std::slice::from_ref(&msg)),
            }),
            json!({"type": "subscribed", "id": 1, "room": "chat:a", "epoch": "e1", "offset": 3, "recovered": true,
                   "messages": [{"room": "chat:a", "epoch": "e1", "offset": 3,
                                 "from": {"client": "n-1", "user": "alice"}, "data": {"a": 1}}]})
        );
        assert_eq!(
            enc(&ServerFrame::Join {
                room: "r".into(),
                member: Member {
                    client: "c".into(),
                    user: None,
                    info: Some(br#"{"n":1}"#[..].into())
                }
            }),
            json!({"type": "join", "room": "r", "member": {"client": "c", "user": null, "info": {"n": 1}}})
        );
        assert_eq!(
            enc(&ServerFrame::Error {
                id: None,
                code: 4005,
                reason: "bad room name".into()
            }),
            json!({"type": "error", "id": null, "code": 4005, "reason": "bad room name"})
        );
        assert_eq!(
            enc(&ServerFrame::Ack {
                id: 9,
                room: "r".into(),
                offset: 2
            }),
            json!({"type": "ack", "id": 9, "room": "r", "offset": 2})
        );
        assert_eq!(
            enc(&ServerFrame::Authed {
                user: Some("a".into())
            }),
            json!({"type": "authed", "user": "a"})
        );
        assert_eq!(
            enc(&ServerFrame::Pong { id: Some(4) }),
            json!({"type": "pong", "id": 4})
        );
    }

    #[test]
    fn json_client_decoding_details() {
        // Unknown keys are ignored, `data` is kept as its raw JSON text.
        let f = Codec::Json
            .decode_client(br#"{"x":[1],"type":"publish","room":"r","data":{"a": [1, 2]},"id":3}"#)
            .unwrap();
        assert_eq!(
            f,
            ClientFrame::Publish {
                room: "r".into(),
                data: br#"{"a": [1, 2]}"#[..].into(),
                id: Some(3),
                key: None,
            }
        );
        // `data: null` is a payload, not a missing field.
        let f = Codec::Json
            .decode_client(br#"{"type":"publish","room":"r","data":null}"#)
            .unwrap();
        assert_eq!(
            f,
            ClientFrame::Publish {
                room: "r".into(),
                data: b"null"[..].into(),
                id: None,
                key: None,
            }
        );
        // `key` is read; `"key": null` is no key; a key of another type is 4000.
        let f = Codec::Json
            .decode_client(br#"{"type":"publish","room":"r","data":1,"key":"abc"}"#)
            .unwrap();
        assert!(matches!(f, ClientFrame::Publish { key: Some(k), .. } if k == "abc"));
        let f = Codec::Json
            .decode_client(br#"{"type":"publish","room":"r","data":1,"key":null}"#)
            .unwrap();
        assert!(matches!(f, ClientFrame::Publish { key: None, .. }));
        let e = Codec::Json
            .decode_client(br#"{"type":"publish","room":"r","data":1,"key":7,"id":4}"#)
            .unwrap_err();
        assert_eq!((e.code.code(), e.id), (4000, Some(4)));
        // Escapes are resolved.
        let f = Codec::Json
            .decode_client(br#"{"type":"auth","token":"a\"b\u0041"}"#)
            .unwrap();
        assert_eq!(
            f,
            ClientFrame::Auth {
                token: "a\"bA".into()
            }
        );
        // Errors carry the id when it could be read.
        for (text, id) in [
            (&br#"{"type":"subscribe","id":8}"#[..], Some(8)),
            (br#"{"type":"bogus","id":2}"#, Some(2)),
            (br#"{"room":"r","id":1}"#, Some(1)),
            (br#"{"type":"auth"}"#, None),
            (br#"{"type":"publish","room":"r","data_b64":"AA=="}"#, None),
            (b"{", None),
        ] {
            let e = Codec::Json.decode_client(text).unwrap_err();
            assert_eq!(
                (e.code.code(), e.id),
                (4000, id),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn json_server_decoding_details() {
        // `info: null` is a member without info; `data: null` is a payload.
        let f = Codec::Json
            .decode_server(
                br#"{"type":"join","room":"r","member":{"client":"c","user":null,"info":null}}"#,
            )
            .unwrap();
        assert_eq!(
            f,
            ServerFrame::Join {
                room: "r".into(),
                member: Member {
                    client: "c".into(),
                    user: None,
                    info: None
                }
            }
        );
        let f = Codec::Json
            .decode_server(br#"{"type":"leave","room":"r","member":{"client":"c","user":"u","info":{"a": 1}}}"#)
            .unwrap();
        let ServerFrame::Leave { member, .. } = f else {
            panic!("{f:?}")
        };
        assert_eq!(member.info.as_deref(), Some(&br#"{"a": 1}"#[..]));
        let f = Codec::Json
            .decode_server(
                br#"{"type":"message","room":"r","epoch":"e","offset":1,"from":null,"data":null}"#,
            )
            .unwrap();
        assert_eq!(message_data(&f), b"null");
        let f = Codec::Json
            .decode_server(br#"{"type":"message","room":"r","epoch":"e","offset":1,"from":null,"data_b64":"/wAB"}"#)
            .unwrap();
        assert_eq!(message_data(&f), [0xff, 0, 1]);
        let e = Codec::Json
            .decode_server(br#"{"type":"message","room":"r","epoch":"e","offset":1,"from":null,"data_b64":"!"}"#)
            .unwrap_err();
        assert_eq!(e.code.code(), 4000);
    }

    fn message_data<'f>(f: &'f ServerFrame<'_>) -> &'f [u8] {
        match f {
            ServerFrame::Message(m) => m.data.as_bytes(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_client_encoder_sends_non_json_as_data_b64() {
        let bytes = encode_client(&ClientFrame::Publish {
            room: "r".into(),
            data: b"\xff"[..].into(),
            id: None,
            key: None,
        });
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            json!({"type": "publish", "room": "r", "data_b64": "/w=="})
        );
    }

    #[test]
    fn json_compaction() {
        let mut out = Vec::new();
        switchboard_core::protocol::json::compact_into(
            b" { \"a b\" : [ 1 ,\n\t\"x\\\" y\" ] } ",
            &mut out,
        );
        assert_eq!(out, br#"{"a b":[1,"x\" y"]}"#);
    }
}

// ------------------------------------------- JSON: the two paths agree

/// The slice JSON codec (no allocator) against the serde_json one: the same
/// bytes for every frame, the same decoded frame or the same error for every
/// client text.
#[cfg(feature = "json")]
mod json_paths {
    use super::*;
    use switchboard_core::protocol::{EncodeError, json, json_slice};

    fn serde_server(frame: &ServerFrame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        json::encode_server(frame, &mut out).unwrap();
        out
    }

    fn slice_server(frame: &ServerFrame<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; 8192];
        let n = json_slice::encode_server(frame, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn serde_client(frame: &ClientFrame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        json::encode_client(frame, &mut out).unwrap();
        out
    }

    fn slice_client(frame: &ClientFrame<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; 8192];
        let n = json_slice::encode_client(frame, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// Decodes `text` both ways: equal frames, or errors with equal id and
    /// code. Two documented differences: a string field with escapes (the
    /// slice path cannot borrow it) and a top-level array (serde's derive
    /// reads a struct from a sequence; frames are objects, PROTOCOL.md §1):
    /// there the slice side answers 4000 without an id.
    fn same_decoding(text: &[u8]) -> Result<(), TestCaseError> {
        let serde = json::decode_client(text);
        let slice = json_slice::decode_client(text);
        if text.trim_ascii_start().starts_with(b"[") {
            let e = slice.expect_err("an array is not a frame");
            prop_assert_eq!((e.id, e.code.code()), (None, 4000));
            return Ok(());
        }
        match (&serde, &slice) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!((a.id, a.code), (b.id, b.code)),
            (Ok(_), Err(b)) if text.contains(&b'\\') => prop_assert_eq!(b.code.code(), 4000),
            _ => prop_assert!(
                false,
                "{}: serde {:?}, slice {:?}",
                String::from_utf8_lossy(text),
                serde,
                slice
            ),
        }
        Ok(())
    }

    /// Decodes the server frame `text` both ways ([`json::decode_server`]
    /// and [`json_slice::decode_server`]): equal frames, or errors with equal
    /// id and code. A top-level array is the one documented difference, as
    /// for client frames.
    fn same_server_decoding(text: &[u8]) -> Result<(), TestCaseError> {
        let serde = json::decode_server(text);
        let slice = json_slice::decode_server(text);
        if text.trim_ascii_start().starts_with(b"[") {
            let e = slice.expect_err("an array is not a frame");
            prop_assert_eq!((e.id, e.code.code()), (None, 4000));
            return Ok(());
        }
        match (&serde, &slice) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!((a.id, a.code), (b.id, b.code)),
            _ => prop_assert!(
                false,
                "{}: serde {:?}, slice {:?}",
                String::from_utf8_lossy(text),
                serde,
                slice
            ),
        }
        Ok(())
    }

    /// A JSON payload (the codec tests' `data` is arbitrary bytes: half the
    /// cases get a JSON text instead).
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..32),
            Just(b"null".to_vec()),
            Just(br#" {"a" : [1, -2.5e3, "\u00e9\n", true, null]} "#.to_vec()),
            "[0-9]{1,6}".prop_map(String::into_bytes),
            super::text().prop_map(|s| serde_json::to_vec(&s).unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn server_frames_encode_to_the_same_bytes(
            mut f in fields(),
            data in payload(),
            info in prop::option::of(payload()),
        ) {
            f.data = data;
            f.info = info;
            let messages: Vec<_> = (0..f.nested as u64).map(|i| message(&f, i)).collect();
            let members: Vec<_> = (0..f.nested).map(|_| member(&f)).collect();
            for frame in server_frames(&f, &messages, &members) {
                let (a, b) = (serde_server(&frame), slice_server(&frame));
                prop_assert_eq!(&a, &b, "{}", String::from_utf8_lossy(&a));
                // Read back both ways: the same frame.
                same_server_decoding(&a)?;
                prop_assert!(json_slice::decode_server(&a).is_ok());
                // Every shorter buffer is BufferFull, never a panic.
                let mut short = vec![0u8; b.len() - 1];
                prop_assert_eq!(json_slice::encode_server(&frame, &mut short), Err(EncodeError::BufferFull));
            }
        }

        #[test]
        fn client_frames_encode_to_the_same_bytes(mut f in fields(), data in payload()) {
            f.data = data;
            for frame in client_frames(&f) {
                let (a, b) = (serde_client(&frame), slice_client(&frame));
                prop_assert_eq!(&a, &b, "{}", String::from_utf8_lossy(&a));
                same_decoding(&a)?;
            }
        }

        #[test]
        fn arbitrary_text_decodes_the_same(s in r#"[{}\[\]":, a-z0-9\\.-]{0,48}"#) {
            same_decoding(s.as_bytes())?;
            let wrapped = format!(r#"{{"type":"publish","room":"r","id":3,"data":{s}}}"#);
            same_decoding(wrapped.as_bytes())?;
        }

        #[test]
        fn arbitrary_server_text_decodes_the_same(s in r#"[{}\[\]":, a-z0-9\\.-]{0,48}"#) {
            same_server_decoding(s.as_bytes())?;
            for ty in ["message", "subscribed", "welcome", "error"] {
                let wrapped = format!(r#"{{"type":"{ty}","room":"r","id":3,"epoch":"e","offset":1,"data":{s}}}"#);
                same_server_decoding(wrapped.as_bytes())?;
                let nested = format!(r#"{{"type":"{ty}","room":"r","epoch":"e","offset":1,"messages":[{s}]}}"#);
                same_server_decoding(nested.as_bytes())?;
            }
        }

        #[test]
        fn is_json_agrees(s in r#"[{}\[\]":, a-z0-9\\.eE+-]{0,24}"#) {
            prop_assert_eq!(json::is_json(s.as_bytes()), json_slice::is_json(s.as_bytes()), "{}", s);
        }
    }

    #[test]
    fn client_texts_decode_the_same() {
        let texts: &[&[u8]] = &[
            br#"{"x":[1],"type":"publish","room":"r","data":{"a": [1, 2]},"id":3}"#,
            br#"{"type":"publish","room":"r","data":null}"#,
            br#"{"type":"publish","room":"r","data":1,"key":"abc"}"#,
            br#"{"type":"publish","room":"r","data":1,"key":null}"#,
            br#"{"type":"publish","room":"r","data":1,"key":7,"id":4}"#,
            br#"{"type":"subscribe","room":"r","id":8,"recover":{"epoch":"e","offset":4},"presence":true}"#,
            br#"{"type":"subscribe","room":"r","recover":{"epoch":"e"},"id":9}"#,
            br#"{"type":"subscribe","room":"r","recover":null,"presence":null}"#,
            br#"{"type":"history","room":"r","since":1,"limit":1000,"id":18446744073709551615}"#,
            br#"{"type":"history","room":"r","since":-1,"id":5}"#,
            br#"{"type":"history","room":"r","limit":1.5,"id":5}"#,
            br#"{"type":"ping","id":18446744073709551616}"#,
            br#"{"type":"ping","id":2,"id":3}"#,
            br#" { "type" : "ping" } "#,
            br#"{"type":"subscribe","id":8}"#,
            br#"{"type":"bogus","id":2}"#,
            br#"{"room":"r","id":1}"#,
            br#"{"type":"auth"}"#,
            br#"{"type":"auth","token":"abc.def.ghi"}"#,
            br#"{"type":"publish","room":"r","data_b64":"AA=="}"#,
            br#"{"type":"ping"} x"#,
            br#"{"type":"ping",}"#,
            br#"[1]"#,
            b"{",
            b"",
        ];
        for text in texts {
            same_decoding(text).unwrap();
        }
    }

    #[test]
    fn server_texts_decode_the_same() {
        let texts: &[&[u8]] = &[
            br#"{"type":"welcome","client":"c1","user":null,"ping_interval_ms":25000,"protocol":1}"#,
            br#"{"type":"welcome","client":"c\"1","user":"\u00e9"}"#,
            br#"{"type":"welcome","user":"u"}"#,
            br#"{"type":"welcome","client":"c","ping_interval_ms":-1}"#,
            br#"{"type":"message","room":"r","epoch":"e","offset":3,"from":{"client":"c","user":null},"data":{"a" : 1}}"#,
            br#"{"type":"message","room":"r","epoch":"e","offset":3,"from":null,"data_b64":"/wA="}"#,
            br#"{"type":"message","room":"r","epoch":"e","offset":3,"data_b64":"!!"}"#,
            br#"{"type":"message","room":"r","epoch":"e","offset":3,"id":4}"#,
            br#"{"type":"message","room":"r","epoch":"e","offset":3,"data":null,"data_b64":null}"#,
            br#"{"type":"message","room":"r","offset":3,"data":1}"#,
            br#"{"type":"message","room":"r","epoch":"e","offset":3,"from":{"user":"u"},"data":1}"#,
            br#"{"type":"message","room":"r","epoch":"e","offset":3,"from":{"client":"a","client":"b"},"data":1}"#,
            br#"{"type":"join","room":"r","member":{"client":"c","user":"u","info":{"n":1}}}"#,
            br#"{"type":"leave","room":"r","member":{"client":"c","user":null,"info":null}}"#,
            br#"{"type":"leave","room":"r"}"#,
            br#"{"type":"subscribed","id":1,"room":"r","epoch":"e","offset":2,"recovered":true,"messages":[{"room":"r","epoch":"e","offset":2,"from":null,"data":2}]}"#,
            br#"{"type":"subscribed","id":1,"room":"r","epoch":"e","offset":2,"messages":[{"room":"r","epoch":"e","offset":2}]}"#,
            br#"{"type":"subscribed","id":1,"room":"r","epoch":"e","offset":2,"messages":[{"room":"r","offset":2,"data":1}]}"#,
            br#"{"type":"pong","id":1,"messages":[{"room":"r","epoch":"e","offset":2}]}"#,
            br#"{"type":"subscribed","id":1,"room":"r","epoch":"e","offset":2,"messages":null}"#,
            br#"{"type":"subscribed","id":1,"room":"r","epoch":"e","offset":2,"messages":{}}"#,
            br#"{"type":"history","id":1,"room":"r","epoch":"e","offset":2,"messages":[]}"#,
            br#"{"type":"presence","id":1,"room":"r","members":[{"client":"c","user":"u","info":[1]}]}"#,
            br#"{"type":"presence","id":1,"room":"r","members":[{"user":"u"}]}"#,
            br#"{"type":"ack","room":"r","offset":1}"#,
            br#"{"type":"ack","id":2,"room":"r","offset":1}"#,
            br#"{"type":"unsubscribed","id":2}"#,
            br#"{"type":"authed","user":"u"}"#,
            br#"{"type":"error","id":2,"code":4003,"reason":"no"}"#,
            br#"{"type":"error","id":2,"code":70000,"reason":"no"}"#,
            br#"{"type":"error","id":2,"reason":"no"}"#,
            br#"{"type":"error","id":2,"code":4000,"reason":"a \"quoted\" reason"}"#,
            br#"{"type":"bogus","id":2}"#,
            br#"{"type":"pong","id":2,"id":3}"#,
            br#"{"id":2}"#,
            br#" { "type" : "pong" } "#,
            br#"{"type":"pong"} x"#,
            br#"[1]"#,
            b"{",
            b"",
        ];
        for text in texts {
            same_server_decoding(text).unwrap();
        }
    }

    /// Both paths read JSON up to the protocol's nesting limit; past it the
    /// slice path refuses (the hub refuses such `data` first, §9).
    #[test]
    fn nesting_limits() {
        let nested = |d: usize| format!("{}1{}", "[{\"a\":".repeat(d), "}]".repeat(d));
        for pairs in [1, 50, 64] {
            let text = nested(pairs);
            assert!(json::is_json(text.as_bytes()), "{pairs}");
            assert!(json_slice::is_json(text.as_bytes()), "{pairs}");
        }
        assert!(!json_slice::is_json(nested(65).as_bytes()));
        assert!(switchboard_core::protocol::json_too_deep(
            nested(65).as_bytes()
        ));
    }
}
