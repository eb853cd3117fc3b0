//! Admin access: no default password. The first start prints a one-time setup link; the CLI can
//! create an admin headless. Passwords are argon2id; sessions are random tokens stored hashed, each
//! with its own CSRF token; who may try a password is decided in [`super::sign_in_limits`].

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};

use super::sign_in_limits::{Applicant, Refusal, ReserveError, VerifyPermit};
use super::{App, AppError};
use crate::clock::Timestamp;
use crate::crypto::{random_bytes, random_token, token_hash};
use crate::domain::EmailAddress;

pub const SETUP_LINK_LIFETIME: i64 = 3600;
pub const SESSION_LIFETIME: i64 = 12 * 3600;
/// How long a browser that signed in is recognised at the next sign-in.
pub const DEVICE_LIFETIME: i64 = 30 * 86_400;
const MIN_PASSWORD_LEN: usize = 12;
const DEVICE_PURPOSE: &str = "sign-in device";

/// A signed-in admin, as the web layer sees one.
#[derive(Debug, Clone)]
pub struct AdminSession {
    pub admin_id: i64,
    pub email: String,
    pub csrf_token: String,
}

/// What a successful sign-in hands the browser: its session, and a signed record that this
/// browser signed in to this account, which lets it past the limits an attacker runs up.
pub struct NewSession {
    pub cookie: String,
    pub max_age: i64,
    pub device: String,
}

/// Where a sign-in comes from.
pub struct SignInClient<'a> {
    pub ip: std::net::IpAddr,
    /// The browser's record of an earlier sign-in, if it sent one.
    pub device: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("Wrong email or password.")]
    Wrong,
    #[error("Too many failed sign-ins. Try again in {}.", wait_text(*.0))]
    Limited(i64),
    #[error("Too many sign-ins at once. Try again in a moment.")]
    Busy,
    #[error(transparent)]
    App(#[from] AppError),
}

fn wait_text(seconds: i64) -> String {
    match seconds {
        ..=1 => "a second".into(),
        2..=90 => format!("{seconds} seconds"),
        _ => format!("{} minutes", (seconds + 59) / 60),
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

/// The permit travels into the blocking task: the cap on concurrent verifies holds until the
/// verify ends, even if the request that started it is gone.
async fn verify_password(password: SecretString, hash: String, permit: VerifyPermit) -> bool {
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
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
        client: &SignInClient<'_>,
    ) -> Result<NewSession, LoginError> {
        let now = self.now();
        let email = email.trim().to_ascii_lowercase();
        let admin = self
            .store
            .admin_by_email(&email)
            .await
            .map_err(AppError::from)?;
        let device = admin
            .as_ref()
            .and_then(|a| self.known_device(client.device?, a.id, now));
        let address = super::sign_in_limits::address_key(client.ip);
        let applicant = Applicant {
            address: &address,
            account: &email,
            device: device.as_deref(),
        };
        let (reservation, permit) = self
            .sign_in_limits
            .reserve(&self.store, &applicant, now)
            .await
            .map_err(|e| match e {
                ReserveError::Refused(refusal) => {
                    crate::metrics::bump(&self.metrics.sign_ins_refused);
                    match refusal {
                        Refusal::Limited(seconds) => LoginError::Limited(seconds),
                        Refusal::Busy => LoginError::Busy,
                    }
                }
                ReserveError::Store(e) => LoginError::App(e.into()),
            })?;
        let hash = admin
            .as_ref()
            .map_or(DUMMY_HASH.to_string(), |a| a.password_hash.clone());
        crate::metrics::bump(&self.metrics.sign_in_verifies);
        let matches = verify_password(password, hash, permit).await;
        let Some(admin) = admin.filter(|_| matches) else {
            reservation.settle(false, now).await;
            return Err(LoginError::Wrong);
        };
        reservation.settle(true, now).await;
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
            device: self.device_record(admin.id, now),
        })
    }

    /// `admin.issued.tag`: signed, so it cannot be forged for another admin or time.
    fn device_record(&self, admin_id: i64, now: Timestamp) -> String {
        let data = format!("{admin_id}.{now}");
        format!("{data}.{}", self.sealer.sign(DEVICE_PURPOSE, &data))
    }

    /// The device's budget key when `record` is a valid, recent record for `admin_id`.
    fn known_device(&self, record: &str, admin_id: i64, now: Timestamp) -> Option<String> {
        let (data, tag) = record.rsplit_once('.')?;
        let (id, issued) = data.split_once('.')?;
        let issued: Timestamp = issued.parse().ok()?;
        let fresh =
            id.parse::<i64>().ok()? == admin_id && issued <= now && now - issued < DEVICE_LIFETIME;
        (fresh && self.sealer.verify(DEVICE_PURPOSE, data, tag)).then(|| data.to_string())
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
    fn waits_are_said_in_words() {
        assert_eq!(
            LoginError::Limited(8).to_string(),
            "Too many failed sign-ins. Try again in 8 seconds."
        );
        assert_eq!(
            LoginError::Limited(880).to_string(),
            "Too many failed sign-ins. Try again in 15 minutes."
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
