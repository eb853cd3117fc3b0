//! The `state` of "Connect your Gmail account": a random nonce, kept here as a hash with who
//! started the round trip, for which server (outgoing or incoming), the PKCE verifier (sealed)
//! and a ten-minute expiry.

use secrecy::SecretString;
use sqlx::Row;

use super::{Store, StoreError, opt_i64};
use crate::clock::Timestamp;
use crate::crypto::Sealer;
use crate::domain::ConnectFor;

pub struct OauthState {
    pub target: ConnectFor,
    pub admin_id: i64,
    pub verifier: SecretString,
}

/// Why a state was refused, or the state itself. Each refusal gets its own explanation.
pub enum StateLookup {
    Unknown,
    /// Expired or used: the server it was for, so the admin can start again from it.
    Expired {
        target: ConnectFor,
    },
    Used {
        target: ConnectFor,
    },
    /// Started by another admin (which server is not theirs to learn).
    Foreign,
    Valid(OauthState),
}

const PURPOSE: &str = "oauth_states.verifier";

impl Store {
    pub async fn create_oauth_state(
        &self,
        sealer: &Sealer,
        nonce_hash: &str,
        state: &OauthState,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        // Old rounds trips are only evidence for "expired" for a while; a day is plenty.
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
            .bind(now - 86_400)
            .execute(self.writes())
            .await?;
        sqlx::query(
            "INSERT INTO oauth_states (nonce_hash, server_kind, server_id, admin_id, verifier_sealed, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(nonce_hash)
        .bind(state.target.kind())
        .bind(state.target.id())
        .bind(state.admin_id)
        .bind(sealer.seal_secret(PURPOSE, &state.verifier))
        .bind(now)
        .bind(expires_at)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    /// When this admin last started connecting this server, and whether Google's answer came back.
    pub async fn latest_oauth_attempt(
        &self,
        target: ConnectFor,
        admin_id: i64,
    ) -> Result<Option<(Timestamp, Option<Timestamp>)>, StoreError> {
        let row = sqlx::query(
            "SELECT created_at, used_at FROM oauth_states \
             WHERE server_kind = $1 AND server_id = $2 AND admin_id = $3 \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(target.kind())
        .bind(target.id())
        .bind(admin_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((r.try_get("created_at")?, opt_i64(&r, "used_at")?)))
            .transpose()
    }

    /// Checks the state and, when it is valid, spends it in the same statement, so two tabs
    /// racing with one callback URL cannot both use it.
    pub async fn take_oauth_state(
        &self,
        sealer: &Sealer,
        nonce_hash: &str,
        admin_id: i64,
        now: Timestamp,
    ) -> Result<StateLookup, StoreError> {
        let row = sqlx::query(
            "SELECT server_kind, server_id, admin_id, verifier_sealed, expires_at, used_at \
             FROM oauth_states WHERE nonce_hash = $1",
        )
        .bind(nonce_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(StateLookup::Unknown);
        };
        let kind: String = row.try_get("server_kind")?;
        let Some(target) = ConnectFor::from_stored(&kind, row.try_get("server_id")?) else {
            return Ok(StateLookup::Unknown);
        };
        if row.try_get::<i64, _>("admin_id")? != admin_id {
            return Ok(StateLookup::Foreign);
        }
        if opt_i64(&row, "used_at")?.is_some() {
            return Ok(StateLookup::Used { target });
        }
        if row.try_get::<i64, _>("expires_at")? <= now {
            return Ok(StateLookup::Expired { target });
        }
        let spent = sqlx::query(
            "UPDATE oauth_states SET used_at = $1 WHERE nonce_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(nonce_hash)
        .execute(self.writes())
        .await?
        .rows_affected();
        if spent != 1 {
            return Ok(StateLookup::Used { target });
        }
        let sealed: Vec<u8> = row.try_get("verifier_sealed")?;
        Ok(StateLookup::Valid(OauthState {
            target,
            admin_id,
            verifier: sealer.open_secret(PURPOSE, &sealed)?,
        }))
    }
}
