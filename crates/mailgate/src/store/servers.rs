//! Outgoing mail servers.

use secrecy::SecretString;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, duplicate, opt_i64, opt_string};
use crate::clock::Timestamp;
use crate::crypto::Sealer;
use crate::domain::mail_server::TestOutcome;
use crate::domain::{AuthMethod, FromPolicy, MailServer, Security, ValidServer};

/// The columns `server_from_row` reads, spliced into each query at compile time.
macro_rules! columns {
    () => {
        "id, name, auth_method, username, \
         CAST(CASE WHEN password_sealed IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_password, \
         host, port, security, from_filter, priority, last_test_at, last_test_ok, last_test_report, \
         aliases, from_policy, daily_limit"
    };
}

fn password_purpose(id: i64) -> String {
    format!("mail_servers.password:{id}")
}

/// Binds a server's fields as $1..$11 and `now` as $12, the order both INSERT and UPDATE use.
fn bind_server<'q>(
    server: &'q ValidServer,
    now: Timestamp,
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(&server.name)
        .bind(server.auth.code())
        .bind(server.username.as_deref())
        .bind(&server.host)
        .bind(i64::from(server.port))
        .bind(server.security.code())
        .bind(server.from_filter.as_deref())
        .bind(server.priority)
        .bind(server.aliases.join(","))
        .bind(server.from_policy.code())
        .bind(server.daily_limit)
        .bind(now)
}

fn server_from_row(row: &AnyRow) -> Result<MailServer, sqlx::Error> {
    let decode = |column: &str, message: &str| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: message.to_string().into(),
    };
    let last_test = match (opt_i64(row, "last_test_at")?, opt_i64(row, "last_test_ok")?) {
        (Some(at), Some(ok)) => Some(TestOutcome {
            at,
            ok: ok != 0,
            report: opt_string(row, "last_test_report")?.unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(MailServer {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        auth: AuthMethod::parse(&row.try_get::<String, _>("auth_method")?)
            .ok_or_else(|| decode("auth_method", "unknown authentication method"))?,
        username: opt_string(row, "username")?,
        has_password: row.try_get::<i64, _>("has_password")? != 0,
        host: row.try_get("host")?,
        port: u16::try_from(row.try_get::<i64, _>("port")?)
            .map_err(|_| decode("port", "port out of range"))?,
        security: Security::parse(&row.try_get::<String, _>("security")?)
            .ok_or_else(|| decode("security", "unknown connection security"))?,
        from_filter: opt_string(row, "from_filter")?,
        priority: row.try_get("priority")?,
        aliases: row
            .try_get::<String, _>("aliases")?
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        from_policy: FromPolicy::parse(&row.try_get::<String, _>("from_policy")?)
            .ok_or_else(|| decode("from_policy", "unknown From policy"))?,
        daily_limit: row.try_get("daily_limit")?,
        last_test,
    })
}

impl Store {
    pub async fn list_servers(&self) -> Result<Vec<MailServer>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM mail_servers ORDER BY priority, name"
        ))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(server_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn server(&self, id: i64) -> Result<Option<MailServer>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM mail_servers WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(server_from_row).transpose()?)
    }

    pub async fn server_by_name(&self, name: &str) -> Result<Option<MailServer>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM mail_servers WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(server_from_row).transpose()?)
    }

    pub async fn create_server(
        &self,
        sealer: &Sealer,
        server: &ValidServer,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write_transaction().await?;
        let id: i64 = bind_server(server, now, sqlx::query(
            "INSERT INTO mail_servers (name, auth_method, username, host, port, security, from_filter, priority, \
             aliases, from_policy, daily_limit, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(duplicate("a server with this Description"))?
        .try_get("id")?;
        if let Some(password) = &server.password {
            sqlx::query("UPDATE mail_servers SET password_sealed = $1 WHERE id = $2")
                .bind(sealer.seal_secret(&password_purpose(id), password))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Updates a server. A password is kept unless a new one is given, and dropped when the server
    /// no longer uses password authentication.
    pub async fn update_server(
        &self,
        sealer: &Sealer,
        id: i64,
        server: &ValidServer,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        bind_server(server, now, sqlx::query(
            "UPDATE mail_servers SET name = $1, auth_method = $2, username = $3, host = $4, port = $5, \
             security = $6, from_filter = $7, priority = $8, aliases = $9, from_policy = $10, \
             daily_limit = $11, updated_at = $12 WHERE id = $13",
        ))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(duplicate("a server with this Description"))?;
        if server.auth != AuthMethod::Password {
            sqlx::query("UPDATE mail_servers SET password_sealed = NULL WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        } else if let Some(password) = &server.password {
            sqlx::query("UPDATE mail_servers SET password_sealed = $1 WHERE id = $2")
                .bind(sealer.seal_secret(&password_purpose(id), password))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_server(&self, id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM mail_servers WHERE id = $1")
            .bind(id)
            .execute(self.writes())
            .await?
            .rows_affected()
            == 1)
    }

    pub async fn server_password(
        &self,
        sealer: &Sealer,
        id: i64,
    ) -> Result<Option<SecretString>, StoreError> {
        let row = sqlx::query("SELECT password_sealed FROM mail_servers WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        let sealed = match row {
            Some(r) => super::opt_bytes(&r, "password_sealed")?,
            None => None,
        };
        Ok(sealed
            .map(|s| sealer.open_secret(&password_purpose(id), &s))
            .transpose()?)
    }

    pub async fn record_test(
        &self,
        id: i64,
        ok: bool,
        report: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mail_servers SET last_test_at = $1, last_test_ok = $2, last_test_report = $3 WHERE id = $4",
        )
        .bind(now)
        .bind(i64::from(ok))
        .bind(report)
        .bind(id)
        .execute(self.writes())
        .await?;
        Ok(())
    }
}
