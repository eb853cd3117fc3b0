//! Password attempts per budget, shared by every instance: an attacker spreading guesses over
//! the instances behind a load balancer meets one budget, not one per instance. Each attempt is
//! reserved (pending) before its password is checked, so concurrent guesses count at once; it
//! then becomes a failure, or goes with its budget's failures on a success. Which attempts may
//! go is decided by the caller (`app/sign_in_limits.rs`), inside the reservation's transaction.

use sqlx::Row;

use super::{Backend, Store, StoreError};
use crate::clock::Timestamp;

/// A pending attempt older than this counts as a failure: its instance died mid-check (a check
/// takes well under a second).
const PENDING_FOR_AT_MOST: Timestamp = 60;

/// One budget's recent attempts, as the decision sees them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BudgetAttempts {
    /// When each failure happened, oldest first.
    pub failures: Vec<Timestamp>,
    /// Attempts being checked now.
    pub in_flight: u32,
}

impl Store {
    /// Reserves one attempt in each of `budgets` if `decide`, shown their attempts after
    /// `since`, allows it; returns the reserved rows. One reservation at a time among every
    /// instance (an advisory lock on PostgreSQL, the single writer on SQLite), so two guesses
    /// cannot both take a budget's last attempt.
    pub async fn reserve_attempts<R>(
        &self,
        budgets: &[String],
        since: Timestamp,
        now: Timestamp,
        decide: impl FnOnce(&[BudgetAttempts]) -> Result<(), R>,
    ) -> Result<Result<Vec<i64>, R>, StoreError> {
        let mut tx = self.write_transaction().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('sign-in attempts', 0))")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM sign_in_attempts WHERE at <= $1")
            .bind(since)
            .execute(&mut *tx)
            .await?;
        let mut seen = Vec::with_capacity(budgets.len());
        for budget in budgets {
            let rows = sqlx::query(
                "SELECT at, pending FROM sign_in_attempts WHERE budget = $1 ORDER BY at, id",
            )
            .bind(budget)
            .fetch_all(&mut *tx)
            .await?;
            let mut attempts = BudgetAttempts::default();
            for row in &rows {
                let at: Timestamp = row.try_get("at")?;
                let pending: i64 = row.try_get("pending")?;
                if pending != 0 && at > now - PENDING_FOR_AT_MOST {
                    attempts.in_flight += 1;
                } else {
                    attempts.failures.push(at);
                }
            }
            seen.push(attempts);
        }
        if let Err(refusal) = decide(&seen) {
            tx.rollback().await?;
            return Ok(Err(refusal));
        }
        let mut ids = Vec::with_capacity(budgets.len());
        for budget in budgets {
            let row = sqlx::query(
                "INSERT INTO sign_in_attempts (budget, at, pending) VALUES ($1, $2, 1) RETURNING id",
            )
            .bind(budget)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(row.try_get("id")?);
        }
        tx.commit().await?;
        Ok(Ok(ids))
    }

    /// How reserved attempts ended: a failure stays (at `now`) until it leaves the window; a
    /// success clears its budgets' failures.
    pub async fn settle_attempts(
        &self,
        reserved: &[(i64, String)],
        succeeded: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        for (id, budget) in reserved {
            if succeeded {
                sqlx::query(
                    "DELETE FROM sign_in_attempts WHERE budget = $1 AND (pending = 0 OR id = $2)",
                )
                .bind(budget)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query("UPDATE sign_in_attempts SET pending = 0, at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Failures in `budget` after `since` (the relay's logins, which need no reservation: a
    /// wrong one costs a keyed hash, not an argon2 verify).
    pub async fn failures_since(&self, budget: &str, since: Timestamp) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM sign_in_attempts WHERE budget = $1 AND at > $2 AND pending = 0",
        )
        .bind(budget)
        .bind(since)
        .fetch_one(self.pool())
        .await?
        .try_get("n")?)
    }

    /// Records a failure in `budget`, and forgets every attempt up to `since`.
    pub async fn record_failure(
        &self,
        budget: &str,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        sqlx::query("DELETE FROM sign_in_attempts WHERE at <= $1")
            .bind(since)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO sign_in_attempts (budget, at, pending) VALUES ($1, $2, 0)")
            .bind(budget)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
