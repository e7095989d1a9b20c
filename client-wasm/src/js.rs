//! Conversions between the session's values and JavaScript values.
//!
//! The payload mapping, the same for both protocols (so a JSON client and a
//! postcard client see each other's messages as the same values):
//!
//! - publishing: a `Uint8Array` (or `ArrayBuffer`) goes as its bytes; any
//!   other value goes as its JSON text (`JSON.stringify`), so it must be
//!   JSON-serialisable;
//! - receiving: bytes that are UTF-8 JSON text become the parsed value (a
//!   JSON client's `data`); other bytes (a JSON client's `data_b64`) become a
//!   `Uint8Array`.
//!
//! A byte payload that happens to be valid JSON text is therefore received
//! as the value it spells.

use alloc::string::String;
use alloc::vec::Vec;

use js_sys::{Array, JSON, Object, Reflect, Uint8Array};
use switchboard_core::client::{MemberInfo, Message, RequestError};
use wasm_bindgen::{JsCast, JsValue};

/// `obj[key] = value` (on a fresh plain object it cannot fail).
pub(crate) fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// `obj[key]`, `undefined` when `obj` is not an object.
pub(crate) fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// An optional non-negative number option, in whole units.
pub(crate) fn number(obj: &JsValue, key: &str) -> Option<u64> {
    let v = get(obj, key).as_f64()?;
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

/// A JavaScript number for an offset or count.
pub(crate) fn num(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn opt_str(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, JsValue::from_str)
}

/// The bytes to publish for `value` (see the module docs).
pub(crate) fn encode_data(value: &JsValue) -> Result<Vec<u8>, JsValue> {
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Ok(bytes.to_vec());
    }
    if value.is_instance_of::<js_sys::ArrayBuffer>() {
        return Ok(Uint8Array::new(value).to_vec());
    }
    let text = JSON::stringify(value)?;
    match text.as_string() {
        Some(text) => Ok(text.into_bytes()),
        None => {
            Err(js_sys::TypeError::new("data must be JSON-serialisable or a Uint8Array").into())
        }
    }
}

/// The value received for `bytes` (see the module docs).
pub(crate) fn decode_data(bytes: &[u8]) -> JsValue {
    if let Ok(text) = core::str::from_utf8(bytes)
        && let Ok(value) = JSON::parse(text)
    {
        return value;
    }
    Uint8Array::from(bytes).into()
}

/// `{room, epoch, offset, from: {client, user} | null, data}`.
pub(crate) fn message(m: &Message) -> JsValue {
    let obj = Object::new();
    set(&obj, "room", &JsValue::from_str(&m.room));
    set(&obj, "epoch", &JsValue::from_str(&m.epoch));
    set(&obj, "offset", &num(m.offset));
    let from = match &m.from {
        Some((client, user)) => {
            let f = Object::new();
            set(&f, "client", &JsValue::from_str(client));
            set(&f, "user", &opt_str(user.as_deref()));
            f.into()
        }
        None => JsValue::NULL,
    };
    set(&obj, "from", &from);
    set(&obj, "data", &decode_data(&m.data));
    obj.into()
}

/// An array of [`message`]s.
pub(crate) fn messages(ms: &[Message]) -> JsValue {
    ms.iter().map(message).collect::<Array>().into()
}

/// `{client, user, info}` (`info` the parsed JSON, or `null`).
pub(crate) fn member(m: &MemberInfo) -> JsValue {
    let obj = Object::new();
    set(&obj, "client", &JsValue::from_str(&m.client));
    set(&obj, "user", &opt_str(m.user.as_deref()));
    let info = m.info.as_deref().map_or(JsValue::NULL, decode_data);
    set(&obj, "info", &info);
    obj.into()
}

/// A `SwitchboardError`: an `Error` with `kind` (`"server"`, `"timeout"`,
/// `"closed"`, `"queue_full"`), `code` (the protocol code, or `null`) and
/// `reason`.
pub(crate) fn error(kind: &str, code: Option<u16>, reason: &str) -> JsValue {
    let text = if reason.is_empty() { kind } else { reason };
    let e = js_sys::Error::new(text);
    e.set_name("SwitchboardError");
    let obj: &Object = e.unchecked_ref();
    set(obj, "kind", &JsValue::from_str(kind));
    set(obj, "code", &code.map_or(JsValue::NULL, JsValue::from));
    set(obj, "reason", &JsValue::from_str(reason));
    e.into()
}

/// The `SwitchboardError` of a failed request; `closed` is how the last
/// connection ended (its close code and reason).
pub(crate) fn request_error(e: RequestError, closed: &(Option<u16>, String)) -> JsValue {
    match e {
        RequestError::Server { code, reason } => error("server", Some(code), &reason),
        RequestError::Timeout => error("timeout", None, "no reply in time"),
        RequestError::QueueFull => error("queue_full", None, "the offline queue is full"),
        RequestError::Closed => {
            let reason = if closed.1.is_empty() {
                "not connected"
            } else {
                &closed.1
            };
            error("closed", closed.0, reason)
        }
    }
}

/// `{value, done}` for an async iterator.
pub(crate) fn step(value: &JsValue, done: bool) -> JsValue {
    let obj = Object::new();
    set(&obj, "value", value);
    set(&obj, "done", &JsValue::from_bool(done));
    obj.into()
}

/// The string option `key`, if it is a string.
pub(crate) fn string(obj: &JsValue, key: &str) -> Option<String> {
    get(obj, key).as_string()
}
