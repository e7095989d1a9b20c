//! The JSON codec without an allocator (`protocol::json_slice`), in every
//! feature set: what it reads, what it refuses with 4000, and that it never
//! panics on any input or any buffer size.

use proptest::prelude::*;
use switchboard_core::protocol::{ClientFrame, EncodeError, MessageFrame, ServerFrame, json_slice};

#[test]
fn reads_every_client_frame_borrowing_from_the_input() {
    let f = json_slice::decode_client(
        br#"{"x":{"y":[1,"}"]},"type":"publish","room":"r","data":{"a": [1, 2]},"id":3,"key":"k1"}"#,
    )
    .unwrap();
    assert_eq!(
        f,
        ClientFrame::Publish {
            room: "r".into(),
            data: br#"{"a": [1, 2]}"#[..].into(),
            id: Some(3),
            key: Some("k1".into()),
        }
    );
    let f = json_slice::decode_client(
        br#"{"type":"subscribe","room":"chat:a","recover":{"offset":7,"epoch":"e1"},"presence":false}"#,
    )
    .unwrap();
    assert!(matches!(
        f,
        ClientFrame::Subscribe { room, id: None, recover: Some(r), presence: Some(false) }
            if room == "chat:a" && r.epoch == "e1" && r.offset == 7
    ));
}

#[test]
fn refuses_with_4000_and_the_id_when_it_could_be_read() {
    for (text, id) in [
        (&br#"{"type":"subscribe","id":8}"#[..], Some(8)),
        (br#"{"type":"bogus","id":2}"#, Some(2)),
        (br#"{"type":"ping","id":2,"since":"x"}"#, Some(2)),
        // Escapes in a string field cannot be borrowed without an allocator.
        (br#"{"type":"auth","token":"a\"b"}"#, None),
        (br#"{"type":"ping","id":-1}"#, None),
        (br#"{"type":"ping"}}"#, None),
        (b"\"ping\"", None),
        (b"{", None),
    ] {
        let e = json_slice::decode_client(text).unwrap_err();
        assert_eq!(
            (e.code.code(), e.id),
            (4000, id),
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn writes_data_as_json_or_base64() {
    let mut buf = [0u8; 256];
    let frame = |data: &'static [u8]| {
        ServerFrame::Message(MessageFrame {
            room: "r".into(),
            epoch: "e".into(),
            offset: 1,
            from: None,
            data: data.into(),
        })
    };
    let n = json_slice::encode_server(&frame(b" [1, \"\\u00e9\"] "), &mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        br#"{"type":"message","room":"r","epoch":"e","offset":1,"from":null,"data":[1, "\u00e9"]}"#
    );
    let n = json_slice::encode_server(&frame(b"\xff\x00"), &mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        br#"{"type":"message","room":"r","epoch":"e","offset":1,"from":null,"data_b64":"/wA="}"#
    );
    let n = json_slice::encode_server(
        &ServerFrame::Error {
            id: None,
            code: 4005,
            reason: "bad \"room\"\n\u{1}".into(),
        },
        &mut buf,
    )
    .unwrap();
    assert_eq!(
        &buf[..n],
        br#"{"type":"error","id":null,"code":4005,"reason":"bad \"room\"\n\u0001"}"#
    );
}

#[test]
fn validates_json_values() {
    for good in [
        &b"1"[..],
        b" -0.5e+3 ",
        b"[]",
        b"{}",
        br#"{"a":[{"b":null}]}"#,
        b"\"\\u12ab\"",
    ] {
        assert!(
            json_slice::is_json(good),
            "{}",
            String::from_utf8_lossy(good)
        );
    }
    for bad in [
        &b""[..],
        b"01",
        b"1.",
        b"[1,]",
        b"{\"a\"}",
        b"{\"a\":1,}",
        b"nul",
        b"\"\\x\"",
        b"\"\x01\"",
        b"[1] [2]",
        b"\"\xff\"",
    ] {
        assert!(
            !json_slice::is_json(bad),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let deep = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
    assert!(json_slice::is_json(deep(127).as_bytes()));
    assert!(!json_slice::is_json(deep(10_000).as_bytes()));
}

proptest! {
    #[test]
    fn never_panics_on_any_input(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = json_slice::decode_client(&bytes);
        let _ = json_slice::is_json(&bytes);
    }

    #[test]
    fn any_buffer_size_is_a_frame_or_buffer_full(len in 0usize..120, data in r#"[1-9][0-9]{0,8}|"[a-z ]{0,12}""#) {
        let frame = ClientFrame::Publish { room: "room".into(), data: data.as_bytes().into(), id: Some(1), key: None };
        let mut buf = vec![0u8; len];
        match json_slice::encode_client(&frame, &mut buf) {
            Ok(n) => {
                prop_assert!(n <= len);
                let back = json_slice::decode_client(&buf[..n]).unwrap();
                let ok = matches!(back, ClientFrame::Publish { id: Some(1), .. });
                prop_assert!(ok, "decoded {:?}", back);
            }
            Err(e) => prop_assert_eq!(e, EncodeError::BufferFull),
        }
    }
}
