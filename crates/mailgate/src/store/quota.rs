//! The daily limit's rows: sends recorded per account and hour (`account_sends`, written with
//! each settlement), what each instance holds (`quota_holds`: sends it reserved and has not
//! used, plus sends on their way whose settlement it has not seen), and Gmail's last "quota
//! exceeded" (`quota_blocks`).
//!
//! An instance sends only what it reserved, and a reservation never lets recorded plus held
//! sends pass the limit; so the limit holds exactly, however many instances send. A hold is
//! written whole at each reservation and each release, never counted down per message: a send
//! settled since is then counted twice (in its hour and in the hold) until its instance next
//! writes its hold, which errs on the side of the limit and spares every settlement a
//! statement. Reservations come in blocks, so the database is asked once per block.

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
    /// What the asking instance held before the grant: unused sends and sends on their way.
    pub held_here: i64,
    /// What other instances hold.
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

    /// Reserves up to `want` of `account`'s sends for `owner`, which holds `holding` now (sends
    /// reserved and unused, and sends on their way), so that sends recorded and held by every
    /// instance stay within `limit`; `owner`'s hold becomes `holding` plus the grant. One
    /// reservation at a time per account: a transaction-scoped advisory lock on PostgreSQL, the
    /// single writer on SQLite.
    pub async fn reserve_sends(
        &self,
        account: &str,
        owner: &str,
        holding: i64,
        want: i64,
        limit: i64,
        now: Timestamp,
    ) -> Result<Reservation, StoreError> {
        let mut tx = self.write_transaction().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("quota:{account}"))
                .execute(&mut *tx)
                .await?;
        }
        // One statement, so one snapshot: a settlement committing between two reads could
        // leave its send in neither.
        let row = sqlx::query(
            "SELECT (SELECT CAST(COALESCE(SUM(sent), 0) AS BIGINT) FROM account_sends WHERE account = $1 AND hour >= $3) AS n, \
             (SELECT MIN(hour) FROM account_sends WHERE account = $1 AND hour >= $3) AS oldest, \
             (SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) FROM quota_holds WHERE account = $1 AND owner <> $2) AS others, \
             (SELECT MAX(blocked_until) FROM quota_blocks WHERE account = $1) AS blocked_until",
        )
        .bind(account)
        .bind(owner)
        .bind(now / 3600 - 23)
        .fetch_one(&mut *tx)
        .await?;
        let (sent, frees) = window(&row)?;
        let others: i64 = row.try_get("others")?;
        let blocked_until = opt_i64(&row, "blocked_until")?.filter(|until| *until > now);
        let granted = match blocked_until {
            Some(_) => 0,
            None => (limit - sent - holding - others).clamp(0, want.max(0)),
        };
        write_hold(&mut tx, account, owner, holding + granted).await?;
        tx.commit().await?;
        Ok(Reservation {
            granted,
            sent,
            held_here: holding,
            held_elsewhere: others,
            frees,
            blocked_until,
        })
    }

    /// `owner` gives back the sends it reserved and will not use: its hold becomes `holding`,
    /// the sends still on their way.
    pub async fn release_sends(
        &self,
        account: &str,
        owner: &str,
        holding: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        write_hold(&mut tx, account, owner, holding).await?;
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

/// A send recorded at settlement, inside the settlement's transaction, in its hour.
pub(super) async fn record_send(
    conn: &mut sqlx::AnyConnection,
    account: &str,
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
    Ok(())
}

/// `owner`'s hold on `account`, written whole (no row for nothing held).
async fn write_hold(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account: &str,
    owner: &str,
    held: i64,
) -> Result<(), sqlx::Error> {
    if held > 0 {
        sqlx::query(
            "INSERT INTO quota_holds (account, owner, held) VALUES ($1, $2, $3) \
             ON CONFLICT (account, owner) DO UPDATE SET held = $3",
        )
        .bind(account)
        .bind(owner)
        .bind(held)
        .execute(&mut **tx)
        .await?;
    } else {
        sqlx::query("DELETE FROM quota_holds WHERE account = $1 AND owner = $2")
            .bind(account)
            .bind(owner)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

const SENT_IN_WINDOW: &str = "SELECT CAST(COALESCE(SUM(sent), 0) AS BIGINT) AS n, MIN(hour) AS oldest \
     FROM account_sends WHERE account = $1 AND hour >= $2";

fn window(row: &sqlx::any::AnyRow) -> Result<(i64, Option<Timestamp>), StoreError> {
    let sent: i64 = row.try_get("n")?;
    let frees = opt_i64(row, "oldest")?.map(|hour| (hour + 24) * 3600);
    Ok((sent, frees))
}
