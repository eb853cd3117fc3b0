//! Google connections: one row per Google account, every token sealed and bound to its account.

use secrecy::SecretString;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, opt_bytes, opt_i64, opt_string};
use crate::clock::Timestamp;
use crate::crypto::Sealer;
use crate::domain::{ConnectionStatus, GoogleConnection};

/// The columns `connection_from_row` reads, spliced into each query at compile time.
macro_rules! columns {
    () => {
        "email, client_id, scope, status, status_reason, status_at, connected_at, refresh_expires_at, access_expires_at, last_refresh_at, last_error, last_error_at"
    };
}

fn refresh_purpose(email: &str) -> String {
    format!("google_connections.refresh_token:{email}")
}

fn access_purpose(email: &str) -> String {
    format!("google_connections.access_token:{email}")
}

/// What a successful consent hands over.
pub struct NewConnection<'a> {
    pub email: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub refresh_token: &'a SecretString,
    pub access_token: &'a SecretString,
    pub access_expires_at: Timestamp,
    pub refresh_expires_at: Option<Timestamp>,
}

/// A connection with its tokens opened, for the code that talks to Google.
pub struct ConnectionRecord {
    pub connection: GoogleConnection,
    pub refresh_token: SecretString,
    pub access_token: Option<SecretString>,
}

fn connection_from_row(row: &AnyRow) -> Result<GoogleConnection, sqlx::Error> {
    let status_at: i64 = row.try_get("status_at")?;
    let status = match row.try_get::<String, _>("status")?.as_str() {
        "valid" => ConnectionStatus::Valid,
        _ => ConnectionStatus::ReconnectNeeded {
            reason: opt_string(row, "status_reason")?.unwrap_or_default(),
            at: status_at,
        },
    };
    let last_error = match (
        opt_string(row, "last_error")?,
        opt_i64(row, "last_error_at")?,
    ) {
        (Some(e), Some(at)) => Some((e, at)),
        _ => None,
    };
    Ok(GoogleConnection {
        email: row.try_get("email")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        status,
        status_at,
        connected_at: row.try_get("connected_at")?,
        refresh_expires_at: opt_i64(row, "refresh_expires_at")?,
        access_expires_at: opt_i64(row, "access_expires_at")?,
        last_refresh_at: opt_i64(row, "last_refresh_at")?,
        last_error,
    })
}

impl Store {
    pub async fn connection(&self, email: &str) -> Result<Option<GoogleConnection>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM google_connections WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(connection_from_row).transpose()?)
    }

    /// How many accounts are connected and when the newest connection was made: it moves
    /// whenever any instance connects or disconnects an account.
    pub async fn connections_fingerprint(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS accounts, COALESCE(MAX(connected_at), 0) AS newest FROM google_connections",
        )
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("accounts")?, row.try_get("newest")?))
    }

    pub async fn connections(&self) -> Result<Vec<GoogleConnection>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM google_connections ORDER BY email"
        ))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(connection_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The connection with its tokens opened.
    pub async fn connection_secrets(
        &self,
        sealer: &Sealer,
        email: &str,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            ", refresh_token_sealed, access_token_sealed FROM google_connections WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let refresh: Vec<u8> = row.try_get("refresh_token_sealed")?;
        let access = opt_bytes(&row, "access_token_sealed")?;
        Ok(Some(ConnectionRecord {
            connection: connection_from_row(&row)?,
            refresh_token: sealer.open_secret(&refresh_purpose(email), &refresh)?,
            access_token: access
                .map(|a| sealer.open_secret(&access_purpose(email), &a))
                .transpose()?,
        }))
    }

    /// Stores a fresh consent, replacing whatever this account had.
    pub async fn save_connection(
        &self,
        sealer: &Sealer,
        new: &NewConnection<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO google_connections (email, client_id, refresh_token_sealed, access_token_sealed, access_expires_at, \
             refresh_expires_at, scope, status, status_reason, status_at, connected_at, last_refresh_at, last_error, last_error_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'valid', NULL, $8, $8, $8, NULL, NULL) \
             ON CONFLICT (email) DO UPDATE SET client_id = $2, refresh_token_sealed = $3, access_token_sealed = $4, \
             access_expires_at = $5, refresh_expires_at = $6, scope = $7, status = 'valid', status_reason = NULL, \
             status_at = $8, connected_at = $8, last_refresh_at = $8, last_error = NULL, last_error_at = NULL",
        )
        .bind(new.email)
        .bind(new.client_id)
        .bind(sealer.seal_secret(&refresh_purpose(new.email), new.refresh_token))
        .bind(sealer.seal_secret(&access_purpose(new.email), new.access_token))
        .bind(new.access_expires_at)
        .bind(new.refresh_expires_at)
        .bind(new.scope)
        .bind(now)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    /// A refreshed access token; the connection is good again.
    pub async fn save_access_token(
        &self,
        sealer: &Sealer,
        email: &str,
        token: &SecretString,
        expires_at: Timestamp,
        refresh_expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE google_connections SET access_token_sealed = $1, access_expires_at = $2, \
             refresh_expires_at = COALESCE($3, refresh_expires_at), last_refresh_at = $4, \
             status = 'valid', status_reason = NULL, status_at = $4 WHERE email = $5",
        )
        .bind(sealer.seal_secret(&access_purpose(email), token))
        .bind(expires_at)
        .bind(refresh_expires_at)
        .bind(now)
        .bind(email)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    /// A login with the current token worked: the badge may say so.
    pub async fn mark_connection_valid(
        &self,
        email: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE google_connections SET status = 'valid', status_reason = NULL, status_at = $1 WHERE email = $2",
        )
        .bind(now)
        .bind(email)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    /// Google refused the tokens for good: a human must reconnect.
    pub async fn mark_reconnect_needed(
        &self,
        email: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE google_connections SET status = 'reconnect', status_reason = $1, status_at = $2, \
             access_token_sealed = NULL, access_expires_at = NULL WHERE email = $3",
        )
        .bind(reason)
        .bind(now)
        .bind(email)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    /// A temporary failure (Google unreachable, 5xx): remembered, status unchanged.
    pub async fn note_connection_error(
        &self,
        email: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE google_connections SET last_error = $1, last_error_at = $2 WHERE email = $3",
        )
        .bind(error)
        .bind(now)
        .bind(email)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    pub async fn delete_connection(&self, email: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("DELETE FROM google_connections WHERE email = $1")
                .bind(email)
                .execute(self.writes())
                .await?
                .rows_affected()
                == 1,
        )
    }
}
