//! The configuration, read once at start and checked there, so a bad value stops the process with
//! a clear message instead of failing later. Which settings there are and how their sources are
//! layered is `settings.rs`; this file turns the layered text into typed values.

pub mod settings;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;
use clap::ValueEnum as _;
use sipsim_core::retry::{RetrySchedule, parse_duration};
use sipsim_delivery::DispatcherConfig;

use sipsim_core::cipher::SecretCipher;
use sipsim_core::target::TargetPolicy;
use sipsim_delivery::resolve::{DnsOverrides, parse_overrides};

use crate::client_addr::TrustedProxies;
use crate::limits::Rate;
use crate::limits::failures::FailurePolicy;
use crate::notify::NoticeConfig;
use crate::notify::mail::{MailSettings, SmtpUrl};
use settings::Values;

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

/// Everything a `sipsimd` process runs with, read once at start and checked there: the settings
/// of [`settings::SETTINGS`], layered (defaults, `--config` file, `SIPSIM_*` variables, flags) and
/// each parsed by its one parser.
#[derive(Debug, Clone)]
pub struct Config {
    /// `database_url`: `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// `sqlite_max_size_mb`, in bytes: the SQLite file may not grow past it.
    pub sqlite_max_bytes: Option<u64>,
    /// `database_max_connections`: the PostgreSQL pool of a node.
    pub database_max_connections: u32,
    /// `listen`: where `serve` listens.
    pub listen: SocketAddr,
    /// `role`: what `serve` runs.
    pub role: Role,
    /// `log_format`.
    pub log_format: LogFormat,
    /// `jwt_secret`: the access-token key (≥ 32 bytes). When absent, a random key is generated once
    /// and stored in the database, so every node on that database shares it.
    pub jwt_secret: Option<SecretString>,
    /// `allow_insecure_targets`: which webhook URLs may be saved and delivered to.
    pub target_policy: TargetPolicy,
    /// `encryption_key`: signing secrets and the generated JWT key are encrypted at rest with it.
    pub encryption: Option<SecretCipher>,
    /// `ingest_key` (≥ 16 bytes): the bearer key of `POST /internal/v1/events`; without it the route
    /// is not served.
    pub ingest_key: Option<SecretString>,
    /// `dns_overrides`: names the dispatcher resolves without DNS (tests).
    pub dns_overrides: DnsOverrides,
    /// `extra_ca_certs`, read: extra roots deliveries trust (tests).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// `api_rate_limit`, `token_rate_limit`.
    pub limits: RateLimits,
    /// `metrics_token`: when set, `/metrics` asks for it as a bearer token.
    pub metrics_token: Option<SecretString>,
    /// `trusted_proxies`: peers whose `X-Forwarded-For` names the client's address.
    pub trusted_proxies: TrustedProxies,
    /// The dispatcher: `retry_schedule`, `retry_jitter`, `delivery_timeout` (also *Send Test*'s),
    /// `delivery_concurrency`, `delivery_concurrency_per_integration`, `pause_after`, `retention`.
    pub delivery: DispatcherConfig,
    /// Failure emails: `smtp_url`, `smtp_from`, `public_url`, `notify_failing_after`.
    pub notices: NoticeConfig,
    /// Where deliveries may go when that must differ from which URLs may be saved: in-process
    /// tests check URLs as in production while their receivers run on loopback. `None`: the
    /// setting's policy (always, outside tests: no setting sets this).
    pub delivery_policy: Option<TargetPolicy>,
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

impl Config {
    /// The configuration of this process: the settings layered from their defaults, the TOML file
    /// named by `--config` (or `SIPSIM_CONFIG`), the `SIPSIM_*` variables and the flags on
    /// `matches`.
    pub fn load(matches: &ArgMatches) -> anyhow::Result<Config> {
        let path = matches
            .try_get_one::<PathBuf>("config")
            .ok()
            .flatten()
            .cloned()
            .or_else(|| std::env::var_os(settings::CONFIG_VARIABLE).map(PathBuf::from));
        let file = match &path {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the configuration file {}: {e}", path.display())
            })?),
            None => None,
        };
        let name = path.as_ref().map(|p| p.display().to_string());
        let file = file.as_deref().zip(name.as_deref());
        let variables = Values::from_variables();
        Config::from_values(&Values::layer(file, &variables, &Values::from_flags(matches))?)
    }

    /// The configuration from the defaults and the `SIPSIM_*` variables alone (no file, no flags).
    pub fn from_environment() -> anyhow::Result<Config> {
        Config::from_values(&Values::layer(None, &Values::from_variables(), &Values::default())?)
    }

    /// The defaults, on the database at `url`, with no variable or file read: for code that
    /// builds a node itself (tests, benchmarks), which then sets what it needs.
    pub fn for_database(url: &str) -> Config {
        let mut values = Values::defaults();
        values.set("database_url", url);
        match Config::from_values(&values) {
            Ok(config) => config,
            // A test holds every default to its parser.
            Err(e) => unreachable!("the default settings do not parse: {e}"),
        }
    }

    /// Where deliveries may go.
    pub fn delivery_target_policy(&self) -> TargetPolicy {
        self.delivery_policy.unwrap_or(self.target_policy)
    }

    /// Parses and checks layered values.
    pub fn from_values(values: &Values) -> anyhow::Result<Config> {
        let text = |key: &str| values.get(key).unwrap_or_default();
        let set = |key: &str| values.get(key).filter(|v| !v.is_empty());
        let number = |key: &str| -> anyhow::Result<Option<u64>> {
            set(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| anyhow::anyhow!("{key} must be a whole number, not '{v}'"))
                })
                .transpose()
        };
        let duration = |key: &str| -> anyhow::Result<Duration> {
            parse_duration(text(key)).map_err(|e| anyhow::anyhow!("{key}: {e}"))
        };
        let jitter: f64 = text("retry_jitter")
            .parse()
            .map_err(|_| anyhow::anyhow!("retry_jitter must be a number from 0 to 0.5"))?;
        let delivery = DispatcherConfig {
            schedule: RetrySchedule::parse(text("retry_schedule"), jitter)
                .map_err(|e| anyhow::anyhow!("--retry-schedule: {e}"))?,
            timeout: duration("delivery_timeout")?,
            concurrency: count(number("delivery_concurrency")?),
            per_integration: count(number("delivery_concurrency_per_integration")?),
            pause_after: duration("pause_after")?,
            retention: duration("retention")?,
            ..DispatcherConfig::default()
        };
        let listen: SocketAddr = text("listen")
            .parse()
            .map_err(|_| anyhow::anyhow!("listen: '{}' is not an address", text("listen")))?;
        let extra_ca_pem =
            match set("extra_ca_certs") {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("SIPSIM_EXTRA_CA_CERTS: cannot read {path}: {e}")
                })?),
                None => None,
            };
        let notices = NoticeConfig {
            mail: match (set("smtp_url"), set("smtp_from")) {
                (None, None) => None,
                (Some(url), Some(from)) => Some(MailSettings {
                    smtp: SmtpUrl::parse(url)
                        .map_err(|e| anyhow::anyhow!("SIPSIM_SMTP_URL: {e}"))?,
                    from: from.parse().map_err(|e| {
                        anyhow::anyhow!("SIPSIM_SMTP_FROM: '{from}' is not an email address ({e})")
                    })?,
                    extra_ca_pem: extra_ca_pem.clone(),
                }),
                (Some(_), None) => anyhow::bail!(
                    "SIPSIM_SMTP_URL is set without SIPSIM_SMTP_FROM: failure emails need both"
                ),
                (None, Some(_)) => anyhow::bail!(
                    "SIPSIM_SMTP_FROM is set without SIPSIM_SMTP_URL: failure emails need both"
                ),
            },
            public_url: match set("public_url") {
                Some(url) => {
                    public_url(url).map_err(|e| anyhow::anyhow!("SIPSIM_PUBLIC_URL: {e}"))?
                }
                None => format!("http://{listen}"),
            },
            failing_after: duration("notify_failing_after")?,
            ..NoticeConfig::default()
        };
        Ok(Config {
            database_url: text("database_url").to_owned(),
            sqlite_max_bytes: match number("sqlite_max_size_mb") {
                Ok(Some(mb)) if mb > 0 => Some(mb << 20),
                Ok(None) => None,
                _ => anyhow::bail!("SIPSIM_SQLITE_MAX_SIZE_MB must be a whole number of MiB ≥ 1"),
            },
            database_max_connections: match number("database_max_connections") {
                Ok(Some(n)) if n >= 2 => saturate(n),
                _ => anyhow::bail!("SIPSIM_DATABASE_MAX_CONNECTIONS must be a whole number ≥ 2"),
            },
            listen,
            role: Role::from_str(text("role"), false)
                .map_err(|_| anyhow::anyhow!("role must be api, worker or all"))?,
            log_format: LogFormat::from_str(text("log_format"), false)
                .map_err(|_| anyhow::anyhow!("log_format must be text or json"))?,
            jwt_secret: match values.get("jwt_secret") {
                Some(s) if s.len() >= 32 => Some(SecretString::new(s.to_owned())),
                Some(_) => anyhow::bail!("SIPSIM_JWT_SECRET must be at least 32 bytes long"),
                None => None,
            },
            target_policy: match values.get("allow_insecure_targets") {
                Some("1") | Some("true") => TargetPolicy::AllowInsecure,
                _ => TargetPolicy::PublicHttpsOnly,
            },
            encryption: match set("encryption_key").map(str::trim).filter(|k| !k.is_empty()) {
                Some(key) => Some(
                    SecretCipher::from_base64(key)
                        .map_err(|e| anyhow::anyhow!("SIPSIM_ENCRYPTION_KEY: {e}"))?,
                ),
                None => None,
            },
            ingest_key: match values.get("ingest_key") {
                Some(k) if k.len() >= 16 => Some(SecretString::new(k.to_owned())),
                Some("") | None => None,
                Some(_) => anyhow::bail!("SIPSIM_INGEST_KEY must be at least 16 bytes long"),
            },
            dns_overrides: match values.get("dns_overrides") {
                Some(spec) => parse_overrides(spec)
                    .map_err(|e| anyhow::anyhow!("SIPSIM_DNS_OVERRIDES: {e}"))?,
                None => DnsOverrides::new(),
            },
            extra_ca_pem,
            limits: RateLimits::new(
                number("api_rate_limit")?.map_or(DEFAULT_API_RATE_LIMIT, saturate),
                number("token_rate_limit")?.map_or(DEFAULT_TOKEN_RATE_LIMIT, saturate),
            ),
            metrics_token: match values.get("metrics_token") {
                Some(t) if t.len() >= 16 => Some(SecretString::new(t.to_owned())),
                Some("") | None => None,
                Some(_) => anyhow::bail!("SIPSIM_METRICS_TOKEN must be at least 16 bytes long"),
            },
            trusted_proxies: match values.get("trusted_proxies") {
                Some(spec) => TrustedProxies::parse(spec)
                    .map_err(|e| anyhow::anyhow!("SIPSIM_TRUSTED_PROXIES: {e}"))?,
                None => TrustedProxies::default(),
            },
            delivery,
            notices,
            delivery_policy: None,
        })
    }
}

/// The dashboard's address as links need it: `http` or `https`, a host, perhaps a path (a proxy's
/// prefix), no query; without a trailing `/`.
fn public_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("'{text}' is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("'{text}' is not an http:// or https:// address"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!("'{text}' must not have a query, a fragment or a user"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A number as a `u32`, the largest one for anything beyond.
fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A count of slots: at least 1 (unset, or 0, is 1 too: a dispatcher with none would send nothing).
fn count(n: Option<u64>) -> usize {
    usize::try_from(n.unwrap_or(1)).unwrap_or(usize::MAX).max(1)
}

/// What a `serve` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The HTTP API only.
    Api,
    /// The dispatcher only.
    Worker,
    /// Both.
    All,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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

#[cfg(test)]
mod tests {
    use super::Config;
    use super::settings::Values;

    fn config(pairs: &[(&str, &str)]) -> anyhow::Result<Config> {
        let mut values = Values::defaults();
        for (key, value) in pairs {
            values.set(key, *value);
        }
        Config::from_values(&values)
    }

    #[test]
    fn failure_emails_need_both_the_server_and_the_sender() {
        let off = config(&[]).unwrap().notices;
        assert!(off.mail.is_none());
        assert_eq!(off.public_url, "http://127.0.0.1:8080", "links go to the listen address");
        assert_eq!(off.failing_after.as_secs(), 3600);

        let on = config(&[
            ("smtp_url", "smtps://ops:s3cret@mail.example.com"),
            ("smtp_from", "SIPSIM webhooks <alerts@example.com>"),
            ("public_url", "https://hooks.example.com/sipsim/"),
        ])
        .unwrap()
        .notices;
        let mail = on.mail.unwrap();
        assert_eq!((mail.smtp.host.as_str(), mail.smtp.port), ("mail.example.com", 465));
        assert_eq!(mail.from.email.to_string(), "alerts@example.com");
        assert_eq!(on.public_url, "https://hooks.example.com/sipsim", "no trailing slash");

        for (pairs, says) in [
            (
                &[("smtp_url", "smtp://relay")][..],
                "SIPSIM_SMTP_URL is set without SIPSIM_SMTP_FROM",
            ),
            (
                &[("smtp_from", "a@example.com")][..],
                "SIPSIM_SMTP_FROM is set without SIPSIM_SMTP_URL",
            ),
            (
                &[("smtp_url", "imap://u:s3cret@h"), ("smtp_from", "a@example.com")][..],
                "SIPSIM_SMTP_URL: the scheme",
            ),
            (
                &[("smtp_url", "smtp://relay"), ("smtp_from", "not an address")][..],
                "SIPSIM_SMTP_FROM: 'not an address'",
            ),
            (
                &[("public_url", "ftp://hooks.example.com")][..],
                "SIPSIM_PUBLIC_URL: 'ftp://hooks.example.com' is not an http",
            ),
            (&[("public_url", "https://h.example.com/?x=1")][..], "must not have a query"),
            (&[("notify_failing_after", "soon")][..], "notify_failing_after"),
        ] {
            let error = config(pairs).unwrap_err().to_string();
            assert!(error.contains(says), "{pairs:?}: {error}");
            assert!(!error.contains("s3cret"), "{pairs:?}: {error}");
        }
    }
}
