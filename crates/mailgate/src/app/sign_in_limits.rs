//! Who may try a password now, decided before the ~19 MiB argon2 verify starts.
//!
//! Each attempt is reserved before it is verified, so concurrent guesses count at once rather
//! than when they finish. The budgets live in the database (`store/sign_in_attempts.rs`), so
//! guesses spread over several instances meet the same budgets. Three apply:
//! - per client address: [`MAX_FAILURES`] in [`WINDOW`], counting attempts still in flight;
//! - per account: a delay that doubles with each failure past the first few, one attempt in
//!   flight at a time, so knowing the admin's email slows guessing but never locks them out;
//! - per browser that signed in before (a signed device record): its own budget instead of the
//!   address's and the account's, so an attacker flooding the account does not keep the real
//!   admin out.
//!
//! And at most [`MAX_CONCURRENT_VERIFIES`] verifies run at once in each instance; beyond that
//! the answer is "busy" at once, before the database is asked, which bounds memory and the
//! database's work whatever the number of addresses.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::Timestamp;
use crate::store::{BudgetAttempts, Store, StoreError};

pub const WINDOW: i64 = 15 * 60;
pub const MAX_FAILURES: usize = 5;
/// Failures on one account before each further attempt waits.
const FREE_ACCOUNT_FAILURES: u32 = 3;
/// The longest an account's next attempt waits.
const MAX_ACCOUNT_DELAY: i64 = 15 * 60;
/// Argon2 verifies at once; each holds ~19 MiB.
pub const MAX_CONCURRENT_VERIFIES: usize = 4;

/// Why an attempt may not be verified now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Try again in this many seconds.
    Limited(i64),
    /// Too many verifies at once.
    Busy,
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("{0:?}")]
    Refused(Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who is trying: the keys their budgets are kept under.
pub struct Applicant<'a> {
    /// The client address, IPv6 reduced to its /64.
    pub address: &'a str,
    pub account: &'a str,
    /// Set when the browser carries a valid record of an earlier sign-in to this account.
    pub device: Option<&'a str>,
}

impl Applicant<'_> {
    /// The budgets this attempt is counted in, and how each is judged.
    fn budgets(&self) -> Vec<(Kind, String)> {
        match self.device {
            Some(device) => vec![(Kind::Windowed, format!("device:{device}"))],
            None => vec![
                (Kind::Windowed, format!("address:{}", self.address)),
                (Kind::Account, format!("account:{}", self.account)),
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// [`MAX_FAILURES`] per [`WINDOW`] (an address, a known browser).
    Windowed,
    /// A doubling delay, one attempt at a time (an account).
    Account,
}

/// A reserved attempt. [`Reservation::settle`] records how it ended; dropped unsettled (the
/// client went away mid-verify) it counts as a failure, so no budget is left reserved for good.
pub struct Reservation {
    store: Store,
    rows: Vec<(i64, String)>,
    at: Timestamp,
    settled: bool,
}

impl Reservation {
    /// Records how the attempt ended. A success clears its budgets.
    pub async fn settle(mut self, succeeded: bool, now: Timestamp) {
        self.settled = true;
        if let Err(e) = self.store.settle_attempts(&self.rows, succeeded, now).await {
            tracing::error!("cannot record how a sign-in ended: {e}");
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            let (store, rows, at) = (self.store.clone(), std::mem::take(&mut self.rows), self.at);
            tokio::spawn(async move {
                if let Err(e) = store.settle_attempts(&rows, false, at).await {
                    tracing::error!("cannot record an abandoned sign-in: {e}");
                }
            });
        }
    }
}

/// The permit to run one verify; move it into the blocking task so the cap holds even when the
/// request that started the verify is gone.
pub type VerifyPermit = OwnedSemaphorePermit;

/// Seconds until a windowed budget (address, device) allows one more attempt.
fn window_wait(budget: &BudgetAttempts, now: Timestamp) -> Option<i64> {
    let used = budget.failures.len() + budget.in_flight as usize;
    (used >= MAX_FAILURES).then(|| {
        budget
            .failures
            .first()
            .map_or(1, |first| (first + WINDOW - now).max(1))
    })
}

/// Seconds until the account allows one more attempt.
fn account_wait(budget: &BudgetAttempts, now: Timestamp) -> Option<i64> {
    if budget.in_flight > 0 {
        return Some(1);
    }
    let failures = u32::try_from(budget.failures.len()).unwrap_or(u32::MAX);
    let over = failures.checked_sub(FREE_ACCOUNT_FAILURES)?;
    let delay = 1_i64
        .checked_shl(over)
        .unwrap_or(MAX_ACCOUNT_DELAY)
        .min(MAX_ACCOUNT_DELAY);
    let at = budget.failures.last().copied().unwrap_or(now) + delay;
    (at > now).then(|| at - now)
}

/// The longest any of the budgets says to wait, if any does.
fn wait(kinds: &[Kind], budgets: &[BudgetAttempts], now: Timestamp) -> Option<i64> {
    kinds
        .iter()
        .zip(budgets)
        .filter_map(|(kind, budget)| match kind {
            Kind::Windowed => window_wait(budget, now),
            Kind::Account => account_wait(budget, now),
        })
        .max()
}

pub struct SignInLimits {
    verifies: Arc<Semaphore>,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            verifies: Arc::new(Semaphore::new(MAX_CONCURRENT_VERIFIES)),
        }
    }
}

impl SignInLimits {
    /// Reserves one attempt for `who`, or says why not. The cap on verifies answers first, so
    /// a flood costs the database nothing; then the decision and the reservation are one
    /// transaction.
    pub async fn reserve(
        &self,
        store: &Store,
        who: &Applicant<'_>,
        now: Timestamp,
    ) -> Result<(Reservation, VerifyPermit), ReserveError> {
        let permit = Arc::clone(&self.verifies)
            .try_acquire_owned()
            .map_err(|_| ReserveError::Refused(Refusal::Busy))?;
        let (kinds, keys): (Vec<Kind>, Vec<String>) = who.budgets().into_iter().unzip();
        let ids = store
            .reserve_attempts(&keys, now - WINDOW, now, |budgets| {
                match wait(&kinds, budgets, now) {
                    Some(seconds) => Err(Refusal::Limited(seconds)),
                    None => Ok(()),
                }
            })
            .await?
            .map_err(ReserveError::Refused)?;
        Ok((
            Reservation {
                store: store.clone(),
                rows: ids.into_iter().zip(keys).collect(),
                at: now,
                settled: false,
            },
            permit,
        ))
    }
}

/// The address budget's key: IPv6 clients get a whole /64 each, as one host usually does.
pub fn address_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(address: &str) -> Applicant<'_> {
        Applicant {
            address,
            account: "admin@example.com",
            device: None,
        }
    }

    async fn reserve(
        limits: &SignInLimits,
        store: &Store,
        who: &Applicant<'_>,
        now: Timestamp,
    ) -> Result<(Reservation, VerifyPermit), Refusal> {
        limits.reserve(store, who, now).await.map_err(|e| match e {
            ReserveError::Refused(r) => r,
            ReserveError::Store(e) => panic!("{e}"),
        })
    }

    #[tokio::test]
    async fn concurrent_attempts_count_before_they_finish() {
        let store = Store::scratch().await;
        let limits = SignInLimits::default();
        let mut held = Vec::new();
        for i in 0..3 {
            let who = Applicant {
                address: "10.0.0.1",
                account: if i == 0 { "a@x.co" } else { "b@x.co" },
                device: None,
            };
            held.push(reserve(&limits, &store, &who, 1000).await);
        }
        assert!(held[0].is_ok());
        assert!(held[1].is_ok());
        // The second attempt on one account waits while the first is in flight.
        assert_eq!(held[2].as_ref().err(), Some(&Refusal::Limited(1)));
        let mut busy = Vec::new();
        for account in ["d", "e", "f", "g"] {
            let who = Applicant {
                address: "10.0.0.9",
                account,
                device: None,
            };
            busy.push(reserve(&limits, &store, &who, 1000).await);
        }
        assert!(busy.iter().any(|r| matches!(r, Err(Refusal::Busy))));
        drop(busy);
        drop(held);
        let other_account = Applicant {
            address: "10.0.0.2",
            account: "c@x.co",
            device: None,
        };
        assert!(reserve(&limits, &store, &other_account, 1000).await.is_ok());
    }

    #[tokio::test]
    async fn two_instances_share_the_budgets() {
        let store = Store::scratch().await;
        let (one, two) = (SignInLimits::default(), SignInLimits::default());
        for i in 0..MAX_FAILURES {
            let limits = if i % 2 == 0 { &one } else { &two };
            let who = Applicant {
                address: "10.0.0.1",
                account: &format!("user{i}@x.co"),
                device: None,
            };
            let (r, _permit) = reserve(limits, &store, &who, 1000).await.unwrap();
            r.settle(false, 1000).await;
        }
        assert_eq!(
            reserve(&one, &store, &from("10.0.0.1"), 1010).await.err(),
            Some(Refusal::Limited(WINDOW - 10))
        );
        assert_eq!(
            reserve(&two, &store, &from("10.0.0.1"), 1010).await.err(),
            Some(Refusal::Limited(WINDOW - 10))
        );
    }

    #[tokio::test]
    async fn an_attempt_dropped_mid_verify_counts_and_frees_the_account() {
        let store = Store::scratch().await;
        let limits = SignInLimits::default();
        let (r, permit) = reserve(&limits, &store, &from("10.0.0.1"), 1000)
            .await
            .unwrap();
        let rows = r.rows.clone();
        drop(r);
        drop(permit);
        // The drop records the failure in a task of its own; wait for it to land.
        loop {
            let failed = store.failures_since(&rows[0].1, 0).await.unwrap();
            if failed == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let (r, _permit) = reserve(&limits, &store, &from("10.0.0.1"), 1001)
            .await
            .expect("not stuck in flight");
        r.settle(true, 1001).await;
        for (_, budget) in &rows {
            assert_eq!(
                store.failures_since(budget, 0).await.unwrap(),
                0,
                "a success clears the budgets"
            );
        }
    }

    #[tokio::test]
    async fn an_address_gets_five_attempts_per_window_counting_those_in_flight() {
        let store = Store::scratch().await;
        let limits = SignInLimits::default();
        for i in 0..MAX_FAILURES {
            let who = Applicant {
                address: "10.0.0.1",
                account: &format!("user{i}@x.co"),
                device: None,
            };
            let (r, _permit) = reserve(&limits, &store, &who, 1000).await.unwrap();
            r.settle(false, 1000).await;
        }
        assert_eq!(
            reserve(&limits, &store, &from("10.0.0.1"), 1010)
                .await
                .err(),
            Some(Refusal::Limited(WINDOW - 10))
        );
        assert!(
            reserve(&limits, &store, &from("10.0.0.1"), 1000 + WINDOW)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn an_account_slows_down_but_its_known_browser_gets_through() {
        let store = Store::scratch().await;
        let limits = SignInLimits::default();
        let mut now = 1000;
        for i in 0..FREE_ACCOUNT_FAILURES + 3 {
            let address = format!("10.0.1.{i}");
            let (r, _permit) = reserve(&limits, &store, &from(&address), now)
                .await
                .unwrap();
            r.settle(false, now).await;
            now += 60;
        }
        // Six failures: the next attempt waits 2^3 s after the last one.
        assert_eq!(
            reserve(&limits, &store, &from("10.0.2.1"), now - 60)
                .await
                .err(),
            Some(Refusal::Limited(8))
        );
        let known = Applicant {
            device: Some("1.999"),
            ..from("10.0.2.1")
        };
        let (r, _permit) = reserve(&limits, &store, &known, now - 60)
            .await
            .expect("the admin's browser");
        r.settle(true, now - 60).await;
    }

    #[test]
    fn the_delay_is_capped() {
        let budget = BudgetAttempts {
            failures: vec![1000; 200],
            in_flight: 0,
        };
        assert_eq!(account_wait(&budget, 1000), Some(MAX_ACCOUNT_DELAY));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a = address_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = address_key("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(address_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
    }
}
