//! The server HTTP API (PROTOCOL.md §11): publish, broadcast, presence,
//! history, disconnect and info for backends that hold no WebSocket, under
//! `/api/`, with bearer keys compared in constant time.
//!
//! This module only reads HTTP requests and writes HTTP answers: every
//! decision (room names, keys, limits, the store, namespaces, the close
//! reason) is the core's, reached through [`HubHandle`].

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;
use switchboard_core::hub::{PublishError, QueryError, is_valid_key};
use switchboard_core::protocol::ErrorCode;

use crate::server::{HubHandle, Published};
use crate::store::OwnedDisconnect;

/// The OpenAPI 3 document of this API, served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// The most rooms one broadcast names (PROTOCOL.md §11).
pub const MAX_BROADCAST_ROOMS: usize = 1_000;

/// Where the API lives.
pub(crate) const PREFIX: &str = "/api/";

type Body = Full<Bytes>;

/// The API of one server: its keys and the hub it speaks to.
pub(crate) struct Api {
    keys: Vec<Vec<u8>>,
    hub: HubHandle,
    /// `max_frame`: the largest request body.
    max_body: usize,
}

/// An API refusal: the HTTP status and the `{"code", "reason"}` body.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: u16,
    reason: String,
}

impl Refusal {
    fn new(status: StatusCode, code: u16, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            reason: reason.into(),
        }
    }

    fn malformed(reason: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, 4000, reason)
    }

    /// A refusal carrying the core's error code, with the status §11 gives it.
    fn from_code(code: ErrorCode, reason: impl Into<String>) -> Self {
        Refusal::new(status_of(code), code.code(), reason)
    }
}

impl From<PublishError> for Refusal {
    fn from(e: PublishError) -> Self {
        Refusal::from_code(e.code(), e.message())
    }
}

impl From<QueryError> for Refusal {
    fn from(e: QueryError) -> Self {
        Refusal::from_code(e.code, e.reason)
    }
}

/// The HTTP status of a protocol error code (PROTOCOL.md §11): 503 for a
/// store that is down, 429 for a limit, 400 for the rest.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Limit | ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(value: &Value) -> Response<Body> {
    json_response(StatusCode::OK, value.to_string().into_bytes())
}

fn refused(r: Refusal) -> Response<Body> {
    let body = json!({ "code": r.code, "reason": r.reason }).to_string();
    let mut resp = json_response(r.status, body.into_bytes());
    match r.status {
        StatusCode::UNAUTHORIZED => {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"switchboard\""),
            );
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            // The unread rest of the body cannot be skipped: end the
            // connection after this answer.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    resp
}

/// The answer to an `/api/` path on a server with no key configured.
pub(crate) fn not_configured() -> Response<Body> {
    refused(Refusal::new(
        StatusCode::NOT_FOUND,
        4000,
        "the server API is off: no API key is configured",
    ))
}

/// `data` present (even `null`) is `Some`; absent is `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Standard base64 with padding, taking any bits after the last byte (as
/// most encoders' readers do).
const LENIENT_B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The bytes to publish: `data` as compact JSON text, or `data_b64`
/// decoded. Exactly one of them.
fn payload(data: &Option<Box<RawValue>>, data_b64: &Option<String>) -> Result<Vec<u8>, Refusal> {
    match (data, data_b64) {
        (Some(_), Some(_)) => Err(Refusal::malformed(
            "both data and data_b64: send one of them",
        )),
        (None, None) => Err(Refusal::malformed("missing field `data` (or `data_b64`)")),
        (Some(raw), None) => {
            let mut out = Vec::new();
            switchboard_core::protocol::json::compact_into(raw.get().as_bytes(), &mut out);
            Ok(out)
        }
        (None, Some(b64)) => LENIENT_B64
            .decode(b64)
            .map_err(|e| Refusal::malformed(format!("data_b64 is not standard base64: {e}"))),
    }
}

// Not `#[serde(flatten)]` for the shared fields: flatten cannot carry a
// `RawValue`.

#[derive(Deserialize)]
struct PublishBody {
    room: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    data_b64: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
struct BroadcastBody {
    rooms: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    data_b64: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
struct DisconnectBody {
    user: String,
    #[serde(default)]
    reason: Option<String>,
}

/// A JSON object body: anything else (malformed JSON, another kind of
/// value, a missing field, a wrong type) is 400 4000.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    // Derived structs would also take a JSON array of their fields.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        let why = match serde_json::from_slice::<IgnoredAny>(body) {
            Err(e) => format!("malformed JSON: {e}"),
            Ok(_) => "the body must be a JSON object".to_owned(),
        };
        return Err(Refusal::malformed(why));
    }
    serde_json::from_slice(body).map_err(|e| Refusal::malformed(format!("bad request: {e}")))
}

fn published(room: &str, p: &Published) -> Value {
    json!({ "room": room, "epoch": p.epoch, "offset": p.offset })
}

/// The JSON text of a `history` or `presence` frame, as the API answers it:
/// the same object without the frame's `type`.
fn frame_answer(frame: &[u8]) -> Result<Value, Refusal> {
    let mut v: Map<String, Value> = serde_json::from_slice(frame).map_err(|e| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            1011,
            format!("internal: {e}"),
        )
    })?;
    v.remove("type");
    v.remove("id");
    Ok(Value::Object(v))
}

/// `name=value` pairs of a query string, percent-decoded.
fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn query_u64(pairs: &[(String, String)], name: &str) -> Result<Option<u64>, Refusal> {
    match pairs.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        // Any non-negative integer: one past u64 reads as u64::MAX (no
        // message is that far; a limit is clamped anyway).
        Some((_, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(v.parse().unwrap_or(u64::MAX)))
        }
        Some(_) => Err(Refusal::malformed(format!(
            "`{name}` must be a non-negative integer"
        ))),
    }
}

fn query_room(pairs: &[(String, String)]) -> Result<&str, Refusal> {
    pairs
        .iter()
        .find(|(k, _)| k == "room")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| Refusal::malformed("missing query parameter `room`"))
}

impl Api {
    /// The API for `hub` with these keys (at least one), bodies up to
    /// `max_body` bytes.
    pub(crate) fn new(keys: Vec<String>, hub: HubHandle, max_body: usize) -> Self {
        Api {
            keys: keys.into_iter().map(String::into_bytes).collect(),
            hub,
            max_body,
        }
    }

    /// Is the `Authorization: Bearer KEY` header one of the keys? Every key
    /// is compared, each in constant time.
    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(given) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        else {
            return false;
        };
        let mut hit = subtle::Choice::from(0);
        for key in &self.keys {
            hit |= key.as_slice().ct_eq(given);
        }
        hit.into()
    }

    /// Serves one request under `/api/`.
    pub(crate) async fn serve(&self, req: Request<Incoming>) -> Response<Body> {
        match self.dispatch(req).await {
            Ok(r) => r,
            Err(r) => refused(r),
        }
    }

    async fn dispatch(&self, req: Request<Incoming>) -> Result<Response<Body>, Refusal> {
        if !self.authorized(&req) {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                4001,
                "missing or wrong API key (Authorization: Bearer KEY)",
            ));
        }
        let path = req.uri().path().strip_prefix(PREFIX).unwrap_or_default();
        let allowed = match path {
            "publish" | "broadcast" | "disconnect" => Method::POST,
            "presence" | "history" | "info" | "openapi.json" => Method::GET,
            _ => {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    4000,
                    "no such API endpoint",
                ));
            }
        };
        let head = allowed == Method::GET && req.method() == Method::HEAD;
        if req.method() != allowed && !head {
            let mut r = refused(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                4000,
                format!("use {allowed}"),
            ));
            if let Ok(v) = HeaderValue::from_str(allowed.as_str()) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            return Ok(r);
        }
        match path {
            "publish" => {
                let body = self.body(req).await?;
                let b: PublishBody = parse(&body)?;
                let data = payload(&b.data, &b.data_b64)?;
                let p = self
                    .hub
                    .publish_async(&b.room, data, b.key.as_deref())
                    .await?;
                Ok(ok(&published(&b.room, &p)))
            }
            "broadcast" => {
                let body = self.body(req).await?;
                let b: BroadcastBody = parse(&body)?;
                if b.rooms.len() > MAX_BROADCAST_ROOMS {
                    return Err(Refusal::malformed(format!(
                        "more than {MAX_BROADCAST_ROOMS} rooms in one broadcast"
                    )));
                }
                let data = payload(&b.data, &b.data_b64)?;
                let key = b.key.as_deref();
                // Refused whole, even for no room, as a publish would.
                if key.is_some_and(|k| !is_valid_key(k)) {
                    return Err(PublishError::BadKey.into());
                }
                // Every publish is issued before any is awaited: with a
                // remote store they travel together.
                let waits: Vec<_> = b
                    .rooms
                    .iter()
                    .map(|room| self.hub.publish_async(room, &data, key))
                    .collect();
                let mut results = Vec::with_capacity(waits.len());
                for (room, wait) in b.rooms.iter().zip(waits) {
                    results.push(match wait.await {
                        Ok(p) => published(room, &p),
                        Err(e) => {
                            json!({ "room": room, "code": e.code().code(), "reason": e.message() })
                        }
                    });
                }
                Ok(ok(&json!({ "results": results })))
            }
            "presence" => {
                let pairs = query_pairs(&req);
                let room = query_room(&pairs)?;
                let frame = self.hub.presence(room).await?;
                Ok(ok(&frame_answer(&frame)?))
            }
            "history" => {
                let pairs = query_pairs(&req);
                let room = query_room(&pairs)?;
                let since = query_u64(&pairs, "since")?;
                let limit = query_u64(&pairs, "limit")?;
                let frame = self.hub.history(room, since, limit).await?;
                Ok(ok(&frame_answer(&frame)?))
            }
            "disconnect" => {
                let body = self.body(req).await?;
                let b: DisconnectBody = parse(&body)?;
                let reason = b
                    .reason
                    .as_deref()
                    .unwrap_or(switchboard_core::hub::DEFAULT_DISCONNECT_REASON);
                let n = self
                    .hub
                    .disconnect_with(OwnedDisconnect::User(b.user), reason);
                Ok(ok(&json!({ "disconnected": n })))
            }
            "info" => {
                let nodes = self.hub.nodes().await.ok_or_else(|| {
                    Refusal::from_code(
                        ErrorCode::Unavailable,
                        "unavailable: the store cannot list the nodes",
                    )
                })?;
                let me = self.hub.node_id();
                let here = nodes.iter().find(|n| n.node == me);
                let (connections, rooms) = here.map_or((0, 0), |n| (n.connections, n.rooms));
                let nodes: Vec<Value> = nodes
                    .iter()
                    .map(|n| json!({ "node": n.node, "connections": n.connections, "rooms": n.rooms }))
                    .collect();
                Ok(ok(&json!({
                    "node": me,
                    "connections": connections,
                    "rooms": rooms,
                    "nodes": nodes,
                })))
            }
            _ => Ok(json_response(StatusCode::OK, OPENAPI.as_bytes().to_vec())),
        }
    }

    /// Reads the body, refusing with 413 one over `max_frame` (announced or
    /// read: it is never buffered past the limit).
    async fn body(&self, req: Request<Incoming>) -> Result<Bytes, Refusal> {
        let too_large = || {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                1009,
                format!("body larger than max_frame ({} bytes)", self.max_body),
            )
        };
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > self.max_body as u64) {
            return Err(too_large());
        }
        match Limited::new(req.into_body(), self.max_body).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Err(e) => Err(Refusal::malformed(format!("could not read the body: {e}"))),
        }
    }
}
