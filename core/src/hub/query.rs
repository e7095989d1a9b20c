//! Server-side queries: the presence and history of a room asked by the
//! runtime itself (the HTTP API of PROTOCOL.md §11), not by a connection.
//!
//! A query goes the way a client's `presence` or `history` command goes,
//! with the same rules (the namespace must keep presence or history, the
//! same `limit` clamp, the same `max_reply_bytes` bound) and through the
//! same store: answered inside the call by the in-memory store, through
//! [`Output::Store`] and [`Hub::handle_store`] by a remote one. Its answer
//! comes out as [`Output::Answer`] with the [`OpId`] the query returned:
//! the JSON text of the `presence` or `history` frame (without `id`).
//! Grants do not apply: the runtime asks on the application's behalf.

use super::store::Waiting;
use super::*;

/// A server-side query was refused, or its store failed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryError {
    /// The protocol code: 4005 bad room, 4003 presence or history off in
    /// the room's namespace, 4006 too many store operations in flight,
    /// 4013 the store is down or failed the read.
    pub code: ErrorCode,
    /// Why, in words.
    pub reason: &'static str,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl core::error::Error for QueryError {}

impl From<(ErrorCode, &'static str)> for QueryError {
    fn from((code, reason): (ErrorCode, &'static str)) -> Self {
        QueryError { code, reason }
    }
}

const STORE_FAILED: QueryError = QueryError {
    code: ErrorCode::Unavailable,
    reason: "unavailable: the store did not answer the read",
};

const OUTPUT_FULL: QueryError = QueryError {
    code: ErrorCode::Unavailable,
    reason: "unavailable: output storage full",
};

impl<A: Authenticator, S: Storage> Hub<A, S> {
    /// Asks for the history of `room` as the `history` command does
    /// (`since` exclusive, `limit` default 100, clamped to 1000, PROTOCOL.md
    /// §9 "History"). The answer comes as [`Output::Answer`] with the
    /// returned id: in this call's outputs with the in-memory store, once
    /// the store has read the room with a remote one.
    pub fn query_history(
        &mut self,
        now: Instant,
        room: &str,
        since: Option<u64>,
        limit: Option<u64>,
    ) -> Result<OpId, QueryError> {
        self.check_query(room, Grant::History)?;
        let limit = limit.unwrap_or(100).min(1000) as usize;
        if self.remote.is_some() {
            let waiting = Waiting::QueryHistory {
                room: room::to_name(room).unwrap_or_default(),
            };
            return Ok(self.read(now, None, waiting, since, limit)?);
        }
        let op = self.local_op();
        let encoded = self.history_local(now, Codec::Json, None, room, since, limit);
        self.push_answer(op, Some(encoded));
        Ok(op)
    }

    /// Asks for the members of `room` (on every node, with a remote store),
    /// as the `presence` command does. Answered like
    /// [`Hub::query_history`].
    pub fn query_presence(&mut self, now: Instant, room: &str) -> Result<OpId, QueryError> {
        self.check_query(room, Grant::Presence)?;
        if self.remote.is_some() {
            let waiting = Waiting::QueryPresence {
                room: room::to_name(room).unwrap_or_default(),
            };
            return Ok(self.read(now, None, waiting, None, 0)?);
        }
        let op = self.local_op();
        let encoded = self.presence_local(Codec::Json, None, room)?;
        self.push_answer(op, Some(encoded));
        Ok(op)
    }

    /// The room must be valid and its namespace must keep what is asked.
    fn check_query(&self, room: &str, grant: Grant) -> Result<(), QueryError> {
        if !room::is_valid(room) {
            return Err((ErrorCode::BadRoom, "bad room name").into());
        }
        let ns = self.config.namespace_of(room);
        match grant {
            Grant::Presence if !ns.presence => {
                Err((ErrorCode::Forbidden, "presence is off for this namespace").into())
            }
            Grant::History if ns.history_size == 0 => {
                Err((ErrorCode::Forbidden, "history is off for this namespace").into())
            }
            _ => Ok(()),
        }
    }

    /// An id for a request the in-memory store answers at once.
    pub(super) fn local_op(&mut self) -> OpId {
        let op = OpId::new(self.next_local_op);
        self.next_local_op += 1;
        op
    }

    /// Queues the answer of query `op`: the encoded frame, or `None` when
    /// the store failed it.
    pub(super) fn push_answer(
        &mut self,
        op: OpId,
        encoded: Option<Result<Range<usize>, crate::protocol::EncodeError>>,
    ) {
        let (bytes, error) = match encoded {
            Some(Ok(bytes)) => (bytes, None),
            Some(Err(_)) => (0..0, Some(OUTPUT_FULL)),
            None => (0..0, Some(STORE_FAILED)),
        };
        self.push(Record::Answer {
            op: op.get(),
            bytes,
            error,
        });
    }
}
