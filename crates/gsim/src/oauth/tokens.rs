//! Token issuance and the rules by which Google's tokens die (google.md §1.4, §1.5, §1.8).

use serde_json::{Value, json};

use super::id_token::{IdTokenSigner, at_hash};
use super::scopes;
use crate::config::{ClientConfig, PublishingStatus};
use crate::sasl::Bearer;
use crate::world::{
    AccessToken, Death, MAIL_SCOPE, RefreshToken, State, new_access_token, new_refresh_token,
};

/// "There is currently a limit of 100 refresh tokens per Google Account per OAuth 2.0 client ID."
pub const REFRESH_TOKENS_PER_ACCOUNT_AND_CLIENT: usize = 100;
/// A Testing app's refresh token: seven days, reported as Google reports it.
pub const TESTING_REFRESH_LIFETIME: i64 = 604_799;

pub struct Grant<'a> {
    pub client: &'a ClientConfig,
    pub account: &'a str,
    pub scopes: &'a [String],
    pub nonce: Option<&'a str>,
}

impl State {
    /// Mints a refresh token; past the cap the oldest live one dies without warning.
    pub fn issue_refresh_token(&mut self, grant: &Grant<'_>, now: i64) -> RefreshToken {
        let mut live: Vec<(i64, String)> = self
            .refresh_tokens
            .values()
            .filter(|t| {
                t.client_id == grant.client.client_id
                    && t.account == grant.account
                    && t.is_live(now)
            })
            .map(|t| (t.issued_at, t.token.clone()))
            .collect();
        live.sort();
        let excess = (live.len() + 1).saturating_sub(REFRESH_TOKENS_PER_ACCOUNT_AND_CLIENT);
        for (_, token) in live.into_iter().take(excess) {
            if let Some(t) = self.refresh_tokens.get_mut(&token) {
                t.dead = Some(Death::Cap);
            }
        }
        let token = RefreshToken {
            token: new_refresh_token(),
            client_id: grant.client.client_id.clone(),
            account: grant.account.to_string(),
            scopes: grant.scopes.to_vec(),
            issued_at: now,
            expires_at: (grant.client.publishing_status == PublishingStatus::Testing)
                .then_some(now + TESTING_REFRESH_LIFETIME),
            dead: None,
        };
        self.refresh_tokens
            .insert(token.token.clone(), token.clone());
        token
    }

    pub fn issue_access_token(
        &mut self,
        grant: &Grant<'_>,
        refresh_token: Option<&str>,
        now: i64,
    ) -> (String, i64) {
        let token = new_access_token();
        let lifetime = self.settings.oauth.access_token_lifetime_secs;
        self.access_tokens.insert(
            token.clone(),
            AccessToken {
                client_id: grant.client.client_id.clone(),
                account: grant.account.to_string(),
                scopes: grant.scopes.to_vec(),
                expires_at: now + lifetime,
                refresh_token: refresh_token.map(str::to_string),
                revoked: false,
            },
        );
        (token, lifetime)
    }

    /// The JSON body of a successful token response. Field order follows a real Google answer;
    /// clients must not depend on it anyway.
    pub fn token_response(
        &mut self,
        signer: &IdTokenSigner,
        grant: &Grant<'_>,
        refresh: Option<&RefreshToken>,
        return_refresh_token: bool,
        now: i64,
    ) -> anyhow::Result<Value> {
        let (access_token, expires_in) =
            self.issue_access_token(grant, refresh.map(|r| r.token.as_str()), now);
        let mut body = serde_json::Map::new();
        body.insert("access_token".into(), json!(access_token));
        if let Some(expires_at) = refresh.and_then(|r| r.expires_at) {
            body.insert("refresh_token_expires_in".into(), json!(expires_at - now));
        }
        body.insert("expires_in".into(), json!(expires_in));
        body.insert("token_type".into(), json!("Bearer"));
        body.insert("scope".into(), json!(grant.scopes.join(" ")));
        if let (Some(refresh), true) = (refresh, return_refresh_token) {
            body.insert("refresh_token".into(), json!(refresh.token));
        }
        if grant.scopes.iter().any(|s| s == scopes::OPENID) {
            let id_token = self.id_token(signer, grant, &access_token, now)?;
            body.insert("id_token".into(), json!(id_token));
        }
        Ok(Value::Object(body))
    }

    fn id_token(
        &self,
        signer: &IdTokenSigner,
        grant: &Grant<'_>,
        access_token: &str,
        now: i64,
    ) -> anyhow::Result<String> {
        let account = self
            .accounts
            .get(grant.account)
            .ok_or_else(|| anyhow::anyhow!("account vanished"))?;
        let mut claims = json!({
            "iss": "https://accounts.google.com",
            "azp": grant.client.client_id,
            "aud": grant.client.client_id,
            "sub": account.sub,
            "at_hash": at_hash(access_token),
            "iat": now,
            "exp": now + 3599,
        });
        if grant.scopes.iter().any(|s| s == scopes::USERINFO_EMAIL) {
            claims["email"] = json!(account.email);
            claims["email_verified"] = json!(true);
        }
        if grant.scopes.iter().any(|s| s == scopes::USERINFO_PROFILE) {
            claims["name"] = json!(account.name);
        }
        if let Some(nonce) = grant.nonce {
            claims["nonce"] = json!(nonce);
        }
        signer.sign(&claims)
    }

    /// Revokes an access or refresh token; an access token takes its refresh token with it.
    /// Returns false when the token is unknown or already dead.
    pub fn revoke(&mut self, token: &str, now: i64) -> bool {
        let refresh = if let Some(access) = self.access_tokens.get_mut(token) {
            if access.revoked {
                return false;
            }
            access.revoked = true;
            access.refresh_token.clone()
        } else if let Some(refresh) = self.refresh_tokens.get(token) {
            if !refresh.is_live(now) {
                return false;
            }
            Some(token.to_string())
        } else {
            return false;
        };
        if let Some(refresh) = refresh {
            if let Some(r) = self.refresh_tokens.get_mut(&refresh) {
                r.dead.get_or_insert(Death::Revoked);
            }
            for access in self.access_tokens.values_mut() {
                if access.refresh_token.as_deref() == Some(refresh.as_str()) {
                    access.revoked = true;
                }
            }
        }
        self.counters.revocations += 1;
        true
    }

    /// "The user changed passwords and the refresh token contains Gmail scopes."
    pub fn change_password(&mut self, account: &str, password: &str) -> bool {
        let Some(acc) = self.accounts.get_mut(account) else {
            return false;
        };
        acc.password = password.to_string();
        for token in self.refresh_tokens.values_mut() {
            if token.account == account && token.scopes.iter().any(|s| scopes::is_gmail(s)) {
                token.dead.get_or_insert(Death::PasswordChanged);
            }
        }
        true
    }

    /// The account a bearer token opens for SMTP or IMAP, if it opens one.
    pub fn mail_login(&self, bearer: &Bearer, now: i64) -> Option<String> {
        let token = self.access_tokens.get(&bearer.token)?;
        let user = bearer.user.to_ascii_lowercase();
        (!token.revoked
            && now < token.expires_at
            && token.scopes.iter().any(|s| s == MAIL_SCOPE)
            && token.account == user)
            .then_some(user)
    }
}
