/* tslint:disable */
/* eslint-disable */

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



/**
 * The async iterator of [`Subscription::messages`].
 */
export class MessageIterator {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * The next message (`{value, done}`).
     */
    next(): Promise<IteratorResult<Message>>;
    /**
     * Ends the iterator (`break` in `for await`).
     */
    return(): Promise<IteratorResult<Message>>;
}

/**
 * A subscription to one room (the JavaScript `Subscription` class); also
 * an async iterator of its messages (`for await (const m of sub)`).
 */
export class Subscription {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * A page of the room's history.
     */
    history(options?: HistoryOptions): Promise<HistoryPage>;
    /**
     * An async iterator of the room's messages from now on, keeping at most
     * `buffer` (default 1000) unread: past that it throws (kind
     * "overflow") rather than grow. `sub[Symbol.asyncIterator]()` is
     * `sub.messages()`.
     */
    messages(buffer?: number | null): MessageIterator;
    /**
     * Removes `handler` from `event`.
     */
    off(event: string, handler: Function): void;
    /**
     * The room's members.
     */
    presence(): Promise<Member[]>;
    /**
     * Publishes `data` to the room; resolves with its offset when acked,
     * rejects with a `SwitchboardError` (`code` the protocol code). While
     * disconnected it waits in the offline queue and is re-sent with its
     * idempotency key after the reconnect.
     */
    publish(data: any): Promise<number>;
    /**
     * Resolves once subscribed (the first time), with the room's epoch and
     * latest offset; rejects if the hub refused.
     */
    ready(): Promise<Subscribed>;
    /**
     * Unsubscribes: no more events; the iterators end.
     */
    unsubscribe(): Promise<void>;
    /**
     * The room.
     */
    readonly room: string;
}

/**
 * A Switchboard client (the JavaScript `Switchboard` class).
 */
export class Switchboard {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Closes the client for good (state `"closed"`).
     */
    close(): void;
    /**
     * Connects (and keeps reconnecting, unless `reconnect: false`);
     * resolves with the first `welcome`, rejects if the client closes
     * before (e.g. 4001 unauthorized).
     */
    connect(): Promise<Welcome>;
    /**
     * A client of the hub at `url` (`ws://host/ws` or `wss://…`); nothing
     * happens until [`Switchboard::connect`].
     */
    constructor(url: string, options?: SwitchboardOptions);
    /**
     * Removes `handler` from `event`.
     */
    off(event: string, handler: Function): void;
    /**
     * Subscribes to `room` (kept across reconnects, recovered from the last
     * message seen, until [`Subscription::unsubscribe`]). Subscribing to a
     * room again returns another handle on the same subscription.
     */
    subscribe(room: string, options?: SubscribeOptions): Subscription;
    /**
     * Publishes waiting for a connection.
     */
    readonly queued: number;
    /**
     * The connection state: `"idle"`, `"connecting"`, `"connected"`,
     * `"disconnected"` or `"closed"`.
     */
    readonly state: string;
    /**
     * The `welcome` of the current (or last) connection: its client id
     * (new on every connection) and user; `null` before the first.
     */
    readonly welcome: Welcome | null;
}

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_messageiterator_free: (a: number, b: number) => void;
    readonly __wbg_subscription_free: (a: number, b: number) => void;
    readonly __wbg_switchboard_free: (a: number, b: number) => void;
    readonly messageiterator_next: (a: number) => any;
    readonly messageiterator_return: (a: number) => any;
    readonly subscription_history: (a: number, b: any) => any;
    readonly subscription_messages: (a: number, b: number) => number;
    readonly subscription_off: (a: number, b: number, c: number, d: any) => void;
    readonly subscription_on: (a: number, b: number, c: number, d: any) => [number, number, number];
    readonly subscription_presence: (a: number) => any;
    readonly subscription_publish: (a: number, b: any) => [number, number, number];
    readonly subscription_ready: (a: number) => any;
    readonly subscription_room: (a: number) => [number, number];
    readonly subscription_unsubscribe: (a: number) => any;
    readonly switchboard_close: (a: number) => void;
    readonly switchboard_connect: (a: number) => any;
    readonly switchboard_new: (a: number, b: number, c: any) => [number, number, number];
    readonly switchboard_off: (a: number, b: number, c: number, d: any) => void;
    readonly switchboard_on: (a: number, b: number, c: number, d: any) => [number, number, number];
    readonly switchboard_queued: (a: number) => number;
    readonly switchboard_state: (a: number) => [number, number];
    readonly switchboard_subscribe: (a: number, b: number, c: number, d: any) => any;
    readonly switchboard_welcome: (a: number) => any;
    readonly wasm_bindgen_5a50adddc9ad85a5___convert__closures_____invoke___js_sys_1e139b33cb79c116___Function_fn_wasm_bindgen_5a50adddc9ad85a5___JsValue_____wasm_bindgen_5a50adddc9ad85a5___sys__Undefined___js_sys_1e139b33cb79c116___Function_fn_wasm_bindgen_5a50adddc9ad85a5___JsValue_____wasm_bindgen_5a50adddc9ad85a5___sys__Undefined_______true_: (a: number, b: number, c: any, d: any) => void;
    readonly wasm_bindgen_5a50adddc9ad85a5___convert__closures_____invoke___wasm_bindgen_5a50adddc9ad85a5___JsValue______false_: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen_5a50adddc9ad85a5___convert__closures_____invoke___web_sys_75532d2e449bd37a___features__gen_CloseEvent__CloseEvent______false_: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen_5a50adddc9ad85a5___convert__closures_____invoke___web_sys_75532d2e449bd37a___features__gen_CloseEvent__CloseEvent______false__23: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen_5a50adddc9ad85a5___convert__closures_____invoke_______false_: (a: number, b: number) => void;
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __wbindgen_destroy_closure: (a: number, b: number) => void;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
