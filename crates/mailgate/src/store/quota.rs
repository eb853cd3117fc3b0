//! The daily limit's rows: sends recorded per account and hour (`account_sends`, written with
//! each settlement), sends reserved by each instance and not yet recorded (`quota_holds`), and
//! Gmail's last "quota exceeded" (`quota_blocks`).
//!
//! An instance sends only what it reserved, and a reservation never lets recorded plus reserved
//! sends pass the limit; so the limit holds exactly, however many instances send. Reservations
//! are taken in blocks, so the database is asked once per block, not once per message.

use sqlx::Row;

use super::{Backend, Store, StoreError, opt_i64};
use crate::clock::Timestamp;

/// What a reservation got, and what it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Sends now reserved for the asking instance (0 to what it asked).
    pub granted: i64,
    /// Sends recorded in the last 24 hours.
    pub sent: i64,
    /// Sends the asking instance holds reserved (taken by messages on their way, or not yet).
    pub held_here: i64,
    /// Sends other instances hold reserved.
    pub held_elsewhere: i64,
    /// When the oldest recorded hour leaves the window.
    pub frees: Option<Timestamp>,
    /// Gmail said "quota exceeded": nothing goes before then.
    pub blocked_until: Option<Timestamp>,
}

impl Store {
    /// Messages `account` sent in the 24 hours before `now`, and when the oldest of those hours
    /// leaves the window.
    pub async fn sends_in_window(
        &self,
        account: &str,
        now: Timestamp,
    ) -> Result<(i64, Option<Timestamp>), StoreError> {
        let row = sqlx::query(SENT_IN_WINDOW)
            .bind(account)
            .bind(now / 3600 - 23)
            .fetch_one(self.pool())
            .await?;
        window(&row)
    }

    /// Reserves up to `want` of `account`'s sends for `owner`, so that sends recorded and held
    /// by every instance stay within `limit`. One reservation at a time per account: a
    /// transaction-scoped advisory lock on PostgreSQL, the single writer on SQLite.
    pub async fn reserve_sends(
        &self,
        account: &str,
        owner: &str,
        want: i64,
        limit: i64,
        now: Timestamp,
    ) -> Result<Reservation, StoreError> {
        let mut tx = self.writes().begin().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("quota:{account}"))
                .execute(&mut *tx)
                .await?;
        }
        // One statement, so one snapshot: a settlement committing between two reads would
        // leave its send in neither the sent count nor the holds.
        let row = sqlx::query(
            "SELECT (SELECT CAST(COALESCE(SUM(sent), 0) AS BIGINT) FROM account_sends WHERE account = $1 AND hour >= $3) AS n, \
             (SELECT MIN(hour) FROM account_sends WHERE account = $1 AND hour >= $3) AS oldest, \
             (SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) FROM quota_holds WHERE account = $1 AND owner = $2) AS mine, \
             (SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) FROM quota_holds WHERE account = $1 AND owner <> $2) AS others, \
             (SELECT MAX(blocked_until) FROM quota_blocks WHERE account = $1) AS blocked_until",
        )
        .bind(account)
        .bind(owner)
        .bind(now / 3600 - 23)
        .fetch_one(&mut *tx)
        .await?;
        let (sent, frees) = window(&row)?;
        let (mine, others): (i64, i64) = (row.try_get("mine")?, row.try_get("others")?);
        let blocked_until = opt_i64(&row, "blocked_until")?.filter(|until| *until > now);
        let granted = match blocked_until {
            Some(_) => 0,
            None => (limit - sent - mine - others).clamp(0, want.max(0)),
        };
        if granted > 0 {
            sqlx::query(
                "INSERT INTO quota_holds (account, owner, held) VALUES ($1, $2, $3) \
                 ON CONFLICT (account, owner) DO UPDATE SET held = quota_holds.held + $3",
            )
            .bind(account)
            .bind(owner)
            .bind(granted)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Reservation {
            granted,
            sent,
            held_here: mine,
            held_elsewhere: others,
            frees,
            blocked_until,
        })
    }

    /// Gives back `unused` reserved sends that `owner` will not make.
    pub async fn release_sends(
        &self,
        account: &str,
        owner: &str,
        unused: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writes().begin().await?;
        sqlx::query("UPDATE quota_holds SET held = held - $3 WHERE account = $1 AND owner = $2")
            .bind(account)
            .bind(owner)
            .bind(unused)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM quota_holds WHERE account = $1 AND owner = $2 AND held <= 0")
            .bind(account)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gmail said `account` is over its daily quota: no instance sends for it before `until`.
    pub async fn block_sends(&self, account: &str, until: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO quota_blocks (account, blocked_until) VALUES ($1, $2) ON CONFLICT (account) \
             DO UPDATE SET blocked_until = CASE WHEN quota_blocks.blocked_until > $2 THEN quota_blocks.blocked_until ELSE $2 END",
        )
        .bind(account)
        .bind(until)
        .execute(self.writes())
        .await?;
        Ok(())
    }
}

/// A send recorded at settlement, inside the settlement's transaction: counted in its hour,
/// and no longer held by the instance that reserved it.
pub(super) async fn record_send(
    conn: &mut sqlx::AnyConnection,
    account: &str,
    owner: &str,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO account_sends (account, hour, sent) VALUES ($1, $2, 1) \
         ON CONFLICT (account, hour) DO UPDATE SET sent = account_sends.sent + 1",
    )
    .bind(account)
    .bind(now / 3600)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE quota_holds SET held = held - 1 WHERE account = $1 AND owner = $2 AND held > 0",
    )
    .bind(account)
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

const SENT_IN_WINDOW: &str = "SELECT CAST(COALESCE(SUM(sent), 0) AS BIGINT) AS n, MIN(hour) AS oldest \
     FROM account_sends WHERE account = $1 AND hour >= $2";

fn window(row: &sqlx::any::AnyRow) -> Result<(i64, Option<Timestamp>), StoreError> {
    let sent: i64 = row.try_get("n")?;
    let frees = opt_i64(row, "oldest")?.map(|hour| (hour + 24) * 3600);
    Ok((sent, frees))
}
