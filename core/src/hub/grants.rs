//! Grants: may this connection subscribe, publish, list presence or read history in a room?

use super::*;

impl<A: Authenticator, S: Storage> Hub<A, S> {
    pub(super) fn check_room(
        &self,
        id: ConnId,
        room: &str,
        grant: Grant,
    ) -> Option<(ErrorCode, &'static str)> {
        if !room::is_valid(room) {
            return Some((ErrorCode::BadRoom, "bad room name"));
        }
        let ns = self.config.namespace_of(room);
        let identity = self.conns.at(id).and_then(|c| c.identity.as_ref());
        let claim = match grant {
            Grant::Publish => {
                if !ns.client_publish {
                    return Some((ErrorCode::Forbidden, "clients may not publish here"));
                }
                identity.and_then(|i| i.may_publish(room))
            }
            Grant::Presence if !ns.presence => {
                return Some((ErrorCode::Forbidden, "presence is off for this namespace"));
            }
            Grant::History if ns.history_size == 0 => {
                return Some((ErrorCode::Forbidden, "history is off for this namespace"));
            }
            _ => identity.and_then(|i| i.may_subscribe(room)),
        };
        let allowed = claim.unwrap_or(!ns.require_grant);
        (!allowed).then_some((ErrorCode::Forbidden, "not allowed"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    Subscribe,
    Publish,
    Presence,
    History,
}
