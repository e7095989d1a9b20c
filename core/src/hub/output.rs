//! The output queue: records of what the runtime must do, drained by `poll_output`.

use super::*;

impl<A: Authenticator, S: Storage> Hub<A, S> {
    /// The next connection from the cursor on (below `bound`) that was
    /// marked to end, and how it ends (marked as emitted).
    fn next_end(&mut self, bound: u32) -> Option<(ConnId, End)> {
        while self.end_cursor < bound && self.pending_ends > 0 {
            let key = self.end_cursor;
            self.end_cursor += 1;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let id = ConnId::new(key, conn.generation);
            let end = conn.end;
            if matches!(end, End::None | End::Emitted) {
                continue;
            }
            conn.end = End::Emitted;
            self.pending_ends -= 1;
            return Some((id, end));
        }
        None
    }

    /// The `Close` or `Drop` output of an end found by [`Hub::next_end`].
    fn end_output(&self, conn: ConnId, end: End) -> Output<'_> {
        match end {
            End::Close(code, reason) => Output::Close { conn, code, reason },
            End::CloseWith(code, start, end) => Output::Close {
                conn,
                code,
                reason: str_at(self.arena.bytes(), start as usize..end as usize),
            },
            End::Drop | End::None | End::Emitted => Output::Drop { conn },
        }
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
                #[cfg(feature = "alloc")]
                Record::Answer {
                    op,
                    bytes: r,
                    error,
                } => Output::Answer {
                    op: OpId::new(op),
                    result: match error {
                        None => Ok(&bytes[r]),
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
            let mut found = self.next_end(bound);
            if found.is_none() {
                // Ends marked behind the cursor: one more pass finds them.
                self.end_cursor = 0;
                found = self.next_end(bound);
            }
            if let Some((conn, end)) = found {
                return Some(self.end_output(conn, end));
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
