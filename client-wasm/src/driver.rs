//! The driver: it owns the [`Session`], the browser `WebSocket` and one
//! `setTimeout`, and only moves bytes, time and events between them and
//! the application. After every input (a socket event, a timer, a command)
//! it drains [`Session::poll_output`] until it returns `None`, then arms the
//! timer for [`Session::poll_timeout`].
//!
//! The application's callbacks are never called while the driver is
//! borrowed: they are queued and called afterwards, in order, so a callback
//! may call back into the client.

use alloc::collections::VecDeque;
use alloc::rc::{Rc, Weak};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use js_sys::{Function, Promise, Uint8Array};
use switchboard_core::Instant;
use switchboard_core::client::{Event, OpId, Output, Reply, RequestError, Session, State};
use switchboard_core::protocol::Codec;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::js;

/// A small map as a vector (a client has a few rooms, handlers and
/// requests in flight; a `BTreeMap` per key and value type costs the
/// package kilobytes).
pub(crate) struct VecMap<K, V>(Vec<(K, V)>);

impl<K: PartialEq + Clone, V> VecMap<K, V> {
    pub(crate) fn new() -> Self {
        VecMap(Vec::new())
    }

    pub(crate) fn get<Q: ?Sized + PartialEq>(&self, k: &Q) -> Option<&V>
    where
        K: core::borrow::Borrow<Q>,
    {
        self.0.iter().find(|(x, _)| x.borrow() == k).map(|(_, v)| v)
    }

    pub(crate) fn get_mut<Q: ?Sized + PartialEq>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: core::borrow::Borrow<Q>,
    {
        self.0
            .iter_mut()
            .find(|(x, _)| x.borrow() == k)
            .map(|(_, v)| v)
    }

    pub(crate) fn contains_key<Q: ?Sized + PartialEq>(&self, k: &Q) -> bool
    where
        K: core::borrow::Borrow<Q>,
    {
        self.get(k).is_some()
    }

    pub(crate) fn insert(&mut self, k: K, v: V) {
        match self.get_mut(&k) {
            Some(old) => *old = v,
            None => self.0.push((k, v)),
        }
    }

    pub(crate) fn remove<Q: ?Sized + PartialEq>(&mut self, k: &Q) -> Option<V>
    where
        K: core::borrow::Borrow<Q>,
    {
        let i = self.0.iter().position(|(x, _)| x.borrow() == k)?;
        Some(self.0.remove(i).1)
    }

    /// The value of `k`, inserted with `make` when missing.
    pub(crate) fn entry(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.0.iter().position(|(x, _)| *x == k) {
            Some(i) => i,
            None => {
                self.0.push((k, make()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    pub(crate) fn keys(&self) -> Vec<K> {
        self.0.iter().map(|(k, _)| k.clone()).collect()
    }
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

/// Where the upgrade carries the token (PROTOCOL.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenIn {
    /// The first frame (`auth`): the token is never in a URL or a log.
    Frame,
    /// `?token=` on the URL.
    Query,
    /// The `sb_token` cookie, set on `document` before every connection
    /// (the page must be on the hub's site for the browser to send it).
    Cookie,
}

/// Now, for the session: `Date.now()` in microseconds (wall-clock, so that
/// a token's `exp` is on the same clock).
pub(crate) fn now() -> Instant {
    Instant::from_micros((js_sys::Date::now().max(0.0) as u64).saturating_mul(1000))
}

/// Who waits for a reply.
pub(crate) enum Waiter {
    /// A promise.
    Promise {
        resolve: Function,
        reject: Function,
        kind: Want,
    },
    /// A [`Subscription`](crate::Subscription)'s subscribe.
    Subscribe(String),
}

/// What a promise resolves with.
#[derive(Clone, Copy)]
pub(crate) enum Want {
    Offset,
    Presence,
    History,
    Nothing,
}

/// Handlers and state of one subscribed room.
#[derive(Default)]
pub(crate) struct Room {
    pub(crate) handlers: VecMap<String, Vec<Function>>,
    pub(crate) iterators: Vec<Rc<RefCell<Iter>>>,
    /// `Some(result)` once `subscribed` (or an error) came.
    pub(crate) ready: Option<Result<JsValue, JsValue>>,
    pub(crate) ready_waiters: Vec<(Function, Function)>,
}

/// An async iterator's buffer.
pub(crate) struct Iter {
    pub(crate) buf: VecDeque<JsValue>,
    pub(crate) next: Option<(Function, Function)>,
    pub(crate) done: bool,
    pub(crate) limit: usize,
    pub(crate) overflowed: bool,
}

/// A callback the browser calls without arguments.
type Listener = Closure<dyn FnMut()>;

struct Socket {
    ws: WebSocket,
    _open: Closure<dyn FnMut()>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

/// The driver's state.
pub(crate) struct Inner {
    pub(crate) session: Session,
    url: String,
    token_in: TokenIn,
    pub(crate) get_token: Option<Function>,
    fetching_token: bool,
    socket: Option<Socket>,
    generation: u32,
    timer: Option<(i32, Instant)>,
    timer_cb: Option<Closure<dyn FnMut()>>,
    network: Option<(Listener, Listener)>,
    pub(crate) waiting: VecMap<OpId, Waiter>,
    pub(crate) rooms: VecMap<String, Room>,
    pub(crate) handlers: VecMap<String, Vec<Function>>,
    pub(crate) connect_waiters: Vec<(Function, Function)>,
    pub(crate) welcome: Option<JsValue>,
    /// How the last connection ended: close code and reason.
    pub(crate) last_close: (Option<u16>, String),
    /// Why the driver itself closed the session, if it did.
    close_reason: Option<String>,
    calls: VecDeque<(Function, JsValue)>,
}

/// The driver, shared by the `Switchboard` object, its subscriptions and
/// the browser's callbacks (which hold it weakly).
pub(crate) struct Shared {
    pub(crate) inner: RefCell<Inner>,
    flushing: Cell<bool>,
}

pub(crate) type Handle = Rc<Shared>;

impl Inner {
    pub(crate) fn new(session: Session, url: String, token_in: TokenIn) -> Inner {
        Inner {
            session,
            url,
            token_in,
            get_token: None,
            fetching_token: false,
            socket: None,
            generation: 0,
            timer: None,
            timer_cb: None,
            network: None,
            waiting: VecMap::new(),
            rooms: VecMap::new(),
            handlers: VecMap::new(),
            connect_waiters: Vec::new(),
            welcome: None,
            last_close: (None, String::new()),
            close_reason: None,
            calls: VecDeque::new(),
        }
    }

    /// Queues `f(arg)` for after the driver is released.
    pub(crate) fn call(&mut self, f: &Function, arg: JsValue) {
        self.calls.push_back((f.clone(), arg));
    }

    /// Queues a call of every `event` handler of the client (`room: None`)
    /// or of a room.
    pub(crate) fn emit(&mut self, room: Option<&str>, event: &str, arg: &JsValue) {
        let list = match room {
            None => self.handlers.get(event),
            Some(r) => self.rooms.get(r).and_then(|r| r.handlers.get(event)),
        };
        let fs: Vec<Function> = list.cloned().unwrap_or_default();
        for f in fs {
            self.call(&f, arg.clone());
        }
    }

    /// Carries out everything the session asks for, until it asks nothing;
    /// then arms the timer.
    fn drain(&mut self, shared: &Handle) {
        loop {
            let codec = self.session.codec();
            match self.session.poll_output() {
                None => break,
                Some(Output::Transmit(bytes)) => {
                    if let Some(s) = &self.socket {
                        // A failed send means the socket is closing: its
                        // `close` event follows and tells the session.
                        let _ = match (codec, core::str::from_utf8(bytes)) {
                            (Codec::Json, Ok(text)) => s.ws.send_with_str(text),
                            _ => s.ws.send_with_u8_array(bytes),
                        };
                    }
                }
                Some(Output::Connect) => self.open(shared),
                Some(Output::Close) => self.drop_socket(),
                Some(Output::Event(e)) => self.event(shared, e),
            }
        }
        self.arm(shared);
    }

    fn open(&mut self, shared: &Handle) {
        self.drop_socket();
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let mut url = self.url.clone();
        let token = self.session.token().map(str::to_string);
        match (self.token_in, token) {
            (TokenIn::Query, Some(t)) => {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("token=");
                url.push_str(&String::from(js_sys::encode_uri_component(&t)));
            }
            (TokenIn::Cookie, Some(t)) => {
                let doc = web_sys::window()
                    .and_then(|w| w.document())
                    .and_then(|d| d.dyn_into::<web_sys::HtmlDocument>().ok());
                if let Some(doc) = doc {
                    let mut cookie = String::from("sb_token=");
                    cookie.push_str(&String::from(js_sys::encode_uri_component(&t)));
                    cookie.push_str("; path=/; SameSite=Strict");
                    let _ = doc.set_cookie(&cookie);
                }
            }
            _ => {}
        }
        let ws = match WebSocket::new_with_str(&url, self.session.codec().subprotocol()) {
            Ok(ws) => ws,
            Err(e) => {
                self.last_close = (None, error_text(&e));
                self.session.handle_disconnected(now(), None);
                return;
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let weak = Rc::downgrade(shared);
        let w = weak.clone();
        let open = Closure::<dyn FnMut()>::own_aborting(move || {
            with_current(&w, generation, |i| i.session.handle_connected(now()));
        });
        let w = weak.clone();
        let message = Closure::<dyn FnMut(MessageEvent)>::own_aborting(move |ev: MessageEvent| {
            let data = ev.data();
            with_current(&w, generation, |i| {
                if let Some(text) = data.as_string() {
                    i.session.handle_frame(now(), text.as_bytes());
                } else if data.is_instance_of::<js_sys::ArrayBuffer>() {
                    let bytes = Uint8Array::new(&data).to_vec();
                    i.session.handle_frame(now(), &bytes);
                }
            });
        });
        let w = weak;
        let close = Closure::<dyn FnMut(CloseEvent)>::own_aborting(move |ev: CloseEvent| {
            with_current(&w, generation, |i| {
                // 1005 and 1006 are what the browser reports when no close
                // frame came: the network was lost.
                let code = Some(ev.code()).filter(|c| !matches!(c, 1005 | 1006));
                i.last_close = (code, ev.reason());
                if let Some(s) = i.socket.take() {
                    detach(&s.ws);
                }
                i.session.handle_disconnected(now(), code);
            });
        });
        ws.set_onopen(Some(open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(close.as_ref().unchecked_ref()));
        self.socket = Some(Socket {
            ws,
            _open: open,
            _message: message,
            _close: close,
        });
    }

    fn drop_socket(&mut self) {
        if let Some(s) = self.socket.take() {
            detach(&s.ws);
            let _ = s.ws.close_with_code(1000);
        }
    }

    /// One `setTimeout` at the session's next deadline.
    fn arm(&mut self, shared: &Handle) {
        let want = self.session.poll_timeout();
        if self.timer.map(|(_, at)| at) == want {
            return;
        }
        let Some(window) = web_sys::window() else {
            return;
        };
        if let Some((handle, _)) = self.timer.take() {
            window.clear_timeout_with_handle(handle);
        }
        let Some(at) = want else { return };
        if self.timer_cb.is_none() {
            let weak = Rc::downgrade(shared);
            self.timer_cb = Some(Closure::<dyn FnMut()>::own_aborting(move || {
                if let Some(shared) = weak.upgrade() {
                    run(&shared, |i| {
                        i.timer = None;
                        i.session.handle_timeout(now());
                    });
                }
            }));
        }
        let Some(cb) = &self.timer_cb else { return };
        let ms = at.saturating_since(now()).as_millis().saturating_add(1);
        let ms = i32::try_from(ms).unwrap_or(i32::MAX);
        if let Ok(handle) = window
            .set_timeout_with_callback_and_timeout_and_arguments_0(cb.as_ref().unchecked_ref(), ms)
        {
            self.timer = Some((handle, at));
        }
    }

    /// Listens to `online`/`offline` on `window`, when there is one.
    pub(crate) fn watch_network(&mut self, shared: &Handle) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let make = |online: bool| {
            let weak = Rc::downgrade(shared);
            Closure::<dyn FnMut()>::own_aborting(move || {
                if let Some(shared) = weak.upgrade() {
                    run(&shared, |i| i.session.handle_network(now(), online));
                }
            })
        };
        let (on, off) = (make(true), make(false));
        let _ = window.add_event_listener_with_callback("online", on.as_ref().unchecked_ref());
        let _ = window.add_event_listener_with_callback("offline", off.as_ref().unchecked_ref());
        self.network = Some((on, off));
    }

    fn unwatch_network(&mut self) {
        if let (Some(window), Some((on, off))) = (web_sys::window(), self.network.take()) {
            let _ =
                window.remove_event_listener_with_callback("online", on.as_ref().unchecked_ref());
            let _ =
                window.remove_event_listener_with_callback("offline", off.as_ref().unchecked_ref());
        }
    }

    /// One session event, to its waiter or to the application's handlers.
    fn event(&mut self, shared: &Handle, e: Event) {
        match e {
            Event::State { state, code } => self.state(state, code),
            Event::Welcome { client, user, .. } => {
                let w = js_sys::Object::new();
                js::set(&w, "client", &JsValue::from_str(&client));
                js::set(
                    &w,
                    "user",
                    &user.as_deref().map_or(JsValue::NULL, JsValue::from_str),
                );
                let w: JsValue = w.into();
                for (resolve, _) in core::mem::take(&mut self.connect_waiters) {
                    self.call(&resolve, w.clone());
                }
                self.welcome = Some(w);
            }
            Event::User { user } => {
                // The anonymous `welcome` now has its user.
                if let Some(w) = &self.welcome {
                    js::set(
                        w.unchecked_ref(),
                        "user",
                        &user.as_deref().map_or(JsValue::NULL, JsValue::from_str),
                    );
                }
            }
            Event::Message(m) => self.deliver(&m.room, js::message(&m)),
            Event::Resubscribed { room, recovered } => {
                self.emit(Some(&room), "recovered", &JsValue::from_bool(recovered));
            }
            Event::Join { room, member } => self.emit(Some(&room), "join", &js::member(&member)),
            Event::Leave { room, member } => self.emit(Some(&room), "leave", &js::member(&member)),
            Event::Reply { op, result } => self.reply(op, result),
            Event::TokenNeeded => self.token_needed(shared),
            Event::Error { code, reason, .. } => {
                let e = js::error("server", Some(code), &reason);
                self.emit(None, "error", &e);
            }
        }
    }

    fn state(&mut self, state: State, code: Option<u16>) {
        let name = match state {
            State::Idle => return,
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Disconnected => "disconnected",
            State::Closed => "closed",
        };
        let obj = js_sys::Object::new();
        js::set(&obj, "state", &JsValue::from_str(name));
        let (code, reason) = match state {
            State::Disconnected | State::Closed => {
                let reason = match &self.close_reason {
                    Some(r) => r.clone(),
                    None => self.last_close.1.clone(),
                };
                (code.map_or(JsValue::NULL, JsValue::from), reason)
            }
            _ => (JsValue::NULL, String::new()),
        };
        js::set(&obj, "code", &code);
        js::set(&obj, "reason", &JsValue::from_str(&reason));
        if state == State::Closed {
            self.drop_socket();
            self.unwatch_network();
            if let Some((handle, _)) = self.timer.take()
                && let Some(w) = web_sys::window()
            {
                w.clear_timeout_with_handle(handle);
            }
            let err = js::error("closed", self.last_close.0, &reason);
            for (_, reject) in core::mem::take(&mut self.connect_waiters) {
                self.call(&reject, err.clone());
            }
            let rooms: Vec<String> = self.rooms.keys();
            for room in rooms {
                self.end_room(&room, &err);
            }
        }
        self.emit(None, "state", &obj.into());
    }

    /// A message of `room`: to its handlers and iterators.
    fn deliver(&mut self, room: &str, msg: JsValue) {
        self.emit(Some(room), "message", &msg);
        let iters = match self.rooms.get(room) {
            Some(r) => r.iterators.clone(),
            None => return,
        };
        for it in iters {
            let mut it = it.borrow_mut();
            if it.done {
                continue;
            }
            if let Some((resolve, _)) = it.next.take() {
                self.call(&resolve, js::step(&msg, false));
            } else if it.buf.len() >= it.limit {
                it.overflowed = true;
                it.done = true;
                it.buf.clear();
            } else {
                it.buf.push_back(msg.clone());
            }
        }
    }

    /// Ends the iterators of `room` and fails its `ready` waiters.
    pub(crate) fn end_room(&mut self, room: &str, err: &JsValue) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let waiters = core::mem::take(&mut r.ready_waiters);
        if r.ready.is_none() {
            r.ready = Some(Err(err.clone()));
        }
        let iters = core::mem::take(&mut r.iterators);
        for (_, reject) in waiters {
            self.call(&reject, err.clone());
        }
        for it in iters {
            let mut it = it.borrow_mut();
            it.done = true;
            if let Some((resolve, _)) = it.next.take() {
                self.call(&resolve, js::step(&JsValue::UNDEFINED, true));
            }
        }
    }

    fn reply(&mut self, op: OpId, result: Result<Reply, RequestError>) {
        let Some(waiter) = self.waiting.remove(&op) else {
            return;
        };
        match waiter {
            Waiter::Subscribe(room) => self.subscribed(&room, result),
            Waiter::Promise {
                resolve,
                reject,
                kind,
            } => {
                let value = match (kind, result) {
                    (_, Err(e)) => {
                        let err = js::request_error(e, &self.last_close);
                        return self.call(&reject, err);
                    }
                    (Want::Offset, Ok(Reply::Ack { offset })) => js::num(offset),
                    (Want::Presence, Ok(Reply::Presence(members))) => members
                        .iter()
                        .map(js::member)
                        .collect::<js_sys::Array>()
                        .into(),
                    (
                        Want::History,
                        Ok(Reply::History {
                            epoch,
                            offset,
                            messages,
                        }),
                    ) => {
                        let obj = js_sys::Object::new();
                        js::set(&obj, "epoch", &JsValue::from_str(&epoch));
                        js::set(&obj, "offset", &js::num(offset));
                        js::set(&obj, "messages", &js::messages(&messages));
                        obj.into()
                    }
                    _ => JsValue::UNDEFINED,
                };
                self.call(&resolve, value);
            }
        }
    }

    /// The reply to a subscription's own `subscribe`: its replay is
    /// delivered as messages, then `ready` resolves.
    fn subscribed(&mut self, room: &str, result: Result<Reply, RequestError>) {
        let outcome = match result {
            Ok(Reply::Subscribed {
                epoch,
                offset,
                recovered,
                messages,
            }) => {
                for m in &messages {
                    self.deliver(room, js::message(m));
                }
                let obj = js_sys::Object::new();
                js::set(&obj, "epoch", &JsValue::from_str(&epoch));
                js::set(&obj, "offset", &js::num(offset));
                js::set(&obj, "recovered", &JsValue::from_bool(recovered));
                Ok(obj.into())
            }
            Ok(_) => Ok(JsValue::UNDEFINED),
            Err(e) => {
                let server = matches!(e, RequestError::Server { .. });
                let err = js::request_error(e, &self.last_close);
                if server {
                    // Refused: the session forgot the room.
                    self.emit(Some(room), "error", &err);
                    self.end_room(room, &err);
                    self.rooms.remove(room);
                    return;
                }
                Err(err)
            }
        };
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.ready = Some(outcome.clone());
        let waiters = core::mem::take(&mut r.ready_waiters);
        for (resolve, reject) in waiters {
            match &outcome {
                Ok(v) => self.call(&resolve, v.clone()),
                Err(e) => self.call(&reject, e.clone()),
            }
        }
    }

    /// The token expires soon, or expired (4004): ask `getToken`.
    fn token_needed(&mut self, shared: &Handle) {
        let waiting = self.session.state() == State::Disconnected;
        let Some(get) = self.get_token.clone() else {
            if waiting {
                self.close_with("the token expired and there is no getToken");
            }
            return;
        };
        if self.fetching_token {
            return;
        }
        self.fetching_token = true;
        let promise = match get.call0(&JsValue::NULL) {
            Ok(v) => Promise::resolve(&v),
            Err(e) => Promise::reject(&e),
        };
        fetch_token(shared, promise, false);
    }

    /// Closes the session for good, with `reason` in the `closed` state.
    pub(crate) fn close_with(&mut self, reason: &str) {
        self.close_reason = Some(reason.to_string());
        self.session.close(now());
    }

    /// A token from `getToken` arrived.
    fn got_token(&mut self, token: Result<String, JsValue>, connect: bool) {
        self.fetching_token = false;
        match token {
            Ok(t) => {
                let exp = switchboard_core::client::token_expiry(&t);
                self.session.set_token(now(), Some(t), exp);
                if connect {
                    self.session.connect(now());
                }
            }
            Err(e) => {
                let mut reason = String::from("getToken failed: ");
                reason.push_str(&error_text(&e));
                let err = js::error("token", None, &reason);
                self.emit(None, "error", &err);
                if connect || self.session.state() == State::Disconnected {
                    self.close_with(&reason);
                }
            }
        }
    }
}

/// Asks for a token and hands it to the session when it comes (then
/// connects, with `connect`).
pub(crate) fn fetch_token(shared: &Handle, promise: Promise, connect: bool) {
    let weak = Rc::downgrade(shared);
    let w = weak.clone();
    let ok = Closure::<dyn FnMut(JsValue)>::once_aborting(move |v: JsValue| {
        if let Some(s) = w.upgrade() {
            let token = v
                .as_string()
                .ok_or_else(|| JsValue::from_str("getToken must return a string"));
            run(&s, |i| i.got_token(token, connect));
        }
    });
    let fail = Closure::<dyn FnMut(JsValue)>::once_aborting(move |e: JsValue| {
        if let Some(s) = weak.upgrade() {
            run(&s, |i| i.got_token(Err(e), connect));
        }
    });
    let _ = promise.then2(&ok, &fail);
    // The promise holds the functions now; their Rust side is freed when
    // they are collected.
    let _ = (ok.into_js_value(), fail.into_js_value());
}

fn detach(ws: &WebSocket) {
    ws.set_onopen(None);
    ws.set_onmessage(None);
    ws.set_onclose(None);
}

/// The text of a thrown value: an `Error`'s message, or a string.
pub(crate) fn error_text(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    js::string(e, "message").unwrap_or_else(|| String::from("error"))
}

/// A new driver.
pub(crate) fn new_handle(inner: Inner) -> Handle {
    Rc::new(Shared {
        inner: RefCell::new(inner),
        flushing: Cell::new(false),
    })
}

/// Runs `f` on the driver, drains the session, then calls the queued
/// callbacks.
pub(crate) fn run<R>(shared: &Handle, f: impl FnOnce(&mut Inner) -> R) -> R {
    let r = {
        let mut inner = shared.inner.borrow_mut();
        let r = f(&mut inner);
        inner.drain(shared);
        r
    };
    flush(shared);
    r
}

/// Runs `f` if the socket of `generation` is still the current one.
fn with_current(weak: &Weak<Shared>, generation: u32, f: impl FnOnce(&mut Inner)) {
    let Some(shared) = weak.upgrade() else { return };
    run(&shared, |i| {
        if i.generation == generation && i.socket.is_some() {
            f(i);
        }
    });
}

/// Calls the queued callbacks in order (a callback that calls into the
/// client queues more, called by this same loop). An exception thrown by
/// one is reported as an unhandled rejection, and the others still run.
fn flush(shared: &Handle) {
    if shared.flushing.replace(true) {
        return;
    }
    loop {
        let next = shared.inner.borrow_mut().calls.pop_front();
        let Some((f, arg)) = next else { break };
        if let Err(e) = f.call1(&JsValue::NULL, &arg) {
            let _ = Promise::reject(&e);
        }
    }
    shared.flushing.set(false);
}
