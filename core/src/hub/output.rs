//! The output queue: records of what the runtime must do, drained by `poll_output`.

use super::*;

impl<A: Authenticator, S: Storage> Hub<A, S> {
    /// The next connection from the cursor on (below `bound`) that was
    /// marked to end: its `Close` or `Drop` output.
    fn next_end(&mut self, bound: u32) -> Option<Output<'static>> {
        while self.end_cursor < bound && self.pending_ends > 0 {
            let key = self.end_cursor;
            self.end_cursor += 1;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let id = ConnId::new(key, conn.generation);
            let out = match conn.end {
                End::Close(code, reason) => Output::Close {
                    conn: id,
                    code,
                    reason,
                },
                End::Drop => Output::Drop { conn: id },
                End::None | End::Emitted => continue,
            };
            conn.end = End::Emitted;
            self.pending_ends -= 1;
            return Some(out);
        }
        None
    }

    /// The next thing to do, or `None` when everything is drained.
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
        // Skip broadcasts to rooms that are gone by now.
        while let Some(Record::Broadcast { room, .. }) = self.records.front() {
            if self.rooms.get(*room).is_some() {
                break;
            }
            self.records.pop_front();
        }
        if let Some(record) = self.records.pop_front() {
            let bytes = self.arena.bytes();
            return Some(match record {
                Record::Unicast {
                    conn,
                    codec,
                    bytes: r,
                } => Output::Transmit {
                    conn,
                    codec,
                    bytes: &bytes[r],
                },
                Record::Ping { conn } => Output::Ping { conn },
                Record::Pong { conn, bytes: r } => Output::Pong {
                    conn,
                    payload: &bytes[r],
                },
                Record::Occupied { name } => Output::RoomOccupied {
                    room: str_at(bytes, name),
                },
                Record::Vacant { name } => Output::RoomVacant {
                    room: str_at(bytes, name),
                },
                #[cfg(feature = "alloc")]
                Record::Store(op, record) => Output::Store(record.op(
                    OpId::new(op),
                    bytes,
                    self.config.idempotency_window,
                    self.config.presence_ttl,
                )),
                #[cfg(feature = "alloc")]
                Record::Published {
                    op,
                    room,
                    epoch,
                    offset,
                    error,
                } => Output::Published {
                    op: OpId::new(op),
                    room: str_at(bytes, room),
                    result: match error {
                        None => Ok(PublishAck {
                            epoch: str_at(bytes, epoch),
                            offset,
                        }),
                        Some(e) => Err(e),
                    },
                },
                Record::Broadcast {
                    room,
                    json,
                    postcard,
                    audience,
                    offset,
                } => match self.rooms.get(room) {
                    Some(r) => Output::Broadcast(Broadcast {
                        room: &r.name,
                        json: json.map(|j| &bytes[j]),
                        postcard: postcard.map(|p| &bytes[p]),
                        subscribers: r.subscribers.as_slice(),
                        audience,
                        offset,
                    }),
                    None => unreachable!("skipped above"),
                },
            });
        }
        if self.pending_ends > 0 {
            let bound = self.conns.key_bound();
            if let Some(out) = self.next_end(bound) {
                return Some(out);
            }
            // Ends marked behind the cursor: one more pass finds them.
            self.end_cursor = 0;
            if let Some(out) = self.next_end(bound) {
                return Some(out);
            }
        }
        self.end_cursor = 0;
        self.arena.clear();
        None
    }

    pub(super) fn unicast(
        &mut self,
        conn: ConnId,
        codec: Codec,
        bytes: Result<Range<usize>, crate::protocol::EncodeError>,
    ) {
        match bytes {
            Ok(bytes) => self.push(Record::Unicast { conn, codec, bytes }),
            Err(_) => self.end(
                conn,
                End::Close(CloseCode::Internal, "internal error: output storage full"),
            ),
        }
    }

    pub(super) fn push(&mut self, record: Record) {
        let conn = match &record {
            Record::Unicast { conn, .. } | Record::Ping { conn } | Record::Pong { conn, .. } => {
                Some(*conn)
            }
            _ => None,
        };
        if self.records.push_back(record).is_err()
            && let Some(conn) = conn
        {
            self.end(
                conn,
                End::Close(CloseCode::Internal, "internal error: output storage full"),
            );
        }
    }

    pub(super) fn reply(&mut self, id: ConnId, frame: &ServerFrame<'_>) {
        let Some(codec) = self.conns.at(id).map(|c| c.codec) else {
            return;
        };
        let r = self.arena.encode(codec, frame);
        self.unicast(id, codec, r);
    }

    pub(super) fn reply_error(
        &mut self,
        id: ConnId,
        req: Option<u64>,
        code: ErrorCode,
        reason: &str,
    ) {
        self.errors.add(code.code());
        self.reply(
            id,
            &ServerFrame::Error {
                id: req,
                code: code.code(),
                reason: Text::Borrowed(reason),
            },
        );
    }
}

pub(super) fn str_at(bytes: &[u8], r: Range<usize>) -> &str {
    core::str::from_utf8(&bytes[r]).unwrap_or("")
}
