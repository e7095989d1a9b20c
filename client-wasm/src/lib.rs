#![doc = include_str!("../README.md")]
#![no_std]

extern crate alloc;

mod driver;
mod js;

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

use js_sys::{Function, Promise};
use switchboard_core::Duration;
use switchboard_core::client::{ClientConfig, Session, State};
use switchboard_core::protocol::Codec;
use wasm_bindgen::prelude::*;

use driver::{Handle, Inner, Iter, Room, TokenIn, VecMap, Waiter, Want, now, run};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of `new Switchboard(url, options)`. Delays are in milliseconds. */
export interface SwitchboardOptions {
  /** The token (a JWT), if the hub needs one. */
  token?: string;
  /** Called for a token at connect (when `token` is absent), before the
   *  current one expires (its `exp` claim) and after the hub closed with
   *  4004 (token expired). */
  getToken?: () => string | Promise<string>;
  /** Where the token goes: the first frame (default), `?token=` on the URL,
   *  or the `sb_token` cookie (set on this page's `document`). */
  tokenIn?: "frame" | "query" | "cookie";
  /** The sub-protocol: JSON text frames (default) or postcard binary frames. */
  protocol?: "json" | "postcard";
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  /** The backoff's base (default 250). */
  minReconnectDelay?: number;
  /** The largest reconnect delay (default 30000). */
  maxReconnectDelay?: number;
  /** Publishes kept while disconnected (default 100); one more is rejected
   *  with kind "queue_full". */
  offlineQueue?: number;
  /** How long a request waits for its reply, and a connection attempt for
   *  its welcome (default 10000). */
  requestTimeout?: number;
  /** Application-level ping interval (default: the hub's ping interval). */
  pingInterval?: number;
}

/** The connection states. */
export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

/** A `state` event: the new state; for disconnected and closed the close
 *  code (`null` when the network was lost without one) and reason. */
export interface StateChange {
  state: ConnectionState;
  code: number | null;
  reason: string;
}

/** The hub's `welcome`: this connection's id and user. */
export interface Welcome {
  client: string;
  user: string | null;
}

/** A message of a room. `data` is the published value (see the README for
 *  the mapping of bytes and values). */
export interface Message {
  room: string;
  epoch: string;
  offset: number;
  from: { client: string; user: string | null } | null;
  data: any;
}

/** A presence member; `info` comes from the token's `info` claim. */
export interface Member {
  client: string;
  user: string | null;
  info: any;
}

/** The result of a subscribe. */
export interface Subscribed {
  epoch: string;
  offset: number;
  recovered: boolean;
}

/** A page of history: the room's epoch and latest offset, and messages
 *  oldest first. */
export interface HistoryPage {
  epoch: string;
  offset: number;
  messages: Message[];
}

/** Options of `subscribe`. */
export interface SubscribeOptions {
  /** Receive `join` and `leave` events. */
  presence?: boolean;
}

/** Options of `history`. */
export interface HistoryOptions {
  /** Messages after this offset (exclusive); without it, the latest ones. */
  since?: number;
  /** At most this many (the hub's default is 100, its maximum 1000). */
  limit?: number;
}

/** What a failed request rejects with. */
export interface SwitchboardError extends Error {
  name: "SwitchboardError";
  /** "server" (the hub answered `error`, see `code`), "timeout", "closed"
   *  (the connection or the client closed; `code` is the close code if any),
   *  "queue_full", "token" (getToken failed). */
  kind: "server" | "timeout" | "closed" | "queue_full" | "token";
  /** The protocol code (PROTOCOL.md §6), or null. */
  code: number | null;
  reason: string;
}

export type SubscriptionEvent = "message" | "join" | "leave" | "recovered" | "error";

export interface Subscription {
  on(event: "message", handler: (message: Message) => void): Subscription;
  on(event: "join" | "leave", handler: (member: Member) => void): Subscription;
  on(event: "recovered", handler: (recovered: boolean) => void): Subscription;
  on(event: "error", handler: (error: SwitchboardError) => void): Subscription;
  [Symbol.asyncIterator](): AsyncIterator<Message>;
}

export interface Switchboard {
  on(event: "state", handler: (change: StateChange) => void): Switchboard;
  on(event: "error", handler: (error: SwitchboardError) => void): Switchboard;
}
"#;

/// A Switchboard client (the JavaScript `Switchboard` class).
#[wasm_bindgen]
pub struct Switchboard {
    handle: Handle,
}

fn codec_of(options: &JsValue) -> Result<Codec, JsValue> {
    match js::string(options, "protocol").as_deref() {
        None | Some("json") => Ok(Codec::Json),
        Some("postcard") => Ok(Codec::Postcard),
        Some(_) => Err(js_sys::TypeError::new("protocol must be \"json\" or \"postcard\"").into()),
    }
}

fn token_in_of(options: &JsValue) -> Result<TokenIn, JsValue> {
    match js::string(options, "tokenIn").as_deref() {
        None | Some("frame") => Ok(TokenIn::Frame),
        Some("query") => Ok(TokenIn::Query),
        Some("cookie") => Ok(TokenIn::Cookie),
        Some(_) => {
            Err(js_sys::TypeError::new("tokenIn must be \"frame\", \"query\" or \"cookie\"").into())
        }
    }
}

fn millis(options: &JsValue, key: &str) -> Option<Duration> {
    js::number(options, key).map(Duration::from_millis)
}

fn handler_list<'a>(
    map: &'a mut VecMap<String, Vec<Function>>,
    event: &str,
) -> &'a mut Vec<Function> {
    map.entry(event.to_string(), Vec::new)
}

/// A promise and the functions that settle it.
fn promise() -> (Promise, Function, Function) {
    let mut slot = None;
    let p = Promise::new(&mut |resolve, reject| slot = Some((resolve, reject)));
    let (resolve, reject) =
        slot.unwrap_or_else(|| (Function::from(JsValue::NULL), Function::from(JsValue::NULL)));
    (p, resolve, reject)
}

#[wasm_bindgen]
impl Switchboard {
    /// A client of the hub at `url` (`ws://host/ws` or `wss://…`); nothing
    /// happens until [`Switchboard::connect`].
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "SwitchboardOptions")] options: JsValue,
    ) -> Result<Switchboard, JsValue> {
        let parsed = web_sys::Url::new(url)?;
        let scheme = parsed.protocol();
        if scheme != "ws:" && scheme != "wss:" {
            return Err(js_sys::TypeError::new("the URL must start with ws: or wss:").into());
        }
        let d = ClientConfig::default();
        let codec = codec_of(&options)?;
        let token_in = token_in_of(&options)?;
        let timeout = millis(&options, "requestTimeout").unwrap_or(d.request_timeout);
        let reconnect = js::get(&options, "reconnect").as_bool().unwrap_or(true);
        let config = ClientConfig {
            codec,
            reconnect,
            min_reconnect_delay: millis(&options, "minReconnectDelay")
                .unwrap_or(d.min_reconnect_delay),
            max_reconnect_delay: millis(&options, "maxReconnectDelay")
                .unwrap_or(d.max_reconnect_delay),
            offline_queue: js::number(&options, "offlineQueue")
                .map_or(d.offline_queue, |n| n as usize),
            request_timeout: timeout,
            connect_timeout: timeout,
            ping_interval: millis(&options, "pingInterval"),
            token_in_upgrade: token_in != TokenIn::Frame,
            ..d
        };
        let seed = (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
            ^ (js_sys::Date::now() as u64).rotate_left(32);
        let mut session = Session::new(config, seed);
        let token = js::string(&options, "token");
        if let Some(t) = &token {
            let exp = switchboard_core::client::token_expiry(t);
            session.set_token(now(), Some(t.clone()), exp);
        }
        let mut inner = Inner::new(session, url.to_string(), token_in);
        inner.get_token = js::get(&options, "getToken").dyn_into::<Function>().ok();
        let handle = driver::new_handle(inner);
        handle.inner.borrow_mut().watch_network(&handle);
        Ok(Switchboard { handle })
    }

    /// Connects (and keeps reconnecting, unless `reconnect: false`);
    /// resolves with the first `welcome`, rejects if the client closes
    /// before (e.g. 4001 unauthorized).
    #[wasm_bindgen(unchecked_return_type = "Promise<Welcome>")]
    pub fn connect(&self) -> Promise {
        let (p, resolve, reject) = promise();
        run(&self.handle, |i| {
            match i.session.state() {
                State::Connected => {
                    let w = i.welcome.clone().unwrap_or(JsValue::UNDEFINED);
                    i.call(&resolve, w);
                    return;
                }
                State::Closed => {
                    let err = js::error("closed", i.last_close.0, "the client is closed");
                    i.call(&reject, err);
                    return;
                }
                _ => {}
            }
            i.connect_waiters.push((resolve, reject));
            if i.session.state() == State::Idle {
                match (&i.get_token, i.session.token()) {
                    (Some(get), None) => {
                        let get = get.clone();
                        let promise = match get.call0(&JsValue::NULL) {
                            Ok(v) => Promise::resolve(&v),
                            Err(e) => Promise::reject(&e),
                        };
                        // Connects once the token is there.
                        driver::fetch_token(&self.handle, promise, true);
                    }
                    _ => i.session.connect(now()),
                }
            }
        });
        p
    }

    /// The connection state: `"idle"`, `"connecting"`, `"connected"`,
    /// `"disconnected"` or `"closed"`.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        let s = self.handle.inner.borrow().session.state();
        match s {
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Disconnected => "disconnected",
            State::Closed => "closed",
        }
        .into()
    }

    /// The `welcome` of the current (or last) connection: its client id
    /// (new on every connection) and user; `null` before the first.
    #[wasm_bindgen(getter, unchecked_return_type = "Welcome | null")]
    pub fn welcome(&self) -> JsValue {
        self.handle
            .inner
            .borrow()
            .welcome
            .clone()
            .unwrap_or(JsValue::NULL)
    }

    /// Publishes waiting for a connection.
    #[wasm_bindgen(getter)]
    pub fn queued(&self) -> usize {
        self.handle.inner.borrow().session.queued()
    }

    /// Adds `handler` for `event`: `"state"` (a `StateChange`) or
    /// `"error"` (an `error` from the hub that no request waits for, or a
    /// failed `getToken`).
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: &str, handler: Function) -> Result<Switchboard, JsValue> {
        if event != "state" && event != "error" {
            return Err(js_sys::TypeError::new("event must be \"state\" or \"error\"").into());
        }
        let mut i = self.handle.inner.borrow_mut();
        handler_list(&mut i.handlers, event).push(handler);
        Ok(Switchboard {
            handle: self.handle.clone(),
        })
    }

    /// Removes `handler` from `event`.
    pub fn off(&self, event: &str, handler: &Function) {
        let mut i = self.handle.inner.borrow_mut();
        if let Some(list) = i.handlers.get_mut(event) {
            list.retain(|f| f != handler);
        }
    }

    /// Subscribes to `room` (kept across reconnects, recovered from the last
    /// message seen, until [`Subscription::unsubscribe`]). Subscribing to a
    /// room again returns another handle on the same subscription.
    #[wasm_bindgen(unchecked_return_type = "Subscription")]
    pub fn subscribe(
        &self,
        room: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "SubscribeOptions")] options: JsValue,
    ) -> JsValue {
        let presence = js::get(&options, "presence").as_bool().unwrap_or(false);
        run(&self.handle, |i| {
            if i.rooms.contains_key(room) {
                return;
            }
            i.rooms.insert(room.to_string(), Room::default());
            let op = i.session.subscribe(now(), room, presence);
            i.waiting.insert(op, Waiter::Subscribe(room.to_string()));
        });
        let sub = JsValue::from(Subscription {
            handle: self.handle.clone(),
            room: room.to_string(),
        });
        // `for await (const m of sub)`: the class's async iterator is its
        // `messages()`.
        let proto = js_sys::Object::get_prototype_of(&sub);
        let key = js_sys::Symbol::async_iterator();
        if !js_sys::Reflect::has(&proto, &key).unwrap_or(true) {
            let messages = js_sys::Reflect::get(&proto, &"messages".into()).unwrap_or_default();
            let _ = js_sys::Reflect::set(&proto, &key, &messages);
        }
        sub
    }

    /// Closes the client for good (state `"closed"`).
    pub fn close(&self) {
        run(&self.handle, |i| i.session.close(now()));
    }
}

/// A subscription to one room (the JavaScript `Subscription` class); also
/// an async iterator of its messages (`for await (const m of sub)`).
#[wasm_bindgen]
pub struct Subscription {
    handle: Handle,
    room: String,
}

#[wasm_bindgen]
impl Subscription {
    /// The room.
    #[wasm_bindgen(getter)]
    pub fn room(&self) -> String {
        self.room.clone()
    }

    /// Adds `handler` for `event`: `"message"` (a `Message`, once per
    /// offset, in order), `"join"`/`"leave"` (a `Member`, with `presence`),
    /// `"recovered"` (after a reconnect: `true` when every missed message
    /// was replayed, `false` when some were lost: refetch with `history`),
    /// `"error"` (the subscribe was refused).
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: &str, handler: Function) -> Result<Subscription, JsValue> {
        if !matches!(event, "message" | "join" | "leave" | "recovered" | "error") {
            return Err(js_sys::TypeError::new(
                "event must be \"message\", \"join\", \"leave\", \"recovered\" or \"error\"",
            )
            .into());
        }
        let mut i = self.handle.inner.borrow_mut();
        if let Some(r) = i.rooms.get_mut(&self.room) {
            handler_list(&mut r.handlers, event).push(handler);
        }
        Ok(Subscription {
            handle: self.handle.clone(),
            room: self.room.clone(),
        })
    }

    /// Removes `handler` from `event`.
    pub fn off(&self, event: &str, handler: &Function) {
        let mut i = self.handle.inner.borrow_mut();
        if let Some(list) = i
            .rooms
            .get_mut(&self.room)
            .and_then(|r| r.handlers.get_mut(event))
        {
            list.retain(|f| f != handler);
        }
    }

    /// Resolves once subscribed (the first time), with the room's epoch and
    /// latest offset; rejects if the hub refused.
    #[wasm_bindgen(unchecked_return_type = "Promise<Subscribed>")]
    pub fn ready(&self) -> Promise {
        let (p, resolve, reject) = promise();
        let mut i = self.handle.inner.borrow_mut();
        match i.rooms.get_mut(&self.room) {
            Some(r) => match &r.ready {
                Some(Ok(v)) => {
                    let _ = resolve.call1(&JsValue::NULL, v);
                }
                Some(Err(e)) => {
                    let _ = reject.call1(&JsValue::NULL, e);
                }
                None => r.ready_waiters.push((resolve, reject)),
            },
            None => {
                let e = js::error("closed", None, "not subscribed");
                let _ = reject.call1(&JsValue::NULL, &e);
            }
        }
        p
    }

    /// Publishes `data` to the room; resolves with its offset when acked,
    /// rejects with a `SwitchboardError` (`code` the protocol code). While
    /// disconnected it waits in the offline queue and is re-sent with its
    /// idempotency key after the reconnect.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn publish(&self, data: JsValue) -> Result<Promise, JsValue> {
        let bytes = js::encode_data(&data)?;
        Ok(self.request(Want::Offset, |s| s.publish(now(), &self.room, &bytes)))
    }

    /// The room's members.
    #[wasm_bindgen(unchecked_return_type = "Promise<Member[]>")]
    pub fn presence(&self) -> Promise {
        self.request(Want::Presence, |s| s.presence(now(), &self.room))
    }

    /// A page of the room's history.
    #[wasm_bindgen(unchecked_return_type = "Promise<HistoryPage>")]
    pub fn history(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "HistoryOptions")] options: JsValue,
    ) -> Promise {
        let since = js::number(&options, "since");
        let limit = js::number(&options, "limit");
        self.request(Want::History, |s| {
            s.history(now(), &self.room, since, limit)
        })
    }

    /// Unsubscribes: no more events; the iterators end.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn unsubscribe(&self) -> Promise {
        let room = self.room.clone();
        let p = self.request(Want::Nothing, |s| s.unsubscribe(now(), &room));
        run(&self.handle, |i| {
            let err = js::error("closed", None, "unsubscribed");
            i.end_room(&self.room, &err);
            i.rooms.remove(&self.room);
        });
        p
    }

    /// An async iterator of the room's messages from now on, keeping at most
    /// `buffer` (default 1000) unread: past that it throws (kind
    /// "overflow") rather than grow. `sub[Symbol.asyncIterator]()` is
    /// `sub.messages()`.
    pub fn messages(&self, buffer: Option<u32>) -> MessageIterator {
        let iter = Rc::new(RefCell::new(Iter {
            buf: Default::default(),
            next: None,
            done: false,
            limit: buffer.map_or(1000, |b| b.max(1) as usize),
            overflowed: false,
        }));
        let mut i = self.handle.inner.borrow_mut();
        match i.rooms.get_mut(&self.room) {
            Some(r) => r.iterators.push(iter.clone()),
            None => iter.borrow_mut().done = true,
        }
        MessageIterator { iter }
    }

    fn request(
        &self,
        want: Want,
        f: impl FnOnce(&mut Session) -> switchboard_core::client::OpId,
    ) -> Promise {
        let (p, resolve, reject) = promise();
        run(&self.handle, |i| {
            let op = f(&mut i.session);
            i.waiting.insert(
                op,
                Waiter::Promise {
                    resolve,
                    reject,
                    kind: want,
                },
            );
        });
        p
    }
}

/// The async iterator of [`Subscription::messages`].
#[wasm_bindgen]
pub struct MessageIterator {
    iter: Rc<RefCell<Iter>>,
}

#[wasm_bindgen]
impl MessageIterator {
    /// The next message (`{value, done}`).
    #[wasm_bindgen(unchecked_return_type = "Promise<IteratorResult<Message>>")]
    pub fn next(&self) -> Promise {
        let mut it = self.iter.borrow_mut();
        if let Some(v) = it.buf.pop_front() {
            return Promise::resolve(&js::step(&v, false));
        }
        if it.overflowed {
            it.overflowed = false;
            let e = js::error(
                "overflow",
                None,
                "more unread messages than the iterator's buffer",
            );
            return Promise::reject(&e);
        }
        if it.done {
            return Promise::resolve(&js::step(&JsValue::UNDEFINED, true));
        }
        let (p, resolve, reject) = promise();
        if let Some((old, _)) = it.next.replace((resolve, reject)) {
            // Two `next()` without waiting: the older one ends.
            let _ = old.call1(&JsValue::NULL, &js::step(&JsValue::UNDEFINED, true));
        }
        p
    }

    /// Ends the iterator (`break` in `for await`).
    #[wasm_bindgen(
        js_name = "return",
        unchecked_return_type = "Promise<IteratorResult<Message>>"
    )]
    pub fn finish(&self) -> Promise {
        let mut it = self.iter.borrow_mut();
        it.done = true;
        it.buf.clear();
        if let Some((resolve, _)) = it.next.take() {
            let _ = resolve.call1(&JsValue::NULL, &js::step(&JsValue::UNDEFINED, true));
        }
        Promise::resolve(&js::step(&JsValue::UNDEFINED, true))
    }
}
