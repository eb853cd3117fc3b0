//! Admin access: no default password. The first start prints a one-time setup link; the CLI can
//! create an admin headless. Passwords are argon2id; sessions are random tokens stored hashed, each
//! with its own CSRF token; failed sign-ins are rate-limited per address and per account.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};

use super::{App, AppError};
use crate::clock::Timestamp;
use crate::crypto::{random_bytes, random_token, token_hash};
use crate::domain::EmailAddress;

pub const SETUP_LINK_LIFETIME: i64 = 3600;
pub const SESSION_LIFETIME: i64 = 12 * 3600;
const MIN_PASSWORD_LEN: usize = 12;
const FAILURE_WINDOW: i64 = 15 * 60;
const MAX_FAILURES: usize = 5;

/// A signed-in admin, as the web layer sees one.
#[derive(Debug, Clone)]
pub struct AdminSession {
    pub admin_id: i64,
    pub email: String,
    pub csrf_token: String,
}

/// What a successful sign-in hands the browser.
pub struct NewSession {
    pub cookie: String,
    pub max_age: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("Wrong email or password.")]
    Wrong,
    #[error("Too many failed sign-ins. Try again in {0} minutes.")]
    Limited(i64),
    #[error(transparent)]
    App(#[from] AppError),
}

/// Failed sign-ins per key (`ip:...`, `email:...`) over a sliding window.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Timestamp>>>,
}

impl LoginLimiter {
    /// Minutes until `keys` may try again, if any of them is over the limit.
    fn blocked(&self, keys: &[String], now: Timestamp) -> Option<i64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| {
                let list = map.get_mut(k)?;
                while list.front().is_some_and(|t| *t <= now - FAILURE_WINDOW) {
                    list.pop_front();
                }
                (list.len() >= MAX_FAILURES).then(|| {
                    list.front()
                        .map_or(1, |first| (first + FAILURE_WINDOW - now + 59) / 60)
                })
            })
            .max()
    }

    fn record_failure(&self, keys: &[String], now: Timestamp) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            map.entry(key.clone()).or_default().push_back(now);
        }
    }

    fn clear(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            map.remove(key);
        }
    }
}

/// Checks a new admin password; the message says what is wrong.
pub fn check_new_password(email: &str, password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!("Use at least {MIN_PASSWORD_LEN} characters."));
    }
    if password.eq_ignore_ascii_case(email) {
        return Err("The password must not be the email address.".into());
    }
    Ok(())
}

async fn hash_password(password: SecretString) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_bytes(16))
            .map_err(|e| AppError::Refused(format!("password salt: {e}")))?;
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::Refused(format!("password hashing: {e}")))
    })
    .await
    .map_err(|e| AppError::Refused(format!("password hashing: {e}")))?
}

async fn verify_password(password: SecretString, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash to verify against when the account does not exist, so a wrong email costs as long as a
/// wrong password and timing does not reveal which admins exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0qGn3BkzgNwzSNVh8TYyqhrm4RCjrXXyRjuiC4RpVbY";

impl App {
    /// The setup link to print at start, while no admin exists. Each call replaces the last link.
    pub async fn setup_link(&self) -> Result<Option<String>, AppError> {
        if self.store.admin_count().await? > 0 {
            return Ok(None);
        }
        let token = random_token();
        self.store
            .replace_setup_token(&token_hash(&token), self.now() + SETUP_LINK_LIFETIME)
            .await?;
        Ok(Some(format!(
            "{}/setup?token={token}",
            self.config.public_base()
        )))
    }

    pub async fn setup_token_valid(&self, token: &str) -> Result<bool, AppError> {
        Ok(self
            .store
            .setup_token_valid(&token_hash(token), self.now())
            .await?)
    }

    fn check_admin(email: &str, password: &SecretString) -> Result<EmailAddress, AppError> {
        let mut errors = crate::domain::FieldErrors::default();
        let address = EmailAddress::parse(email);
        if let Err(e) = &address {
            errors.0.push(("email", e.to_string()));
        }
        if let Err(message) = check_new_password(email, password.expose_secret()) {
            errors.0.push(("password", message));
        }
        match address {
            Ok(a) if errors.is_empty() => Ok(a),
            _ => Err(AppError::Invalid(errors)),
        }
    }

    /// Creates the first admin through the setup link.
    pub async fn create_admin_with_link(
        &self,
        token: &str,
        email: &str,
        password: SecretString,
    ) -> Result<i64, AppError> {
        let address = Self::check_admin(email, &password)?;
        let hash = hash_password(password).await?;
        self.store
            .create_admin_with_setup_token(&token_hash(token), address.as_str(), &hash, self.now())
            .await?
            .ok_or_else(|| {
                AppError::Refused(
                    "This setup link is no longer valid: it expired, was used, or a newer one was printed. Restart mailgate for a new link, or run `mailgate admin create`."
                        .into(),
                )
            })
    }

    /// `mailgate admin create`: headless, no link needed (shell access is the proof).
    pub async fn create_admin(&self, email: &str, password: SecretString) -> Result<i64, AppError> {
        let address = Self::check_admin(email, &password)?;
        let hash = hash_password(password).await?;
        Ok(self
            .store
            .create_admin(address.as_str(), &hash, self.now())
            .await?)
    }

    pub async fn login(
        &self,
        email: &str,
        password: SecretString,
        client_ip: &str,
    ) -> Result<NewSession, LoginError> {
        let now = self.now();
        let email = email.trim().to_ascii_lowercase();
        let keys = [format!("ip:{client_ip}"), format!("email:{email}")];
        if let Some(minutes) = self.logins.blocked(&keys, now) {
            return Err(LoginError::Limited(minutes));
        }
        let admin = self
            .store
            .admin_by_email(&email)
            .await
            .map_err(AppError::from)?;
        let hash = admin
            .as_ref()
            .map_or(DUMMY_HASH.to_string(), |a| a.password_hash.clone());
        let matches = verify_password(password, hash).await;
        let Some(admin) = admin.filter(|_| matches) else {
            self.logins.record_failure(&keys, now);
            return Err(LoginError::Wrong);
        };
        self.logins.clear(&keys);
        let cookie = random_token();
        self.store
            .create_session(
                &token_hash(&cookie),
                admin.id,
                &random_token(),
                now,
                now + SESSION_LIFETIME,
            )
            .await
            .map_err(AppError::from)?;
        Ok(NewSession {
            cookie,
            max_age: SESSION_LIFETIME,
        })
    }

    pub async fn session(&self, cookie: &str) -> Result<Option<AdminSession>, AppError> {
        Ok(self
            .store
            .session(&token_hash(cookie), self.now())
            .await?
            .map(|s| AdminSession {
                admin_id: s.admin_id,
                email: s.admin_email,
                csrf_token: s.csrf_token,
            }))
    }

    pub async fn logout(&self, cookie: &str) -> Result<(), AppError> {
        Ok(self.store.delete_session(&token_hash(cookie)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_five_failures_in_the_window() {
        let limiter = LoginLimiter::default();
        let keys = vec!["ip:1".to_string()];
        for i in 0..5 {
            assert_eq!(limiter.blocked(&keys, 1000 + i), None);
            limiter.record_failure(&keys, 1000 + i);
        }
        assert_eq!(limiter.blocked(&keys, 1010), Some(15));
        assert_eq!(
            limiter.blocked(&keys, 1000 + FAILURE_WINDOW + 5),
            None,
            "the window slides"
        );
    }

    #[test]
    fn dummy_hash_is_a_valid_argon2_hash() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn weak_passwords_are_named() {
        assert!(
            check_new_password("a@b.co", "short")
                .unwrap_err()
                .contains("12 characters")
        );
        assert!(check_new_password("admin@example.com", "ADMIN@example.com").is_err());
        assert!(check_new_password("a@b.co", "a long enough passphrase").is_ok());
    }
}
