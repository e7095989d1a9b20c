//! The session and auth phases: credentials, `welcome`, token refresh.

use super::*;

impl<A: Authenticator, S: Storage> Hub<A, S> {
    pub(super) fn authenticate(&self, token: &str, now: Instant) -> Result<A::Identity, AuthError> {
        let identity = self.auth.authenticate(token, now)?;
        let leeway = crate::time::Duration::from_secs(self.config.token_leeway_secs);
        if let Some(exp) = identity.expires_at()
            && now >= exp + leeway
        {
            return Err(AuthError::Rejected);
        }
        if let Some(nbf) = identity.not_before()
            && now + leeway < nbf
        {
            return Err(AuthError::Rejected);
        }
        // PROTOCOL.md §9: `sub` is 1–128 bytes, never truncated.
        if identity
            .user()
            .is_some_and(|u| u.is_empty() || u.len() > crate::protocol::MAX_USER_LEN)
        {
            return Err(AuthError::Rejected);
        }
        Ok(identity)
    }

    pub(super) fn open(&mut self, id: ConnId, identity: Option<A::Identity>) {
        let leeway = crate::time::Duration::from_secs(self.config.token_leeway_secs);
        let ping_ms = self.config.ping_interval.as_millis();
        let Some(conn) = self.conns.at_mut(id) else {
            return;
        };
        conn.timers.expires = identity
            .as_ref()
            .and_then(|i| i.expires_at())
            .map(|e| e + leeway);
        conn.identity = identity;
        let was_waiting = matches!(conn.phase, Phase::AwaitingAuth { .. });
        conn.phase = Phase::Open;
        let codec = conn.codec;
        if was_waiting {
            self.pending_auth -= 1;
        }
        let Some(conn) = self.conns.at(id) else {
            return;
        };
        let frame = ServerFrame::Welcome {
            client: Text::Borrowed(&conn.client),
            user: conn
                .identity
                .as_ref()
                .and_then(|i| i.user())
                .map(Text::Borrowed),
            ping_interval_ms: ping_ms,
            protocol: crate::protocol::PROTOCOL_VERSION,
        };
        let r = self.arena.encode(codec, &frame);
        self.unicast(id, codec, r);
    }

    pub(super) fn refresh(&mut self, now: Instant, id: ConnId, token: &str) {
        let identity = match self.authenticate(token, now) {
            Ok(identity) => identity,
            Err(e) => return self.end(id, End::Close(e.close_code(), auth_reason(e))),
        };
        let leeway = crate::time::Duration::from_secs(self.config.token_leeway_secs);
        let Some(conn) = self.conns.at_mut(id) else {
            return;
        };
        if let Some(current) = &conn.identity
            && current.user() != identity.user()
        {
            return self.end(
                id,
                End::Close(CloseCode::Unauthorized, "token is for another user"),
            );
        }
        conn.timers.expires = identity.expires_at().map(|e| e + leeway);
        conn.identity = Some(identity);
        let codec = conn.codec;
        let user = conn.identity.as_ref().and_then(|i| i.user());
        let r = self.arena.encode(
            codec,
            &ServerFrame::Authed {
                user: user.map(Text::Borrowed),
            },
        );
        self.unicast(id, codec, r);
        self.schedule(self.deadline_of(id));
    }
}

pub(super) fn auth_reason(e: AuthError) -> &'static str {
    match e {
        AuthError::Malformed => "malformed token",
        AuthError::Rejected => "token rejected",
        AuthError::Forbidden => "not allowed to connect",
    }
}
