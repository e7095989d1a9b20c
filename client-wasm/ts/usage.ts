// A usage of the package's API, type-checked with `tsc --noEmit` by
// tests/tests/wasm_package.rs (the `@ts-expect-error` lines must be errors:
// the definitions are precise, not `any`).
import init, {
  Switchboard,
  type HistoryPage,
  type Member,
  type Message,
  type StateChange,
  type SwitchboardError,
  type Welcome,
} from "../../server/assets/switchboard-wasm/switchboard.js";

export async function chat(): Promise<void> {
  await init();
  const sb = new Switchboard("ws://127.0.0.1:8080/ws", {
    getToken: async () => "a.jwt.token",
    tokenIn: "query",
    protocol: "postcard",
    minReconnectDelay: 250,
    maxReconnectDelay: 30_000,
    offlineQueue: 100,
  });
  sb.on("state", (s: StateChange) => {
    const code: number | null = s.code;
    console.log(s.state, code, s.reason);
  });
  sb.on("error", (e: SwitchboardError) => console.log(e.kind, e.code));
  const welcome: Welcome = await sb.connect();
  console.log(welcome.client, welcome.user, sb.state, sb.queued);

  const sub = sb.subscribe("chat:lobby", { presence: true });
  sub
    .on("message", (m: Message) => console.log(m.room, m.epoch, m.offset, m.from?.user, m.data))
    .on("join", (m: Member) => console.log("join", m.client, m.info))
    .on("leave", (m: Member) => console.log("leave", m.user))
    .on("recovered", (ok: boolean) => console.log(ok ? "recovered" : "refetch"))
    .on("error", (e: SwitchboardError) => console.log(e.code));
  const ready = await sub.ready();
  console.log(ready.epoch, ready.offset, ready.recovered);

  const offset: number = await sub.publish({ text: "hello" });
  try {
    await sub.publish(new Uint8Array([1, 2, 3]));
  } catch (e) {
    const err = e as SwitchboardError;
    console.log(err.code, err.kind, err.reason, offset);
  }
  const members: Member[] = await sub.presence();
  const page: HistoryPage = await sub.history({ since: 10, limit: 50 });
  console.log(members.length, page.messages.map((m) => m.offset));

  for await (const m of sub) {
    console.log(m.offset);
    break;
  }
  await sub.unsubscribe();
  sb.close();

  // @ts-expect-error: not an option value
  new Switchboard("ws://x/ws", { protocol: "xml" });
  // @ts-expect-error: offsets are numbers
  const wrong: string = await sub.publish(1);
  // @ts-expect-error: a message handler gets a Message
  sub.on("message", (m: Member) => console.log(m, wrong));
  // @ts-expect-error: no such state
  const bad: StateChange = { state: "open", code: null, reason: "" };
  console.log(bad);
}
