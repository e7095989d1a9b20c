//! Table storage for the hub: growable (`alloc`) or fixed-capacity
//! (heapless, sized by const generics). The hub is written once against
//! these traits; [`Growable`] and [`Fixed`] pick the tables.

use core::ops::Range;

use crate::protocol::{Codec, EncodeError, ServerFrame};
use crate::room::RoomName;

/// A slab: values addressed by a small integer key that stays stable while
/// the value lives.
pub trait Slab<T>: Default {
    /// Stores `value`, returning its key, or gives it back when full.
    fn insert(&mut self, value: T) -> Result<u32, T>;
    /// Removes and returns the value at `key`.
    fn remove(&mut self, key: u32) -> Option<T>;
    /// The value at `key`.
    fn get(&self, key: u32) -> Option<&T>;
    /// The value at `key`, mutably.
    fn get_mut(&mut self, key: u32) -> Option<&mut T>;
    /// Number of values stored.
    fn len(&self) -> usize;
    /// Is it empty?
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// One past the highest key that may be occupied (for scans).
    fn key_bound(&self) -> u32;
}

/// A list with a possibly fixed capacity.
pub trait List<T>: Default {
    /// Appends, or gives the value back when full.
    fn push(&mut self, value: T) -> Result<(), T>;
    /// The elements.
    fn as_slice(&self) -> &[T];
    /// The elements, mutably.
    fn as_mut_slice(&mut self) -> &mut [T];
    /// Removes element `i`, moving the last one into its place.
    fn swap_remove(&mut self, i: usize) -> T;
    /// Gives back spare memory, where that means anything.
    fn shrink(&mut self) {}
}

/// A FIFO queue.
pub trait Queue<T>: Default {
    /// Appends, or gives the value back when full.
    fn push_back(&mut self, value: T) -> Result<(), T>;
    /// Takes the oldest element.
    fn pop_front(&mut self) -> Option<T>;
    /// The oldest element.
    fn front(&self) -> Option<&T>;
    /// Is it empty?
    fn is_empty(&self) -> bool;
}

/// Byte storage for the encoded frames of pending outputs.
pub trait Arena: Default {
    /// Forgets every stored byte.
    fn clear(&mut self);
    /// Forgets the bytes from `len` on (undoes the last appends).
    fn truncate(&mut self, len: usize);
    /// Everything stored.
    fn bytes(&self) -> &[u8];
    /// Appends the encoding of `frame` and returns where it is.
    fn encode(
        &mut self,
        codec: Codec,
        frame: &ServerFrame<'_>,
    ) -> Result<Range<usize>, EncodeError>;
    /// Appends raw bytes and returns where they are.
    fn push(&mut self, bytes: &[u8]) -> Result<Range<usize>, EncodeError>;
}

/// Room name → room key.
pub trait RoomIndex: Default {
    /// The key of room `name`.
    fn find(&self, name: &str) -> Option<u32>;
    /// Records `name` → `key`; `Err` when full.
    #[allow(clippy::result_unit_err)]
    fn insert(&mut self, name: RoomName, key: u32) -> Result<(), ()>;
    /// Forgets `name`.
    fn remove(&mut self, name: &str);
}

/// One room's message history: contiguous offsets, oldest first.
pub trait History: Default {
    /// The most messages this store can keep (the namespace's
    /// `history_size` is capped by it).
    fn capacity(&self) -> usize;
    /// Appends a message record; `Err` when it cannot be stored.
    #[allow(clippy::result_unit_err)]
    fn push(&mut self, offset: u64, at: crate::time::Instant, record: &[u8]) -> Result<(), ()>;
    /// Appends a record of `len` bytes written in place by `write` (no
    /// copy through a temporary buffer); `Err` when it cannot be stored or
    /// `write` fails. Call [`History::fits`] first.
    #[allow(clippy::result_unit_err)]
    fn push_with(
        &mut self,
        offset: u64,
        at: crate::time::Instant,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> Result<(), ()>,
    ) -> Result<(), ()>;
    /// Would a record of `len` bytes be stored now, without dropping any
    /// message? A fixed ring says no when it is full; the hub then drops
    /// the oldest message (keeping its counts) and asks again.
    fn fits(&self, len: usize) -> bool;
    /// Drops the oldest message.
    fn pop_oldest(&mut self);
    /// Messages kept.
    fn len(&self) -> usize;
    /// Is it empty?
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `i`-th oldest message: `(offset, stored at, record)`.
    fn get(&self, i: usize) -> Option<(u64, crate::time::Instant, &[u8])>;
    /// Drops everything.
    fn clear(&mut self) {
        while !self.is_empty() {
            self.pop_oldest();
        }
    }
}

/// A history that keeps nothing (for storages without history; [`Fixed`]
/// uses [`FixedHistory`], which keeps nothing at capacity 0).
#[derive(Debug, Default)]
pub struct NoHistory;

impl History for NoHistory {
    fn capacity(&self) -> usize {
        0
    }
    fn push(&mut self, _: u64, _: crate::time::Instant, _: &[u8]) -> Result<(), ()> {
        Err(())
    }
    fn push_with(
        &mut self,
        _: u64,
        _: crate::time::Instant,
        _: usize,
        _: impl FnOnce(&mut [u8]) -> Result<(), ()>,
    ) -> Result<(), ()> {
        Err(())
    }
    fn fits(&self, _: usize) -> bool {
        false
    }
    fn pop_oldest(&mut self) {}
    fn len(&self) -> usize {
        0
    }
    fn get(&self, _: usize) -> Option<(u64, crate::time::Instant, &[u8])> {
        None
    }
}

/// A family of tables for the hub.
pub trait Storage {
    /// The connection table.
    type Conns<T>: Slab<T>;
    /// The room table.
    type Rooms<T>: Slab<T>;
    /// Members of one room.
    type Members<T>: List<T>;
    /// Rooms of one connection.
    type ConnRooms<T>: List<T>;
    /// Pending outputs.
    type Queue<T>: Queue<T>;
    /// Bytes of pending outputs.
    type Arena: Arena;
    /// Room lookup by name.
    type Index: RoomIndex;
    /// A room's history.
    type History: History;

    /// Refuses a `config` that asks for more than these tables hold,
    /// naming the setting ([`crate::Hub::new`] calls it). Growable tables
    /// take any config.
    fn check(config: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
        let _ = config;
        Ok(())
    }

    /// `config` with every setting that [`Storage::check`] bounds lowered to
    /// what these tables hold (history off where there is no ring), so that
    /// `check` accepts it. Growable tables keep it as it is.
    fn fit(config: crate::config::Config) -> crate::config::Config {
        config
    }
}

// ---------------------------------------------------------------- fixed

/// Fixed-capacity tables (no allocator): `CONNS` connections, `ROOMS` rooms,
/// `MEMBERS` members per room, `PER_CONN` rooms per connection, `OUTPUTS`
/// pending outputs, `ARENA` bytes of pending frames, and per room a history
/// ring ([`FixedHistory`]) of `HISTORY` messages in `HISTORY_BYTES` bytes of
/// records (0 and 0, the defaults: no history).
#[derive(Debug)]
pub struct Fixed<
    const CONNS: usize,
    const ROOMS: usize,
    const MEMBERS: usize,
    const PER_CONN: usize,
    const OUTPUTS: usize,
    const ARENA: usize,
    const HISTORY: usize = 0,
    const HISTORY_BYTES: usize = 0,
>;

impl<
    const C: usize,
    const R: usize,
    const M: usize,
    const P: usize,
    const O: usize,
    const A: usize,
    const H: usize,
    const HB: usize,
> Storage for Fixed<C, R, M, P, O, A, H, HB>
{
    type Conns<T> = FixedSlab<T, C>;
    type Rooms<T> = FixedSlab<T, R>;
    type Members<T> = heapless::Vec<T, M>;
    type ConnRooms<T> = heapless::Vec<T, P>;
    type Queue<T> = heapless::Deque<T, O>;
    type Arena = heapless::Vec<u8, A>;
    type Index = FixedIndex<R>;
    type History = FixedHistory<H, HB>;

    fn check(config: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError;
        if config.max_connections > C {
            return Err(ConfigError::new(
                "max_connections",
                "more than the fixed connection table holds (CONNS)",
            ));
        }
        if config.max_rooms > R {
            return Err(ConfigError::new(
                "max_rooms",
                "more than the fixed room table holds (ROOMS)",
            ));
        }
        if config.max_rooms_per_connection > P {
            return Err(ConfigError::new(
                "max_rooms_per_connection",
                "more than a connection's fixed room list holds (PER_CONN)",
            ));
        }
        let history = core::iter::once(&config.default_namespace)
            .chain(config.namespaces.iter().map(|(_, ns)| ns))
            .map(|ns| ns.history_size as usize)
            .max()
            .unwrap_or(0);
        if history > 0 && (HB == 0 || history > H) {
            return Err(ConfigError::new(
                "history_size",
                "more messages than the fixed history ring holds (HISTORY)",
            ));
        }
        Ok(())
    }

    fn fit(mut config: crate::config::Config) -> crate::config::Config {
        config.max_connections = config.max_connections.min(C);
        config.max_rooms = config.max_rooms.min(R);
        config.max_rooms_per_connection = config.max_rooms_per_connection.min(P);
        let ring = if HB == 0 { 0 } else { H };
        let cap = |n: u32| n.min(u32::try_from(ring).unwrap_or(u32::MAX));
        config.default_namespace.history_size = cap(config.default_namespace.history_size);
        for (_, ns) in config.namespaces.iter_mut() {
            ns.history_size = cap(ns.history_size);
        }
        config
    }
}

/// One room's history without an allocator: at most `N` messages whose
/// records share a ring of `B` bytes. Each record is contiguous (a record
/// that does not fit before the end of the ring starts again at its
/// beginning), so [`History::get`] borrows it in place.
#[derive(Debug)]
pub struct FixedHistory<const N: usize, const B: usize> {
    /// `(offset, stored at, start, len)`, oldest first (a `Vec`: dropping
    /// the oldest moves at most `N` small entries, and `N` may be 0).
    entries: heapless::Vec<(u64, crate::time::Instant, u32, u32), N>,
    bytes: [u8; B],
}

impl<const N: usize, const B: usize> Default for FixedHistory<N, B> {
    fn default() -> Self {
        FixedHistory {
            entries: heapless::Vec::new(),
            bytes: [0; B],
        }
    }
}

impl<const N: usize, const B: usize> FixedHistory<N, B> {
    /// Where a record of `len` bytes would go now, if anywhere.
    fn slot(&self, len: usize) -> Option<usize> {
        if self.entries.is_full() || len > B {
            return None;
        }
        let (Some(oldest), Some(newest)) = (self.entries.first(), self.entries.last()) else {
            return Some(0);
        };
        let head = oldest.2 as usize;
        let tail = (newest.2 + newest.3) as usize;
        if head < tail {
            // Used: head..tail. Free: tail..B, then 0..head.
            if tail + len <= B {
                Some(tail)
            } else {
                (len <= head).then_some(0)
            }
        } else {
            // Wrapped (or one record filling the ring): free is tail..head.
            (tail + len <= head).then_some(tail)
        }
    }
}

impl<const N: usize, const B: usize> History for FixedHistory<N, B> {
    fn capacity(&self) -> usize {
        if B == 0 { 0 } else { N }
    }
    fn push(&mut self, offset: u64, at: crate::time::Instant, record: &[u8]) -> Result<(), ()> {
        self.push_with(offset, at, record.len(), |buf| {
            buf.copy_from_slice(record);
            Ok(())
        })
    }
    fn push_with(
        &mut self,
        offset: u64,
        at: crate::time::Instant,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> Result<(), ()>,
    ) -> Result<(), ()> {
        let start = self.slot(len).ok_or(())?;
        write(&mut self.bytes[start..start + len])?;
        // `slot` checked that the deque has room and that `len <= B`.
        self.entries
            .push((offset, at, start as u32, len as u32))
            .map_err(|_| ())
    }
    fn fits(&self, len: usize) -> bool {
        self.slot(len).is_some()
    }
    fn pop_oldest(&mut self) {
        if !self.entries.is_empty() {
            self.entries.remove(0);
        }
    }
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn get(&self, i: usize) -> Option<(u64, crate::time::Instant, &[u8])> {
        let &(offset, at, start, len) = self.entries.get(i)?;
        let record = self.bytes.get(start as usize..(start + len) as usize)?;
        Some((offset, at, record))
    }
}

/// A slab of at most `N` values, without allocation.
#[derive(Debug)]
pub struct FixedSlab<T, const N: usize> {
    slots: heapless::Vec<Option<T>, N>,
    len: usize,
}

impl<T, const N: usize> Default for FixedSlab<T, N> {
    fn default() -> Self {
        FixedSlab {
            slots: heapless::Vec::new(),
            len: 0,
        }
    }
}

impl<T, const N: usize> Slab<T> for FixedSlab<T, N> {
    fn insert(&mut self, value: T) -> Result<u32, T> {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            self.slots[i] = Some(value);
            self.len += 1;
            return Ok(i as u32);
        }
        match self.slots.push(Some(value)) {
            Ok(()) => {
                self.len += 1;
                Ok((self.slots.len() - 1) as u32)
            }
            Err(v) => Err(v.expect("pushed Some")),
        }
    }
    fn remove(&mut self, key: u32) -> Option<T> {
        let v = self.slots.get_mut(key as usize)?.take();
        if v.is_some() {
            self.len -= 1;
        }
        v
    }
    fn get(&self, key: u32) -> Option<&T> {
        self.slots.get(key as usize)?.as_ref()
    }
    fn get_mut(&mut self, key: u32) -> Option<&mut T> {
        self.slots.get_mut(key as usize)?.as_mut()
    }
    fn len(&self) -> usize {
        self.len
    }
    fn key_bound(&self) -> u32 {
        self.slots.len() as u32
    }
}

impl<T, const N: usize> List<T> for heapless::Vec<T, N> {
    fn push(&mut self, value: T) -> Result<(), T> {
        heapless::Vec::push(self, value)
    }
    fn as_slice(&self) -> &[T] {
        self
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
        self
    }
    fn swap_remove(&mut self, i: usize) -> T {
        heapless::Vec::swap_remove(self, i)
    }
}

impl<T, const N: usize> Queue<T> for heapless::Deque<T, N> {
    fn push_back(&mut self, value: T) -> Result<(), T> {
        heapless::Deque::push_back(self, value)
    }
    fn pop_front(&mut self) -> Option<T> {
        heapless::Deque::pop_front(self)
    }
    fn front(&self) -> Option<&T> {
        heapless::Deque::front(self)
    }
    fn is_empty(&self) -> bool {
        heapless::Deque::is_empty(self)
    }
}

impl<const N: usize> Arena for heapless::Vec<u8, N> {
    fn clear(&mut self) {
        heapless::Vec::clear(self);
    }
    fn truncate(&mut self, len: usize) {
        heapless::Vec::truncate(self, len);
    }
    fn bytes(&self) -> &[u8] {
        self
    }
    fn encode(
        &mut self,
        codec: Codec,
        frame: &ServerFrame<'_>,
    ) -> Result<Range<usize>, EncodeError> {
        let start = self.len();
        self.resize(N, 0).map_err(|_| EncodeError::BufferFull)?;
        match codec.encode_server_to_slice(frame, &mut self[start..]) {
            Ok(n) => {
                self.truncate(start + n);
                Ok(start..start + n)
            }
            Err(e) => {
                self.truncate(start);
                Err(e)
            }
        }
    }
    fn push(&mut self, bytes: &[u8]) -> Result<Range<usize>, EncodeError> {
        let start = self.len();
        self.extend_from_slice(bytes)
            .map_err(|_| EncodeError::BufferFull)?;
        Ok(start..self.len())
    }
}

/// Room index for [`Fixed`]: a linear scan over at most `N` names.
#[derive(Debug)]
pub struct FixedIndex<const N: usize>(heapless::Vec<(RoomName, u32), N>);

impl<const N: usize> Default for FixedIndex<N> {
    fn default() -> Self {
        FixedIndex(heapless::Vec::new())
    }
}

impl<const N: usize> RoomIndex for FixedIndex<N> {
    fn find(&self, name: &str) -> Option<u32> {
        self.0
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, k)| *k)
    }
    fn insert(&mut self, name: RoomName, key: u32) -> Result<(), ()> {
        self.0.push((name, key)).map_err(|_| ())
    }
    fn remove(&mut self, name: &str) {
        if let Some(i) = self.0.iter().position(|(n, _)| n.as_str() == name) {
            self.0.swap_remove(i);
        }
    }
}

// ---------------------------------------------------------------- growable

#[cfg(feature = "alloc")]
pub use growable::{Growable, GrowableSlab, VecHistory};

#[cfg(feature = "alloc")]
mod growable {
    use alloc::collections::{BTreeMap, VecDeque};
    use alloc::vec::Vec;
    use core::ops::Range;

    use alloc::boxed::Box;

    use super::{Arena, History, List, Queue, RoomIndex, Slab, Storage};
    use crate::time::Instant;

    /// A growable history: one boxed record per message.
    #[derive(Debug, Default)]
    pub struct VecHistory {
        entries: VecDeque<(u64, Instant, Box<[u8]>)>,
    }

    impl History for VecHistory {
        fn capacity(&self) -> usize {
            usize::MAX
        }
        fn push(&mut self, offset: u64, at: Instant, record: &[u8]) -> Result<(), ()> {
            self.entries.push_back((offset, at, record.into()));
            Ok(())
        }
        fn push_with(
            &mut self,
            offset: u64,
            at: Instant,
            len: usize,
            write: impl FnOnce(&mut [u8]) -> Result<(), ()>,
        ) -> Result<(), ()> {
            let mut record = alloc::vec![0u8; len].into_boxed_slice();
            write(&mut record)?;
            self.entries.push_back((offset, at, record));
            Ok(())
        }
        fn fits(&self, _: usize) -> bool {
            true
        }
        fn pop_oldest(&mut self) {
            self.entries.pop_front();
            if self.entries.is_empty() {
                self.entries = VecDeque::new();
            } else if self.entries.capacity() > 16
                && self.entries.len() < self.entries.capacity() / 4
            {
                self.entries.shrink_to(self.entries.len() * 2);
            }
        }
        fn len(&self) -> usize {
            self.entries.len()
        }
        fn get(&self, i: usize) -> Option<(u64, Instant, &[u8])> {
            self.entries.get(i).map(|(o, t, r)| (*o, *t, &r[..]))
        }
    }
    use crate::protocol::{Codec, EncodeError, ServerFrame};
    use crate::room::RoomName;

    /// Growable tables (needs `alloc`); limits come from the hub's `Config`.
    #[derive(Debug)]
    pub struct Growable;

    impl Storage for Growable {
        type Conns<T> = GrowableSlab<T>;
        type Rooms<T> = GrowableSlab<T>;
        type Members<T> = Vec<T>;
        type ConnRooms<T> = Vec<T>;
        type Queue<T> = VecDeque<T>;
        type Arena = Vec<u8>;
        type Index = BTreeMap<RoomName, u32>;
        type History = VecHistory;
    }

    /// A growable slab with a free list.
    #[derive(Debug)]
    pub struct GrowableSlab<T> {
        slots: Vec<Option<T>>,
        free: Vec<u32>,
        len: usize,
    }

    impl<T> Default for GrowableSlab<T> {
        fn default() -> Self {
            GrowableSlab {
                slots: Vec::new(),
                free: Vec::new(),
                len: 0,
            }
        }
    }

    impl<T> Slab<T> for GrowableSlab<T> {
        fn insert(&mut self, value: T) -> Result<u32, T> {
            self.len += 1;
            if let Some(k) = self.free.pop() {
                self.slots[k as usize] = Some(value);
                return Ok(k);
            }
            self.slots.push(Some(value));
            Ok((self.slots.len() - 1) as u32)
        }
        fn remove(&mut self, key: u32) -> Option<T> {
            let v = self.slots.get_mut(key as usize)?.take();
            if v.is_some() {
                self.len -= 1;
                self.free.push(key);
            }
            v
        }
        fn get(&self, key: u32) -> Option<&T> {
            self.slots.get(key as usize)?.as_ref()
        }
        fn get_mut(&mut self, key: u32) -> Option<&mut T> {
            self.slots.get_mut(key as usize)?.as_mut()
        }
        fn len(&self) -> usize {
            self.len
        }
        fn key_bound(&self) -> u32 {
            self.slots.len() as u32
        }
    }

    impl<T> List<T> for Vec<T> {
        fn push(&mut self, value: T) -> Result<(), T> {
            Vec::push(self, value);
            Ok(())
        }
        fn as_slice(&self) -> &[T] {
            self
        }
        fn as_mut_slice(&mut self) -> &mut [T] {
            self
        }
        fn swap_remove(&mut self, i: usize) -> T {
            Vec::swap_remove(self, i)
        }
        fn shrink(&mut self) {
            if self.capacity() > 8 && self.len() < self.capacity() / 4 {
                self.shrink_to(self.len() * 2);
            }
        }
    }

    impl<T> Queue<T> for VecDeque<T> {
        fn push_back(&mut self, value: T) -> Result<(), T> {
            VecDeque::push_back(self, value);
            Ok(())
        }
        fn pop_front(&mut self) -> Option<T> {
            VecDeque::pop_front(self)
        }
        fn front(&self) -> Option<&T> {
            VecDeque::front(self)
        }
        fn is_empty(&self) -> bool {
            VecDeque::is_empty(self)
        }
    }

    impl Arena for Vec<u8> {
        fn truncate(&mut self, len: usize) {
            Vec::truncate(self, len);
        }
        fn clear(&mut self) {
            Vec::clear(self);
            if self.capacity() > 1 << 20 {
                self.shrink_to(64 * 1024);
            }
        }
        fn bytes(&self) -> &[u8] {
            self
        }
        fn encode(
            &mut self,
            codec: Codec,
            frame: &ServerFrame<'_>,
        ) -> Result<Range<usize>, EncodeError> {
            let start = self.len();
            codec
                .encode_server(frame, self)
                .inspect_err(|_| self.truncate(start))?;
            Ok(start..self.len())
        }
        fn push(&mut self, bytes: &[u8]) -> Result<Range<usize>, EncodeError> {
            let start = self.len();
            self.extend_from_slice(bytes);
            Ok(start..self.len())
        }
    }

    impl RoomIndex for BTreeMap<RoomName, u32> {
        fn find(&self, name: &str) -> Option<u32> {
            let key = crate::room::to_name(name)?;
            self.get(&key).copied()
        }
        fn insert(&mut self, name: RoomName, key: u32) -> Result<(), ()> {
            BTreeMap::insert(self, name, key);
            Ok(())
        }
        fn remove(&mut self, name: &str) {
            if let Some(key) = crate::room::to_name(name) {
                BTreeMap::remove(self, &key);
            }
        }
    }
}
