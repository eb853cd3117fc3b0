//! Who may try a password now, decided before the ~19 MiB argon2 verify starts.
//!
//! Each attempt is reserved before it is verified, so concurrent guesses count at once rather
//! than when they finish. Three budgets apply:
//! - per client address: [`MAX_FAILURES`] in [`WINDOW`], counting attempts still in flight;
//! - per account: a delay that doubles with each failure past the first few, one attempt in
//!   flight at a time, so knowing the admin's email slows guessing but never locks them out;
//! - per browser that signed in before (a signed device record): its own budget instead of the
//!   address's and the account's, so an attacker flooding the account does not keep the real
//!   admin out.
//!
//! And at most [`MAX_CONCURRENT_VERIFIES`] verifies run at all; beyond that the answer is "busy"
//! at once, which bounds memory whatever the number of addresses. Every table is capped at
//! [`MAX_ENTRIES`] entries.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::Timestamp;

pub const WINDOW: i64 = 15 * 60;
pub const MAX_FAILURES: usize = 5;
/// Failures on one account before each further attempt waits.
const FREE_ACCOUNT_FAILURES: u32 = 3;
/// The longest an account's next attempt waits.
const MAX_ACCOUNT_DELAY: i64 = 15 * 60;
/// Argon2 verifies at once; each holds ~19 MiB.
pub const MAX_CONCURRENT_VERIFIES: usize = 4;
const MAX_ENTRIES: usize = 10_000;

/// Why an attempt may not be verified now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Try again in this many seconds.
    Limited(i64),
    /// Too many verifies at once.
    Busy,
}

/// Who is trying: the keys their budgets are kept under.
pub struct Applicant<'a> {
    /// The client address, IPv6 reduced to its /64.
    pub address: &'a str,
    pub account: &'a str,
    /// Set when the browser carries a valid record of an earlier sign-in to this account.
    pub device: Option<&'a str>,
}

/// A reserved attempt. [`Reservation::settle`] records how it ended; dropped unsettled (the
/// client went away mid-verify) it counts as a failure, so no budget is left reserved for good.
pub struct Reservation {
    tables: Arc<Mutex<Tables>>,
    keys: Vec<(Table, String)>,
    at: Timestamp,
    settled: bool,
}

impl Reservation {
    /// Records how the attempt ended. A success clears its budgets.
    pub fn settle(mut self, succeeded: bool, now: Timestamp) {
        self.settled = true;
        settle(&self.tables, &self.keys, succeeded, now);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            settle(&self.tables, &self.keys, false, self.at);
        }
    }
}

/// The permit to run one verify; move it into the blocking task so the cap holds even when the
/// request that started the verify is gone.
pub type VerifyPermit = OwnedSemaphorePermit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Address,
    Account,
    Device,
}

#[derive(Default)]
struct Budget {
    failures: VecDeque<Timestamp>,
    in_flight: u32,
    last: Timestamp,
}

impl Budget {
    fn forget_before(&mut self, cutoff: Timestamp) {
        while self.failures.front().is_some_and(|t| *t <= cutoff) {
            self.failures.pop_front();
        }
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && self.failures.is_empty()
    }

    /// Seconds until a windowed budget (address, device) allows one more attempt.
    fn window_wait(&self, now: Timestamp) -> Option<i64> {
        let used = self.failures.len() + self.in_flight as usize;
        (used >= MAX_FAILURES).then(|| {
            self.failures
                .front()
                .map_or(1, |first| (first + WINDOW - now).max(1))
        })
    }

    /// Seconds until the account allows one more attempt.
    fn account_wait(&self, now: Timestamp) -> Option<i64> {
        if self.in_flight > 0 {
            return Some(1);
        }
        let failures = u32::try_from(self.failures.len()).unwrap_or(u32::MAX);
        let over = failures.checked_sub(FREE_ACCOUNT_FAILURES)?;
        let delay = 1_i64
            .checked_shl(over)
            .unwrap_or(MAX_ACCOUNT_DELAY)
            .min(MAX_ACCOUNT_DELAY);
        let at = self.failures.back().copied().unwrap_or(now) + delay;
        (at > now).then(|| at - now)
    }
}

#[derive(Default)]
struct Tables {
    address: HashMap<String, Budget>,
    account: HashMap<String, Budget>,
    device: HashMap<String, Budget>,
}

impl Tables {
    fn table(&mut self, table: Table) -> &mut HashMap<String, Budget> {
        match table {
            Table::Address => &mut self.address,
            Table::Account => &mut self.account,
            Table::Device => &mut self.device,
        }
    }
}

pub struct SignInLimits {
    tables: Arc<Mutex<Tables>>,
    verifies: Arc<Semaphore>,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            tables: Arc::default(),
            verifies: Arc::new(Semaphore::new(MAX_CONCURRENT_VERIFIES)),
        }
    }
}

impl SignInLimits {
    /// Reserves one attempt for `who`, or says why not. Nothing awaits inside: the decision and
    /// the reservation are one step under the lock.
    pub fn reserve(
        &self,
        who: &Applicant<'_>,
        now: Timestamp,
    ) -> Result<(Reservation, VerifyPermit), Refusal> {
        let keys: Vec<(Table, String)> = match who.device {
            Some(device) => vec![(Table::Device, device.to_string())],
            None => vec![
                (Table::Address, who.address.to_string()),
                (Table::Account, who.account.to_string()),
            ],
        };
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = None;
        for (table, key) in &keys {
            if let Some(budget) = tables.table(*table).get_mut(key) {
                budget.forget_before(now - WINDOW);
                let this = match table {
                    Table::Account => budget.account_wait(now),
                    Table::Address | Table::Device => budget.window_wait(now),
                };
                wait = wait.max(this);
            }
        }
        if let Some(seconds) = wait {
            return Err(Refusal::Limited(seconds));
        }
        let permit = Arc::clone(&self.verifies)
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)?;
        for (table, key) in &keys {
            let entries = tables.table(*table);
            if !entries.contains_key(key) && !make_room(entries, now) {
                return Err(Refusal::Busy);
            }
        }
        for (table, key) in &keys {
            let budget = tables.table(*table).entry(key.clone()).or_default();
            budget.in_flight += 1;
            budget.last = now;
        }
        drop(tables);
        Ok((
            Reservation {
                tables: Arc::clone(&self.tables),
                keys,
                at: now,
                settled: false,
            },
            permit,
        ))
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        let tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        tables.address.len() + tables.account.len() + tables.device.len()
    }
}

fn settle(tables: &Mutex<Tables>, keys: &[(Table, String)], succeeded: bool, now: Timestamp) {
    let mut tables = tables.lock().unwrap_or_else(|p| p.into_inner());
    for (table, key) in keys {
        let entries = tables.table(*table);
        let Some(budget) = entries.get_mut(key) else {
            continue;
        };
        budget.in_flight = budget.in_flight.saturating_sub(1);
        if succeeded {
            budget.failures.clear();
        } else {
            budget.failures.push_back(now);
        }
        if budget.idle() {
            entries.remove(key);
        }
    }
}

/// Frees a slot in a full table: first what has expired, then the longest-idle entry with
/// nothing in flight. False when every entry is in flight (then the table is busy).
fn make_room(entries: &mut HashMap<String, Budget>, now: Timestamp) -> bool {
    if entries.len() < MAX_ENTRIES {
        return true;
    }
    entries.retain(|_, budget| {
        budget.forget_before(now - WINDOW);
        !budget.idle()
    });
    if entries.len() < MAX_ENTRIES {
        return true;
    }
    let oldest = entries
        .iter()
        .filter(|(_, b)| b.in_flight == 0)
        .min_by_key(|(_, b)| b.last)
        .map(|(k, _)| k.clone());
    oldest.is_some_and(|key| entries.remove(&key).is_some())
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

    #[test]
    fn concurrent_attempts_count_before_they_finish() {
        let limits = SignInLimits::default();
        let held: Vec<_> = (0..MAX_CONCURRENT_VERIFIES)
            .map(|i| {
                let who = Applicant {
                    address: "10.0.0.1",
                    account: if i == 0 { "a@x.co" } else { "b@x.co" },
                    device: None,
                };
                limits.reserve(&who, 1000)
            })
            .collect();
        assert!(held[0].is_ok());
        assert!(held[1].is_ok());
        // The second attempt on one account waits while the first is in flight.
        assert_eq!(held[2].as_ref().err(), Some(&Refusal::Limited(1)));
        let other_account = Applicant {
            address: "10.0.0.2",
            account: "c@x.co",
            device: None,
        };
        let busy: Vec<_> = (0..MAX_CONCURRENT_VERIFIES)
            .map(|i| {
                limits.reserve(
                    &Applicant {
                        address: "10.0.0.9",
                        account: ["d", "e", "f", "g"][i],
                        device: None,
                    },
                    1000,
                )
            })
            .collect();
        assert!(busy.iter().any(|r| matches!(r, Err(Refusal::Busy))));
        drop(busy);
        drop(held);
        assert!(limits.reserve(&other_account, 1000).is_ok());
    }

    #[test]
    fn an_attempt_dropped_mid_verify_counts_and_frees_the_account() {
        let limits = SignInLimits::default();
        let (r, permit) = limits.reserve(&from("10.0.0.1"), 1000).unwrap();
        drop(r);
        drop(permit);
        let (r, _permit) = limits
            .reserve(&from("10.0.0.1"), 1001)
            .expect("not stuck in flight");
        r.settle(true, 1001);
        assert_eq!(limits.entries(), 0, "a success clears the budgets");
    }

    #[test]
    fn an_address_gets_five_attempts_per_window_counting_those_in_flight() {
        let limits = SignInLimits::default();
        for i in 0..MAX_FAILURES {
            let who = Applicant {
                address: "10.0.0.1",
                account: &format!("user{i}@x.co"),
                device: None,
            };
            let (r, _permit) = limits.reserve(&who, 1000).unwrap();
            r.settle(false, 1000);
        }
        assert_eq!(
            limits.reserve(&from("10.0.0.1"), 1010).err(),
            Some(Refusal::Limited(WINDOW - 10))
        );
        assert!(limits.reserve(&from("10.0.0.1"), 1000 + WINDOW).is_ok());
    }

    #[test]
    fn an_account_slows_down_but_its_known_browser_gets_through() {
        let limits = SignInLimits::default();
        let mut now = 1000;
        for i in 0..FREE_ACCOUNT_FAILURES + 3 {
            let address = format!("10.0.1.{i}");
            let (r, _permit) = limits.reserve(&from(&address), now).unwrap();
            r.settle(false, now);
            now += 60;
        }
        // Six failures: the next attempt waits 2^3 s after the last one.
        assert_eq!(
            limits.reserve(&from("10.0.2.1"), now - 60).err(),
            Some(Refusal::Limited(8))
        );
        let known = Applicant {
            device: Some("1.999"),
            ..from("10.0.2.1")
        };
        let (r, _permit) = limits
            .reserve(&known, now - 60)
            .expect("the admin's browser");
        r.settle(true, now - 60);
    }

    #[test]
    fn the_delay_is_capped() {
        let mut budget = Budget::default();
        budget.failures.extend(std::iter::repeat_n(1000, 200));
        assert_eq!(budget.account_wait(1000), Some(MAX_ACCOUNT_DELAY));
    }

    #[test]
    fn memory_is_bounded_whatever_the_number_of_addresses() {
        let limits = SignInLimits::default();
        for i in 0..(MAX_ENTRIES + 500) {
            let address = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            let who = Applicant {
                address: &address,
                account: &address,
                device: None,
            };
            let (r, _permit) = limits.reserve(&who, 1000).unwrap();
            r.settle(false, 1000);
        }
        assert!(limits.entries() <= 2 * MAX_ENTRIES);
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a = address_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = address_key("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(address_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
    }
}
