//! Server configuration, read once at start from flags and `SIPSIM_*` environment variables and
//! validated there, so a bad value stops the process with a clear message instead of failing later.

use std::fmt;

use sipsim_core::cipher::SecretCipher;
use sipsim_core::target::TargetPolicy;
use sipsim_delivery::resolve::{DnsOverrides, parse_overrides};

use crate::client_addr::TrustedProxies;
use crate::limits::Rate;
use crate::limits::failures::FailurePolicy;

/// A secret configuration value; `Debug` never shows it.
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        SecretString(value)
    }

    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(redacted)")
    }
}

/// What `sipsimd serve` runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The database URL (`--database`, `SIPSIM_DATABASE_URL`).
    pub database_url: String,
    /// `SIPSIM_JWT_SECRET`: the access-token key (≥ 32 bytes). When absent, a random key is generated
    /// once and stored in the database, so every node on that database shares it.
    pub jwt_secret: Option<SecretString>,
    /// `SIPSIM_ALLOW_INSECURE_TARGETS=1` allows http:// and private targets (development, tests).
    pub target_policy: TargetPolicy,
    /// `SIPSIM_ENCRYPTION_KEY` (base64 of 32 bytes): signing secrets and the generated JWT key are
    /// encrypted at rest with it. Every process using the database needs the same key.
    pub encryption: Option<SecretCipher>,
    /// `SIPSIM_INGEST_KEY` (≥ 16 bytes): the bearer key of `POST /internal/v1/events`. Without it the
    /// route is not served.
    pub ingest_key: Option<SecretString>,
    /// `SIPSIM_DNS_OVERRIDES` (`name=addr,…`): names the dispatcher resolves without DNS (tests).
    pub dns_overrides: DnsOverrides,
    /// `SIPSIM_EXTRA_CA_CERTS`: a PEM file of extra roots the dispatcher trusts (tests).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Request rate limits (`--api-rate-limit`, `--token-rate-limit`).
    pub limits: RateLimits,
    /// `SIPSIM_METRICS_TOKEN`: when set, `/metrics` asks for it as a bearer token.
    pub metrics_token: Option<SecretString>,
    /// `SIPSIM_TRUSTED_PROXIES` (comma-separated CIDRs): peers whose `X-Forwarded-For` names the
    /// client's address for the per-address limits. Empty: the TCP peer is the client.
    pub trusted_proxies: TrustedProxies,
}

/// Request rate limits; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Per API client on `/api/v2` (default 100 requests/s, bursts of 200).
    pub api: Option<Rate>,
    /// Tokens issued per API client on `/oauth/token` (default 10/s, bursts of 20): tokens last two
    /// hours, so a client needs few. Counted only once the client has authenticated, so nobody
    /// else can use up a client's budget; failures are limited apart (`limits::failures`).
    pub token_per_client: Option<Rate>,
    /// Failed token requests per (address, `client_id`) and per address (`limits::failures`);
    /// on unless the token rate limit is 0 (benchmarks, API fuzzing).
    pub token_failures: Option<FailurePolicy>,
}

impl RateLimits {
    /// `/api/v2` at `api` per second and tokens at `token` per client, each with bursts of twice
    /// the rate; 0 turns a limit off (`token` 0 turns the token route's failure limits off too).
    pub fn new(api: u32, token: u32) -> Self {
        RateLimits {
            api: Rate::with_double_burst(api),
            token_per_client: Rate::with_double_burst(token),
            token_failures: (token > 0).then_some(FailurePolicy::TOKEN),
        }
    }

    /// No limits at all.
    pub fn off() -> Self {
        RateLimits::new(0, 0)
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::new(DEFAULT_API_RATE_LIMIT, DEFAULT_TOKEN_RATE_LIMIT)
    }
}

/// Requests per second per API client on `/api/v2` unless configured.
pub const DEFAULT_API_RATE_LIMIT: u32 = 100;
/// Token requests per second per client unless configured.
pub const DEFAULT_TOKEN_RATE_LIMIT: u32 = 10;

impl ServerConfig {
    /// Reads the environment-only settings and checks them.
    pub fn from_env(database_url: String) -> anyhow::Result<Self> {
        let jwt_secret = match std::env::var("SIPSIM_JWT_SECRET") {
            Ok(s) if s.len() >= 32 => Some(SecretString::new(s)),
            Ok(_) => anyhow::bail!("SIPSIM_JWT_SECRET must be at least 32 bytes long"),
            Err(_) => None,
        };
        Ok(ServerConfig {
            database_url,
            jwt_secret,
            target_policy: target_policy_from_env(),
            encryption: encryption_from_env()?,
            ingest_key: match std::env::var("SIPSIM_INGEST_KEY") {
                Ok(k) if k.len() >= 16 => Some(SecretString::new(k)),
                Ok(k) if k.is_empty() => None,
                Ok(_) => anyhow::bail!("SIPSIM_INGEST_KEY must be at least 16 bytes long"),
                Err(_) => None,
            },
            dns_overrides: match std::env::var("SIPSIM_DNS_OVERRIDES") {
                Ok(spec) => parse_overrides(&spec)
                    .map_err(|e| anyhow::anyhow!("SIPSIM_DNS_OVERRIDES: {e}"))?,
                Err(_) => DnsOverrides::new(),
            },
            extra_ca_pem: match std::env::var("SIPSIM_EXTRA_CA_CERTS") {
                Ok(path) if !path.is_empty() => Some(std::fs::read(&path).map_err(|e| {
                    anyhow::anyhow!("SIPSIM_EXTRA_CA_CERTS: cannot read {path}: {e}")
                })?),
                _ => None,
            },
            limits: RateLimits::default(),
            metrics_token: match std::env::var("SIPSIM_METRICS_TOKEN") {
                Ok(t) if t.len() >= 16 => Some(SecretString::new(t)),
                Ok(t) if t.is_empty() => None,
                Ok(_) => anyhow::bail!("SIPSIM_METRICS_TOKEN must be at least 16 bytes long"),
                Err(_) => None,
            },
            trusted_proxies: match std::env::var("SIPSIM_TRUSTED_PROXIES") {
                Ok(spec) => TrustedProxies::parse(&spec)
                    .map_err(|e| anyhow::anyhow!("SIPSIM_TRUSTED_PROXIES: {e}"))?,
                Err(_) => TrustedProxies::default(),
            },
        })
    }
}

/// `SIPSIM_ENCRYPTION_KEY`, checked: absent is `None`, present but malformed is an error.
pub fn encryption_from_env() -> anyhow::Result<Option<SecretCipher>> {
    match std::env::var("SIPSIM_ENCRYPTION_KEY") {
        Ok(key) if !key.trim().is_empty() => SecretCipher::from_base64(&key)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("SIPSIM_ENCRYPTION_KEY: {e}")),
        _ => Ok(None),
    }
}

/// `SIPSIM_ALLOW_INSECURE_TARGETS`: `1` or `true` allows insecure targets; anything else does not.
pub fn target_policy_from_env() -> TargetPolicy {
    match std::env::var("SIPSIM_ALLOW_INSECURE_TARGETS").as_deref() {
        Ok("1") | Ok("true") => TargetPolicy::AllowInsecure,
        _ => TargetPolicy::PublicHttpsOnly,
    }
}

/// An exclusive lock on a SQLite database file, held while `serve` runs: SQLite is single-node, and a
/// second server on the same file would hand out the same deliveries twice.
#[derive(Debug)]
pub struct DatabaseLock(#[allow(dead_code)] Option<std::fs::File>);

/// Takes the lock for `database_url` (a no-op for in-memory and non-SQLite databases).
pub fn lock_database(database_url: &str) -> anyhow::Result<DatabaseLock> {
    let Some(rest) = database_url.strip_prefix("sqlite:") else {
        return Ok(DatabaseLock(None));
    };
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return Ok(DatabaseLock(None));
    }
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| anyhow::anyhow!("cannot open lock file {lock_path}: {e}"))?;
    match file.try_lock() {
        Ok(()) => Ok(DatabaseLock(Some(file))),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another sipsimd is already serving {path} (SQLite allows one server per database file)"
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {lock_path}: {e}")
        }
    }
}
