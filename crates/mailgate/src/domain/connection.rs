//! A Google connection: the tokens one Gmail account granted, and what their state means to a human.
//! Connections are per Google account, so an outgoing and an incoming server of the same mailbox
//! share one consent (Flectra asks twice).

use crate::clock::Timestamp;

/// The server whose page started "Connect your Gmail account". The consent belongs to the
/// account and serves its outgoing and incoming servers alike; the admin comes back to the page
/// they started from, and an incoming-only mailbox needs no outgoing server to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFor {
    Outgoing(i64),
    Incoming(i64),
}

impl ConnectFor {
    /// The kind as stored beside the id.
    pub fn kind(self) -> &'static str {
        match self {
            ConnectFor::Outgoing(_) => "outgoing",
            ConnectFor::Incoming(_) => "incoming",
        }
    }

    pub fn id(self) -> i64 {
        match self {
            ConnectFor::Outgoing(id) | ConnectFor::Incoming(id) => id,
        }
    }

    pub fn from_stored(kind: &str, id: i64) -> Option<Self> {
        match kind {
            "outgoing" => Some(ConnectFor::Outgoing(id)),
            "incoming" => Some(ConnectFor::Incoming(id)),
            _ => None,
        }
    }

    /// The server's page in the admin app.
    pub fn page(self) -> String {
        match self {
            ConnectFor::Outgoing(id) => format!("/servers/{id}"),
            ConnectFor::Incoming(id) => format!("/incoming/{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// The last refresh or login succeeded.
    Valid,
    /// Google refused the tokens (invalid_grant, or a 535 after a fresh token): a human must click
    /// "Connect your Gmail account" again.
    ReconnectNeeded { reason: String, at: Timestamp },
}

#[derive(Debug, Clone)]
pub struct GoogleConnection {
    pub email: String,
    pub client_id: String,
    pub scope: String,
    pub status: ConnectionStatus,
    pub status_at: Timestamp,
    pub connected_at: Timestamp,
    /// Testing apps: Google's `refresh_token_expires_in`, as a date.
    pub refresh_expires_at: Option<Timestamp>,
    pub access_expires_at: Option<Timestamp>,
    pub last_refresh_at: Option<Timestamp>,
    /// The last temporary failure (Google unreachable, 5xx): it does not change the status.
    pub last_error: Option<(String, Timestamp)>,
}

/// The badge on a Gmail server, in the seed's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenBadge {
    Valid,
    ReconnectNeeded { reason: String, at: Timestamp },
    NotConnected,
}

impl TokenBadge {
    pub fn of(connection: Option<&GoogleConnection>, client_id: Option<&str>) -> Self {
        let Some(c) = connection else {
            return TokenBadge::NotConnected;
        };
        if let Some(current) = client_id
            && current != c.client_id
        {
            return TokenBadge::ReconnectNeeded {
                reason: "the Client ID in Settings changed since this account was connected".into(),
                at: c.status_at,
            };
        }
        match &c.status {
            ConnectionStatus::Valid => TokenBadge::Valid,
            ConnectionStatus::ReconnectNeeded { reason, at } => TokenBadge::ReconnectNeeded {
                reason: reason.clone(),
                at: *at,
            },
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            TokenBadge::Valid => "Gmail Token Valid",
            TokenBadge::ReconnectNeeded { .. } => "Reconnect needed",
            TokenBadge::NotConnected => "Not connected",
        }
    }

    pub fn css(&self) -> &'static str {
        match self {
            TokenBadge::Valid => "ok",
            TokenBadge::ReconnectNeeded { .. } => "bad",
            TokenBadge::NotConnected => "idle",
        }
    }
}

/// Google's Testing publishing status gives 7-day refresh tokens; this many days before the end,
/// mailgate warns.
pub const EXPIRY_WARNING_SECS: i64 = 2 * 86_400;
