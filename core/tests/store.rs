//! The store contract (DESIGN.md "The store contract"), tested with a fake
//! store that answers when the test says so: late, out of order between
//! rooms, failing, down and back. Several hubs (nodes) share one fake store;
//! its relay delivers to the nodes that listen to a room (after
//! `RoomOccupied`, until `RoomVacant`), as Redis pub/sub would.

#![cfg(feature = "alloc")]

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::string::{String, ToString};
use std::vec::Vec;

use proptest::prelude::*;
use support::*;
use switchboard_core::hub::{Hub, OpId, PublishError, Relay, StoreResult, StoredMessage};
use switchboard_core::protocol::{ClientFrame, Codec, Member, Recover, Sender, ServerFrame, Text};
use switchboard_core::{Config, ConnId, NamespaceConfig};

type From = Option<(String, Option<String>)>;

#[derive(Debug, Clone)]
struct Msg {
    offset: u64,
    from: From,
    data: Vec<u8>,
}

#[derive(Debug, Default)]
struct StoredRoom {
    epoch: String,
    offset: u64,
    messages: Vec<Msg>,
    keys: BTreeMap<String, u64>,
}

/// An answer, owned (the test decides when to hand it to the hub).
#[derive(Debug, Clone)]
enum Answer {
    Appended {
        epoch: String,
        offset: u64,
        duplicate: bool,
    },
    Read {
        epoch: String,
        offset: u64,
        messages: Vec<Msg>,
    },
    Members(Vec<(String, Option<String>)>),
    Failed,
    Unavailable,
}

/// Something the relay carries to a node.
#[derive(Debug, Clone)]
enum Relayed {
    Message {
        room: String,
        epoch: String,
        msg: Msg,
    },
    Member {
        join: bool,
        room: String,
        client: String,
        user: Option<String>,
    },
}

impl Relayed {
    fn room(&self) -> &str {
        match self {
            Relayed::Message { room, .. } | Relayed::Member { room, .. } => room,
        }
    }
}

/// The fake shared store.
#[derive(Debug, Default)]
struct FakeStore {
    rooms: BTreeMap<String, StoredRoom>,
    members: BTreeMap<String, Vec<(String, Option<String>)>>,
    epochs: u64,
}

impl FakeStore {
    fn room(&mut self, name: &str) -> &mut StoredRoom {
        let epochs = &mut self.epochs;
        self.rooms.entry(name.to_string()).or_insert_with(|| {
            *epochs += 1;
            StoredRoom {
                epoch: format!("e{epochs}"),
                ..StoredRoom::default()
            }
        })
    }

    /// Runs `op` (as the store would, atomically): its answer and what it relays.
    fn apply(&mut self, op: &Op) -> (Answer, Option<Relayed>) {
        match op {
            Op::Append {
                room,
                from,
                data,
                key,
                history_size,
                ..
            } => {
                let r = self.room(room);
                if let Some(first) = key.as_ref().and_then(|k| r.keys.get(k)) {
                    let answer = Answer::Appended {
                        epoch: r.epoch.clone(),
                        offset: *first,
                        duplicate: true,
                    };
                    return (answer, None);
                }
                r.offset += 1;
                let msg = Msg {
                    offset: r.offset,
                    from: from.clone(),
                    data: data.clone(),
                };
                if *history_size > 0 {
                    r.messages.push(msg.clone());
                    let excess = r.messages.len().saturating_sub(*history_size as usize);
                    r.messages.drain(..excess);
                }
                if let Some(k) = key {
                    r.keys.insert(k.clone(), r.offset);
                }
                let answer = Answer::Appended {
                    epoch: r.epoch.clone(),
                    offset: r.offset,
                    duplicate: false,
                };
                let relayed = Relayed::Message {
                    room: room.clone(),
                    epoch: r.epoch.clone(),
                    msg,
                };
                (answer, Some(relayed))
            }
            Op::Read {
                room, after, limit, ..
            } => {
                let r = self.room(room);
                let messages: Vec<Msg> = match after {
                    Some(a) => r
                        .messages
                        .iter()
                        .filter(|m| m.offset > *a)
                        .take(*limit)
                        .cloned()
                        .collect(),
                    None => {
                        let skip = r.messages.len().saturating_sub(*limit);
                        r.messages[skip..].to_vec()
                    }
                };
                let answer = Answer::Read {
                    epoch: r.epoch.clone(),
                    offset: r.offset,
                    messages,
                };
                (answer, None)
            }
            Op::Presence { room, .. } => (
                Answer::Members(self.members.get(room).cloned().unwrap_or_default()),
                None,
            ),
            Op::Member {
                join,
                room,
                client,
                user,
            } => {
                let list = self.members.entry(room.clone()).or_default();
                list.retain(|(c, _)| c != client);
                if *join {
                    list.push((client.clone(), user.clone()));
                }
                let relayed = Relayed::Member {
                    join: *join,
                    room: room.clone(),
                    client: client.clone(),
                    user: user.clone(),
                };
                (Answer::Failed, Some(relayed))
            }
        }
    }
}

fn sender(from: &From) -> Option<Sender<'_>> {
    from.as_ref().map(|(c, u)| Sender {
        client: Text::Borrowed(c),
        user: u.as_deref().map(Text::Borrowed),
    })
}

/// Hands `answer` for `op` to the node.
fn answer(h: &mut Harness, op: OpId, answer: &Answer) {
    let stored: Vec<StoredMessage<'_>>;
    let members: Vec<Member<'_>>;
    let result = match answer {
        Answer::Appended {
            epoch,
            offset,
            duplicate,
        } => StoreResult::Appended {
            epoch,
            offset: *offset,
            duplicate: *duplicate,
        },
        Answer::Read {
            epoch,
            offset,
            messages,
        } => {
            stored = messages
                .iter()
                .map(|m| StoredMessage {
                    offset: m.offset,
                    from: sender(&m.from),
                    data: &m.data,
                })
                .collect();
            StoreResult::Read {
                epoch,
                offset: *offset,
                messages: &stored,
            }
        }
        Answer::Members(list) => {
            members = list
                .iter()
                .map(|(c, u)| Member {
                    client: Text::Borrowed(c),
                    user: u.as_deref().map(Text::Borrowed),
                    info: None,
                })
                .collect();
            StoreResult::Members(&members)
        }
        Answer::Failed => StoreResult::Failed,
        Answer::Unavailable => StoreResult::Unavailable,
    };
    let now = h.now;
    h.hub.handle_store(now, op, result);
    h.drain();
}

/// Hands a relayed item to the node.
fn relay(h: &mut Harness, item: &Relayed) {
    let now = h.now;
    match item {
        Relayed::Message { room, epoch, msg } => h.hub.handle_relay(
            now,
            Relay::Message {
                room,
                epoch,
                offset: msg.offset,
                from: sender(&msg.from),
                data: &msg.data,
            },
        ),
        Relayed::Member {
            join,
            room,
            client,
            user,
        } => {
            let member = Member {
                client: Text::Borrowed(client),
                user: user.as_deref().map(Text::Borrowed),
                info: None,
            };
            let relay = if *join {
                Relay::Join { room, member }
            } else {
                Relay::Leave { room, member }
            };
            h.hub.handle_relay(now, relay);
        }
    }
    h.drain();
}

fn config() -> Config {
    let mut config = Config {
        rate_limit: 0,
        ..Config::default()
    };
    let chat = NamespaceConfig {
        history_size: 100,
        presence: true,
        ..NamespaceConfig::default()
    };
    config.set_namespace("chat", chat).unwrap();
    config
}

fn node(config: Config, seed: u64) -> Harness {
    let hub = Hub::new(config, TestAuth, seed)
        .unwrap()
        .with_remote_store();
    Harness::with_hub(hub)
}

/// Nodes sharing one fake store, with the operations they issued and the
/// relay's queue per node.
struct Cluster {
    nodes: Vec<Harness>,
    store: FakeStore,
    /// Operations not yet run: (node, op).
    pending: Vec<(usize, Op)>,
    /// Run by the store, answer not yet delivered: (node, op, answer).
    answers: Vec<(usize, OpId, Answer)>,
    relay: Vec<VecDeque<Relayed>>,
}

impl Cluster {
    fn new(n: usize, config: Config) -> Self {
        Cluster {
            nodes: (0..n)
                .map(|i| node(config.clone(), 0x5eed + i as u64))
                .collect(),
            store: FakeStore::default(),
            pending: Vec::new(),
            answers: Vec::new(),
            relay: (0..n).map(|_| VecDeque::new()).collect(),
        }
    }

    /// Moves what the nodes emitted into `pending` (member ops run at once).
    fn collect(&mut self) {
        for i in 0..self.nodes.len() {
            for op in std::mem::take(&mut self.nodes[i].ops) {
                if op.id().is_none() {
                    let (_, relayed) = self.store.apply(&op);
                    self.fan(relayed, Some(i));
                } else {
                    self.pending.push((i, op));
                }
            }
        }
    }

    fn listening(&self, node: usize, room: &str) -> bool {
        let h = &self.nodes[node];
        let occupied = h.occupied.iter().filter(|r| *r == room).count();
        let vacant = h.vacant.iter().filter(|r| *r == room).count();
        occupied > vacant
    }

    fn fan(&mut self, relayed: Option<Relayed>, except: Option<usize>) {
        let Some(item) = relayed else { return };
        for n in 0..self.nodes.len() {
            let member = matches!(item, Relayed::Member { .. });
            if member && Some(n) == except {
                continue;
            }
            if self.listening(n, item.room()) {
                self.relay[n].push_back(item.clone());
            }
        }
    }

    /// The store runs pending operation `i` (answer kept for later).
    fn run(&mut self, i: usize) {
        let (n, op) = self.pending.remove(i);
        let (answer, relayed) = self.store.apply(&op);
        self.fan(relayed, None);
        self.answers.push((n, op.id().unwrap(), answer));
    }

    /// Delivers answer `i` to its node.
    fn answer(&mut self, i: usize) {
        let (n, op, a) = self.answers.remove(i);
        answer(&mut self.nodes[n], op, &a);
        self.collect();
    }

    /// Delivers the next relayed item to node `n`.
    fn relay_next(&mut self, n: usize) -> bool {
        let Some(item) = self.relay[n].pop_front() else {
            return false;
        };
        relay(&mut self.nodes[n], &item);
        self.collect();
        true
    }

    /// Runs and answers everything, then empties the relay queues.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.collect();
            if !self.pending.is_empty() {
                self.run(0);
            } else if !self.answers.is_empty() {
                self.answer(0);
            } else if let Some(n) = (0..self.nodes.len()).find(|n| !self.relay[*n].is_empty()) {
                self.relay_next(n);
            } else {
                return;
            }
        }
        panic!("the cluster does not settle");
    }

    fn send(&mut self, n: usize, c: ConnId, frame: &ClientFrame<'_>) {
        self.nodes[n].send(c, frame);
        self.collect();
    }
}

/// Offsets of the `message` frames (and messages inside `subscribed`) that
/// `c` received in `room`, in order.
fn offsets_seen(frames: &[ServerFrame<'_>], room: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for f in frames {
        match f {
            ServerFrame::Message(m) if m.room.as_str() == room => out.push(m.offset),
            ServerFrame::Subscribed {
                room: r, messages, ..
            } if r.as_str() == room => out.extend(messages.iter().map(|m| m.offset)),
            _ => {}
        }
    }
    out
}

fn subscribe_recover<'a>(room: &'a str, id: u64, epoch: &'a str, offset: u64) -> ClientFrame<'a> {
    ClientFrame::Subscribe {
        room: room.into(),
        id: Some(id),
        recover: Some(Recover {
            epoch: epoch.into(),
            offset,
        }),
        presence: None,
    }
}

#[test]
fn ack_only_after_the_store_confirmed() {
    let mut cl = Cluster::new(1, config());
    let (c, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    cl.send(0, c, &subscribe("chat:a", 1));
    assert!(
        cl.nodes[0].take(c).is_empty(),
        "subscribed waits for the store"
    );
    assert!(matches!(&cl.pending[..], [(0, Op::Read { .. })]));
    cl.settle();
    let frames = cl.nodes[0].take(c);
    assert!(matches!(
        &frames.frames()[..],
        [ServerFrame::Subscribed {
            offset: 0,
            recovered: false,
            ..
        }]
    ));

    cl.send(0, c, &publish("chat:a", b"1", Some(7)));
    assert!(
        cl.nodes[0].take(c).is_empty(),
        "no ack before the store answers"
    );
    cl.run(0);
    assert!(
        cl.nodes[0].take(c).is_empty(),
        "stored, but not answered yet"
    );
    cl.answer(0);
    let rx = cl.nodes[0].take(c);
    assert!(
        matches!(
            &rx.frames()[..],
            [ServerFrame::Ack {
                id: 7,
                offset: 1,
                ..
            }]
        ),
        "{:?}",
        rx.frames()
    );
    // The message itself comes from the relay, once.
    assert!(cl.relay_next(0));
    let rx = cl.nodes[0].take(c);
    assert_eq!(offsets_seen(&rx.frames(), "chat:a"), [1]);
    assert_eq!(cl.nodes[0].hub.stats().published, 1);
    assert_eq!(cl.nodes[0].hub.stats().store_inflight, 0);
}

#[test]
fn a_failed_or_unavailable_store_answers_4013_and_delivers_nothing() {
    let mut cl = Cluster::new(1, config());
    let (c, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    cl.send(0, c, &subscribe("chat:a", 1));
    cl.settle();
    cl.nodes[0].take(c);
    for (id, failure) in [(2, Answer::Failed), (3, Answer::Unavailable)] {
        cl.send(0, c, &publish("chat:a", b"1", Some(id)));
        let (n, op) = cl.pending.remove(0);
        answer(&mut cl.nodes[n], op.id().unwrap(), &failure);
        let rx = cl.nodes[0].take(c);
        assert_error(&rx.frames()[0], Some(id), 4013);
        assert_eq!(rx.frames().len(), 1);
    }
    assert!(cl.relay[0].is_empty());
    assert_eq!(cl.nodes[0].hub.stats().published, 0);

    // A server-side publish gets the same answer.
    let h = &mut cl.nodes[0];
    let now = h.now;
    let op = h.hub.publish_request(now, "chat:a", b"2", None).unwrap();
    h.drain();
    let Some(Op::Append { op: issued, .. }) = h.ops.pop() else {
        panic!("an append")
    };
    assert_eq!(issued, op);
    answer(h, op, &Answer::Unavailable);
    assert_eq!(h.published, [(op, Err(PublishError::Unavailable))]);
}

#[test]
fn a_store_that_is_down_refuses_at_once_and_is_caught_up_with_when_back() {
    let mut cl = Cluster::new(2, config());
    let (a, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    let (b, _) = cl.nodes[1].connect(Codec::Json, "user:bob");
    cl.send(0, a, &subscribe("chat:a", 1));
    cl.send(1, b, &subscribe("chat:a", 1));
    cl.settle();
    cl.nodes[0].take(a);
    cl.nodes[1].take(b);

    let now = cl.nodes[0].now;
    cl.nodes[0].hub.handle_relay(now, Relay::StoreDown);
    assert!(!cl.nodes[0].hub.stats().store_up);
    cl.send(0, a, &publish("chat:a", b"1", Some(2)));
    cl.send(0, a, &subscribe("chat:b", 3));
    assert!(
        cl.pending.is_empty(),
        "nothing reaches a store that is down"
    );
    let rx = cl.nodes[0].take(a);
    assert_error(&rx.frames()[0], Some(2), 4013);
    assert_error(&rx.frames()[1], Some(3), 4013);

    // Node 1 still reaches the store; node 0 misses the relay meanwhile.
    cl.send(1, b, &publish("chat:a", b"2", Some(4)));
    cl.send(1, b, &publish("chat:a", b"3", Some(5)));
    cl.run(0);
    cl.run(0);
    cl.relay[0].clear();
    cl.settle();
    assert!(cl.nodes[0].take(a).is_empty());

    let now = cl.nodes[0].now;
    cl.nodes[0].hub.handle_relay(now, Relay::StoreUp);
    cl.nodes[0].drain();
    cl.collect();
    assert!(
        matches!(&cl.pending[..], [(0, Op::Read { after: Some(0), .. })]),
        "{:?}",
        cl.pending
    );
    cl.settle();
    assert_eq!(
        offsets_seen(&cl.nodes[0].take(a).frames(), "chat:a"),
        [1, 2]
    );
    assert!(cl.nodes[0].hub.stats().store_up);
}

#[test]
fn each_message_is_fanned_out_once_per_node_in_offset_order() {
    let mut cl = Cluster::new(2, config());
    let (a, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    let (b, _) = cl.nodes[1].connect(Codec::Postcard, "user:bob");
    let (a2, _) = cl.nodes[0].connect(Codec::Postcard, "user:carol");
    for (n, c) in [(0, a), (1, b), (0, a2)] {
        cl.send(n, c, &subscribe("chat:a", 1));
    }
    cl.settle();
    for (n, c) in [(0, a), (1, b), (0, a2)] {
        cl.nodes[n].take(c);
    }
    // Twelve publishes from both nodes, all stored before any relay arrives.
    for i in 0..12u64 {
        let (n, c) = if i % 2 == 0 { (0, a) } else { (1, b) };
        cl.send(n, c, &publish("chat:a", b"{}", None));
        cl.run(0);
    }
    // Node 0's relay arrives shuffled, with a duplicate, and loses offset 5
    // (pub/sub is at most once): the store fills the gap. Node 1's is in order.
    let mut items: Vec<Relayed> = cl.relay[0].drain(..).collect();
    items.reverse();
    let dup = items[3].clone();
    items.insert(0, dup);
    items.retain(|i| !matches!(i, Relayed::Message { msg, .. } if msg.offset == 5));
    for item in &items {
        relay(&mut cl.nodes[0], item);
        cl.collect();
    }
    cl.settle();
    let want: Vec<u64> = (1..=12).collect();
    for (n, c) in [(0, a), (1, b), (0, a2)] {
        assert_eq!(offsets_seen(&cl.nodes[n].take(c).frames(), "chat:a"), want);
    }
    assert!(cl.nodes[0].hub.stats().relay_gaps_filled >= 1);
    assert_eq!(cl.nodes[1].hub.stats().relay_gaps_filled, 0);
}

#[test]
fn a_gap_the_store_cannot_fill_is_skipped_and_counted() {
    let mut cl = Cluster::new(1, config());
    let (a, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    cl.send(0, a, &subscribe("chat:a", 1));
    cl.settle();
    cl.nodes[0].take(a);
    let epoch = cl.store.room("chat:a").epoch.clone();
    let msg = |offset| Relayed::Message {
        room: "chat:a".into(),
        epoch: epoch.clone(),
        msg: Msg {
            offset,
            from: None,
            data: b"1".to_vec(),
        },
    };
    relay(&mut cl.nodes[0], &msg(1));
    relay(&mut cl.nodes[0], &msg(5));
    cl.collect();
    let (n, op) = cl.pending.remove(0);
    assert!(matches!(op, Op::Read { after: Some(1), .. }));
    let nothing = Answer::Read {
        epoch: epoch.clone(),
        offset: 5,
        messages: Vec::new(),
    };
    answer(&mut cl.nodes[n], op.id().unwrap(), &nothing);
    assert_eq!(
        offsets_seen(&cl.nodes[0].take(a).frames(), "chat:a"),
        [1, 5]
    );
    assert_eq!(cl.nodes[0].hub.stats().relay_gaps_lost, 1);
}

#[test]
fn a_new_epoch_on_the_relay_starts_the_room_over() {
    let mut cl = Cluster::new(1, config());
    let (a, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    cl.send(0, a, &subscribe("chat:a", 1));
    cl.settle();
    cl.send(0, a, &publish("chat:a", b"1", None));
    cl.settle();
    cl.nodes[0].take(a);
    // The store lost the room (a wiped Redis): a new epoch from offset 1.
    cl.store.rooms.clear();
    cl.send(0, a, &publish("chat:a", b"2", None));
    cl.settle();
    let rx = cl.nodes[0].take(a);
    let frames = rx.frames();
    let [ServerFrame::Message(m)] = &frames[..] else {
        panic!("{frames:?}")
    };
    assert_eq!((m.epoch.as_str(), m.offset), ("e2", 1));
}

#[test]
fn idempotent_republish_through_the_store() {
    let mut cl = Cluster::new(1, config());
    let (a, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    cl.send(0, a, &subscribe("chat:a", 1));
    cl.settle();
    cl.nodes[0].take(a);
    cl.send(0, a, &publish_keyed("chat:a", b"1", Some(2), "k-1"));
    cl.settle();
    cl.send(0, a, &publish_keyed("chat:a", b"1", Some(3), "k-1"));
    let Some((_, Op::Append { key, .. })) = cl.pending.first() else {
        panic!("the key goes to the store")
    };
    assert_eq!(key.as_deref(), Some("k-1"));
    cl.settle();
    let frames = cl.nodes[0].take(a);
    let acks: Vec<u64> = frames
        .frames()
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Ack { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect();
    assert_eq!(acks, [1, 1]);
    assert_eq!(offsets_seen(&frames.frames(), "chat:a"), [1]);
    assert_eq!(cl.nodes[0].hub.stats().published, 1);
    // A bad key never reaches the store.
    cl.send(0, a, &publish_keyed("chat:a", b"1", Some(4), "no spaces"));
    assert!(cl.pending.is_empty());
    assert_error(&cl.nodes[0].take(a).frames()[0], Some(4), 4000);
}

#[test]
fn operations_in_flight_are_bounded_per_connection_and_in_total() {
    let config = Config {
        max_inflight: 2,
        max_inflight_total: 3,
        ..config()
    };
    let mut cl = Cluster::new(1, config);
    let (a, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    let (b, _) = cl.nodes[0].connect(Codec::Json, "user:bob");
    for id in 1..=3 {
        cl.send(0, a, &publish("chat:a", b"1", Some(id)));
    }
    let rx = cl.nodes[0].take(a);
    assert_eq!(rx.frames().len(), 1);
    assert_error(&rx.frames()[0], Some(3), 4006);
    cl.send(
        0,
        b,
        &ClientFrame::History {
            room: "chat:a".into(),
            id: Some(4),
            since: None,
            limit: None,
        },
    );
    cl.send(0, b, &publish("chat:a", b"1", Some(5)));
    let rx = cl.nodes[0].take(b);
    assert_error(&rx.frames()[0], Some(5), 4006);
    assert_eq!(cl.nodes[0].hub.stats().store_inflight, 3);
    // Answers free the slots; the others carried on.
    cl.settle();
    assert_eq!(cl.nodes[0].hub.stats().store_inflight, 0);
    cl.send(0, a, &publish("chat:a", b"1", Some(6)));
    cl.settle();
    let acks = cl.nodes[0].take(a);
    let ids: Vec<u64> = acks
        .frames()
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Ack { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [1, 2, 6]);
}

#[test]
fn a_connection_that_closes_with_operations_in_flight_leaks_nothing() {
    let mut cl = Cluster::new(1, config());
    let (a, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    cl.send(0, a, &publish("chat:a", b"1", Some(1)));
    cl.send(0, a, &subscribe("chat:b", 2));
    cl.send(
        0,
        a,
        &ClientFrame::Presence {
            room: "chat:a".into(),
            id: Some(3),
        },
    );
    assert_eq!(cl.nodes[0].hub.stats().store_inflight, 3);
    assert_eq!(cl.nodes[0].hub.stats().rooms, 1, "the pending subscription");
    cl.nodes[0].close(a);
    assert_eq!(cl.nodes[0].hub.stats().rooms, 0);
    // The harness fails on any output to a closed connection.
    cl.settle();
    let stats = cl.nodes[0].hub.stats();
    assert_eq!(
        (stats.store_inflight, stats.rooms, stats.connections),
        (0, 0, 0)
    );
    cl.nodes[0].hub.check_invariants().unwrap();
}

#[test]
fn an_operation_the_store_never_answers_fails_after_twice_the_timeout() {
    let mut cl = Cluster::new(1, config());
    let (a, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    cl.send(0, a, &publish("chat:a", b"1", Some(1)));
    let timeout = cl.nodes[0].hub.config().store_timeout;
    cl.nodes[0].advance(timeout);
    assert!(cl.nodes[0].take(a).is_empty());
    cl.nodes[0].advance(timeout);
    assert_error(&cl.nodes[0].take(a).frames()[0], Some(1), 4013);
    assert_eq!(cl.nodes[0].hub.stats().store_inflight, 0);
    // A late answer is ignored: no ack after the 4013.
    cl.settle();
    assert!(cl.nodes[0].take(a).is_empty());
}

#[test]
fn presence_goes_through_the_store_and_crosses_nodes() {
    let mut cl = Cluster::new(2, config());
    let (a, a_id) = cl.nodes[0].connect(Codec::Json, "user:alice");
    let (b, b_id) = cl.nodes[1].connect(Codec::Json, "user:bob");
    cl.send(0, a, &subscribe_watching("chat:a", 1));
    cl.settle();
    let frames = cl.nodes[0].take(a);
    let joins = |frames: &[ServerFrame<'_>]| -> Vec<(bool, String)> {
        frames
            .iter()
            .filter_map(|f| match f {
                ServerFrame::Join { member, .. } => Some((true, member.client.to_string())),
                ServerFrame::Leave { member, .. } => Some((false, member.client.to_string())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        joins(&frames.frames()),
        [(true, a_id.clone())],
        "its own join, once"
    );
    cl.send(1, b, &subscribe_watching("chat:a", 1));
    cl.settle();
    assert_eq!(joins(&cl.nodes[0].take(a).frames()), [(true, b_id.clone())]);
    assert_eq!(joins(&cl.nodes[1].take(b).frames()), [(true, b_id.clone())]);
    cl.send(
        0,
        a,
        &ClientFrame::Presence {
            room: "chat:a".into(),
            id: Some(9),
        },
    );
    cl.settle();
    let rx = cl.nodes[0].take(a);
    let frames = rx.frames();
    let [ServerFrame::Presence { members, .. }] = &frames[..] else {
        panic!("{frames:?}")
    };
    let mut clients: Vec<&str> = members.iter().map(|m| m.client.as_str()).collect();
    clients.sort();
    let mut want = [a_id.as_str(), b_id.as_str()];
    want.sort();
    assert_eq!(clients, want);
    cl.nodes[1].close(b);
    cl.collect();
    cl.settle();
    assert_eq!(joins(&cl.nodes[0].take(a).frames()), [(false, b_id)]);
}

/// After the relay was resubscribed the runtime hands the hub the room's
/// members as the store lists them (`Relay::Members`): watchers get a `join`
/// for each other node's member the hub had not seen and a `leave` for each
/// it knew that is gone; what it knew already is not announced twice, and
/// this node's own members are left to the hub.
#[test]
fn a_members_listing_announces_what_the_relay_missed() {
    let mut cl = Cluster::new(1, config());
    let (a, a_id) = cl.nodes[0].connect(Codec::Json, "user:alice");
    cl.send(0, a, &subscribe_watching("chat:a", 1));
    cl.settle();
    cl.nodes[0].take(a);
    let events = |h: &mut Harness| -> Vec<(bool, String, Option<String>)> {
        h.take(a)
            .frames()
            .iter()
            .filter_map(|f| match f {
                ServerFrame::Join { member, .. } => Some((
                    true,
                    member.client.to_string(),
                    member.user.as_ref().map(|u| u.to_string()),
                )),
                ServerFrame::Leave { member, .. } => Some((
                    false,
                    member.client.to_string(),
                    member.user.as_ref().map(|u| u.to_string()),
                )),
                _ => None,
            })
            .collect()
    };
    let member = |client: &'static str, user: &'static str| Member {
        client: Text::Borrowed(client),
        user: Some(Text::Borrowed(user)),
        info: None,
    };
    let listed = |h: &mut Harness, members: &[Member<'_>], announce: bool| {
        let now = h.now;
        h.hub.handle_relay(
            now,
            Relay::Members {
                room: "chat:a",
                members,
                announce,
            },
        );
        h.drain();
    };
    let own = Member {
        client: Text::Borrowed(&a_id),
        user: Some(Text::Borrowed("alice")),
        info: None,
    };
    let h = &mut cl.nodes[0];
    // The read after the first subscription: known, not announced.
    listed(h, &[member("zz-1", "carol"), own.clone()], false);
    assert_eq!(events(h), []);
    // After a reconnection: zz-2 is new, zz-1 known, alice is this node's.
    listed(
        h,
        &[member("zz-1", "carol"), member("zz-2", "dave"), own.clone()],
        true,
    );
    assert_eq!(events(h), [(true, "zz-2".into(), Some("dave".into()))]);
    // Its relayed join, arriving after the listing: not a second `join`.
    relay(
        h,
        &Relayed::Member {
            join: true,
            room: "chat:a".into(),
            client: "zz-2".into(),
            user: Some("dave".into()),
        },
    );
    assert_eq!(events(h), []);
    // zz-1 is gone: its `leave`, with the member as it was known.
    listed(h, &[member("zz-2", "dave"), own], true);
    assert_eq!(events(h), [(false, "zz-1".into(), Some("carol".into()))]);
    // The store was down and is back (it may have lost its members): the
    // next listing announces every member again.
    let now = h.now;
    h.hub.handle_relay(now, Relay::StoreUp);
    h.drain();
    listed(h, &[member("zz-2", "dave")], true);
    assert_eq!(events(h), [(true, "zz-2".into(), Some("dave".into()))]);
    // A room this node does not hold: nothing.
    let now = h.now;
    h.hub.handle_relay(
        now,
        Relay::Members {
            room: "chat:other",
            members: &[member("zz-3", "erin")],
            announce: true,
        },
    );
    h.drain();
    assert_eq!(events(h), []);
    relay(
        h,
        &Relayed::Member {
            join: false,
            room: "chat:a".into(),
            client: "zz-2".into(),
            user: Some("dave".into()),
        },
    );
    assert_eq!(events(h), [(false, "zz-2".into(), Some("dave".into()))]);
}

#[test]
fn history_comes_from_the_store_and_is_bounded() {
    let config = Config {
        max_frame: 1024,
        max_queue_bytes: 1 << 20,
        max_reply_bytes: 2048,
        ..config()
    };
    let mut cl = Cluster::new(1, config);
    let (a, _) = cl.nodes[0].connect(Codec::Json, "user:alice");
    let big = format!("\"{}\"", "x".repeat(700));
    for _ in 0..10 {
        cl.send(0, a, &publish("chat:a", big.as_bytes(), None));
    }
    cl.settle();
    cl.send(
        0,
        a,
        &ClientFrame::History {
            room: "chat:a".into(),
            id: Some(5),
            since: Some(2),
            limit: Some(50),
        },
    );
    assert!(matches!(
        &cl.pending[..],
        [(
            0,
            Op::Read {
                after: Some(2),
                limit: 50,
                ..
            }
        )]
    ));
    cl.settle();
    let rx = cl.nodes[0].take(a);
    let frames = rx.frames();
    let [
        ServerFrame::History {
            offset: 10,
            messages,
            ..
        },
    ] = &frames[..]
    else {
        panic!("{frames:?}")
    };
    let got: Vec<u64> = messages.iter().map(|m| m.offset).collect();
    assert_eq!(
        got,
        [3, 4],
        "bounded by max_reply_bytes, oldest first after since"
    );
}

#[test]
fn server_publishes_are_answered_at_once_by_the_memory_store() {
    let mut h = Harness::new(config());
    let now = h.now;
    let op = h.hub.publish_request(now, "chat:a", b"1", None).unwrap();
    h.drain();
    let [(got, Ok((epoch, 1)))] = &h.published[..] else {
        panic!("{:?}", h.published)
    };
    assert_eq!(*got, op);
    assert_eq!(epoch.len(), 16);
    assert_eq!(
        h.hub.publish_request(now, "bad room", b"1", None),
        Err(PublishError::BadRoom)
    );
    assert!(h.ops.is_empty(), "the memory store needs no operation");
}

/// One step of the splice schedule.
#[derive(Debug, Clone)]
enum Step {
    /// Another node publishes (stored at once).
    Publish,
    /// Node 0's relay delivers its next item.
    Relay,
    /// The store runs the subscribe's read.
    RunRead,
    /// Node 0 gets the read's answer.
    Answer,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Publish),
        3 => Just(Step::Relay),
        1 => Just(Step::RunRead),
        1 => Just(Step::Answer),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A subscribe with `recover` (or without) whose store read races live
    /// publishes: the client sees every offset after its position exactly
    /// once, in order, whether node 0 already had a live subscriber or not.
    #[test]
    fn the_recovery_splice_has_no_gap_and_no_duplicate(
        before in 0u64..6,
        seen in 0u64..6,
        recover in any::<bool>(),
        other_subscriber in any::<bool>(),
        steps in proptest::collection::vec(step(), 0..40),
    ) {
        let seen = seen.min(before);
        let mut cl = Cluster::new(2, config());
        let (p, _) = cl.nodes[1].connect(Codec::Json, "user:pub");
        for _ in 0..before {
            cl.send(1, p, &publish("chat:a", b"1", None));
        }
        cl.settle();
        if other_subscriber {
            let (o, _) = cl.nodes[0].connect(Codec::Postcard, "user:other");
            cl.send(0, o, &subscribe("chat:a", 1));
            cl.settle();
        }
        let (c, _) = cl.nodes[0].connect(Codec::Json, "user:c");
        let epoch = cl.store.room("chat:a").epoch.clone();
        if recover {
            cl.send(0, c, &subscribe_recover("chat:a", 1, &epoch, seen));
        } else {
            cl.send(0, c, &subscribe("chat:a", 1));
        }
        let read = cl.pending.iter().position(|(n, op)| *n == 0 && matches!(op, Op::Read { .. }));
        prop_assert!(read.is_some());
        let mut ran = false;
        let mut answered = false;
        for s in steps {
            match s {
                Step::Publish => {
                    cl.send(1, p, &publish("chat:a", b"2", None));
                    let i = cl.pending.iter().position(|(n, _)| *n == 1).unwrap();
                    cl.run(i);
                    let i = cl.answers.iter().position(|(n, _, _)| *n == 1).unwrap();
                    cl.answer(i);
                }
                Step::Relay => {
                    cl.relay_next(0);
                }
                Step::RunRead if !ran => {
                    let i = cl.pending.iter().position(|(n, op)| *n == 0 && matches!(op, Op::Read { .. })).unwrap();
                    cl.run(i);
                    ran = true;
                }
                Step::Answer if ran && !answered => {
                    let i = cl.answers.iter().position(|(n, _, _)| *n == 0).unwrap();
                    cl.answer(i);
                    answered = true;
                }
                _ => {}
            }
        }
        cl.settle();
        let total = cl.store.room("chat:a").offset;
        let rx = cl.nodes[0].take(c);
        let frames = rx.frames();
        let Some(ServerFrame::Subscribed { offset: latest, recovered, .. }) = frames.iter().find(|f| matches!(f, ServerFrame::Subscribed { .. })) else {
            panic!("no subscribed: {frames:?}")
        };
        prop_assert_eq!(*recovered, recover);
        let first = if recover { seen + 1 } else { latest + 1 };
        let want: Vec<u64> = (first..=total).collect();
        prop_assert_eq!(offsets_seen(&frames, "chat:a"), want);
        prop_assert_eq!(cl.nodes[0].hub.stats().store_inflight, 0);
        cl.nodes[0].hub.check_invariants().map_err(TestCaseError::fail)?;
    }
}
