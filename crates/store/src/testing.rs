//! Fresh PostgreSQL databases for tests, one per test, copied from a migrated template.
//!
//! Tests that need PostgreSQL call [`postgres_test_db`]. It reads `SIPSIM_TEST_POSTGRES_URL` (a
//! server and a database to connect to for administration, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`):
//! - unset: the test returns early, and the test binary says once on stderr, uncaptured, that its
//!   PostgreSQL suites were NOT run — unless `CI=true`, where that is a failure;
//! - set but unreachable: a failure, naming the URL.
//!
//! Each test gets `CREATE DATABASE … TEMPLATE sipsim_tpl_<hash of the migrations>`, which copies the
//! migrated schema in milliseconds; [`PgTestDb::drop_database`] removes it. Databases left behind by a
//! test process that died are removed by the next run.

use std::io::Write as _;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection, Row};

/// The variable naming the PostgreSQL server tests use.
pub const URL_VAR: &str = "SIPSIM_TEST_POSTGRES_URL";

/// Serialises template creation and database copies across test processes.
const ADMIN_LOCK: i64 = 0x5349_5053_5445_5354;

/// A database made for one test.
#[derive(Debug)]
pub struct PgTestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgTestDb {
    /// The URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database (closing what is still connected to it).
    pub async fn drop_database(self) {
        let dropped = match PgConnection::connect(&self.admin_url).await {
            Ok(mut admin) => drop_db(&mut admin, &self.name).await,
            Err(e) => Err(e),
        };
        if let Err(e) = dropped {
            let _ = writeln!(std::io::stderr(), "could not drop {}: {e}", self.name);
        }
    }
}

/// Whether this run must not skip a suite (`CI=true`).
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A fresh, migrated database for the test `test`, or `None` (after saying so) when no PostgreSQL
/// server is configured. Panics when one is required or configured but unusable.
pub async fn postgres_test_db(test: &str) -> Option<PgTestDb> {
    postgres_db(test, true).await
}

/// Like [`postgres_test_db`], but the database is empty: not migrated.
pub async fn postgres_empty_db(test: &str) -> Option<PgTestDb> {
    postgres_db(test, false).await
}

async fn postgres_db(test: &str, migrated: bool) -> Option<PgTestDb> {
    let Ok(admin_url) = std::env::var(URL_VAR) else {
        if required() {
            panic!(
                "{test}: {URL_VAR} is not set, and CI=true requires the PostgreSQL suites to run"
            );
        }
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "\nNOTE: the PostgreSQL suites were NOT run (their tests pass without doing anything): \
                 set {URL_VAR}=postgres://postgres@127.0.0.1:5432/test to run them.\n"
            );
        });
        return None;
    };
    match create(&admin_url, migrated).await {
        Ok(db) => Some(db),
        Err(e) => panic!("{test}: cannot prepare a PostgreSQL test database at {admin_url}: {e}"),
    }
}

async fn create(admin_url: &str, migrated: bool) -> Result<PgTestDb, sqlx::Error> {
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::query("SELECT pg_advisory_lock($1)").bind(ADMIN_LOCK).execute(&mut admin).await?;
    let result = create_locked(&mut admin, admin_url, migrated).await;
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(ADMIN_LOCK).execute(&mut admin).await?;
    admin.close().await?;
    result
}

async fn create_locked(
    admin: &mut PgConnection,
    admin_url: &str,
    migrated: bool,
) -> Result<PgTestDb, sqlx::Error> {
    let template = format!("sipsim_tpl_{:016x}", migrations_hash());
    let existing: Vec<String> = sqlx::query(
        "SELECT datname FROM pg_database \
         WHERE datname LIKE 'sipsim\\_tpl\\_%' OR datname LIKE 'sipsim\\_t\\_%'",
    )
    .fetch_all(&mut *admin)
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    for name in &existing {
        if name != &template && is_stale(name) {
            drop_db(admin, name).await?;
        }
    }
    if !existing.contains(&template) {
        let sql = format!("CREATE DATABASE \"{template}\"");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *admin).await?;
        let mut conn = PgConnection::connect(&with_database(admin_url, &template)).await?;
        crate::postgres::migrator()
            .run(&mut conn)
            .await
            .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
        conn.close().await?;
    }
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name =
        format!("sipsim_t_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    drop_db(admin, &name).await?;
    let sql = if migrated {
        format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"")
    } else {
        format!("CREATE DATABASE \"{name}\"")
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *admin).await?;
    Ok(PgTestDb { admin_url: admin_url.to_owned(), url: with_database(admin_url, &name), name })
}

/// Drops database `name`, closing its connections. Names here are ours (`sipsim_…`), never input.
async fn drop_db(admin: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(admin).await?;
    Ok(())
}

/// A test database whose process is gone, or a template of other migrations.
fn is_stale(name: &str) -> bool {
    if name.starts_with("sipsim_tpl_") {
        return true;
    }
    let pid = name
        .strip_prefix("sipsim_t_")
        .and_then(|rest| rest.split('_').next())
        .and_then(|pid| pid.parse::<u32>().ok());
    match pid {
        Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

/// FNV-1a over the migrations, so a changed migration gets a new template.
fn migrations_hash() -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (file, sql) in crate::migrations::POSTGRES {
        for byte in file.as_bytes().iter().chain(sql.as_bytes()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// `url` naming database `name` instead of its own.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[host_start..].find('/').map_or(base.len(), |i| host_start + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A new account named `name` whose integration (`url`, public https) takes every event: the
/// fixture the store's tests start from on either backend.
pub async fn account_with_integration(
    store: &dyn sipsim_core::Store,
    name: &str,
    url: &str,
) -> sipsim_core::AccountId {
    use sipsim_core::store::IntegrationUpdate;
    use sipsim_core::target::{TargetPolicy, WebhookUrl};
    let account = store.create_account(name).await.expect("account").id;
    let update = IntegrationUpdate {
        webhook_url: WebhookUrl::parse(url, TargetPolicy::PublicHttpsOnly).expect("url"),
        disabled: false,
        events: Some(sipsim_core::EventSet::ALL),
        new_signing_secret: sipsim_core::secret::SigningSecret::generate(),
    };
    store.put_integration(&account, update).await.expect("integration");
    account
}

/// A new API client of `account` named "test" holding `scopes`, and its secret.
pub async fn api_client(
    store: &dyn sipsim_core::Store,
    account: &sipsim_core::AccountId,
    scopes: sipsim_core::ScopeSet,
) -> (sipsim_core::store::ApiClient, sipsim_core::secret::ClientSecret) {
    let secret = sipsim_core::secret::ClientSecret::generate();
    let new = sipsim_core::store::NewApiClient {
        account_id: account.clone(),
        name: "test".into(),
        scopes,
        secret_hash: secret.hash(),
    };
    (store.create_client(new).await.expect("client"), secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_database() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/test?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
