//! Every setting of `sipsimd`, in one table, and how their values are layered: each setting's
//! default, then an optional TOML file (`--config sipsim.toml`, keys as in the table), then its
//! `SIPSIM_*` variable, then its flag — the later wins. The README's configuration table is this
//! table (a test holds them equal), and a test holds the flags' names and defaults to it, so
//! neither can drift.
//!
//! The layering is figment's; the values stay text until [`super::Config::from_values`] parses
//! each with its one parser, so a value means the same whichever layer it came from.

use std::collections::BTreeMap;
use std::fmt;

use clap::ArgMatches;
use clap::parser::ValueSource;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Its name in the TOML file; its variable is `SIPSIM_` and this, uppercased.
    pub key: &'static str,
    /// The id of its flag, where it has one (`--` and this with `-` for `_`).
    pub flag: Option<&'static str>,
    /// Its default, as text; `None`: unset.
    pub default: Option<&'static str>,
    /// What it does (Markdown, one line).
    pub meaning: &'static str,
}

impl Setting {
    /// Its environment variable.
    pub fn variable(&self) -> String {
        format!("SIPSIM_{}", self.key.to_uppercase())
    }

    /// Its flag as typed, where it has one.
    pub fn flag_text(&self) -> Option<String> {
        self.flag.map(|id| format!("--{}", id.replace('_', "-")))
    }
}

const fn setting(
    key: &'static str,
    flag: Option<&'static str>,
    default: Option<&'static str>,
    meaning: &'static str,
) -> Setting {
    Setting { key, flag, default, meaning }
}

/// Every setting, in the README's order.
pub const SETTINGS: &[Setting] = &[
    setting(
        "database_url",
        Some("database"),
        Some("sqlite://sipsim.db"),
        "`sqlite://PATH` (one server per file) or `postgres://user:password@host:port/db` (any number of nodes)",
    ),
    setting(
        "sqlite_max_size_mb",
        None,
        None,
        "the SQLite database may not grow past this many MiB (unset: as far as the disk allows); beyond it writes fail as on a full disk: ingest answers `503`, `/readyz` says `storage full`, and everything resumes once space is freed inside it",
    ),
    setting(
        "database_max_connections",
        None,
        Some("16"),
        "PostgreSQL pool size per node (at least 2; see `docs/SCALING.md`)",
    ),
    setting("listen", Some("listen"), Some("127.0.0.1:8080"), "listen address of `serve`"),
    setting(
        "role",
        Some("role"),
        Some("all"),
        "what a `serve` process runs: `api`, `worker` (the dispatcher) or `all`",
    ),
    setting(
        "log_format",
        Some("log_format"),
        Some("text"),
        "`text` or `json` (one object per line); verbosity from `RUST_LOG` (default `info`)",
    ),
    setting(
        "jwt_secret",
        None,
        None,
        "access-token key, ≥ 32 bytes; when unset a random key is generated once and stored in the database, shared by every node using it",
    ),
    setting(
        "encryption_key",
        None,
        None,
        "base64 of 32 random bytes (`openssl rand -base64 32`): signing secrets and the generated JWT key are encrypted at rest with it; every `sipsimd` process on the database needs it, and refuses to start with a missing or wrong key. Secrets stored before the key was set are encrypted when `serve` starts. `NEW,OLD` (a key ring) reads both and writes with `NEW`; `echo NEW \\| sipsimd encryption rotate --new-key-stdin` re-encrypts everything under a new key (docs/DECISIONS.md says in which order on many nodes)",
    ),
    setting(
        "ingest_key",
        None,
        None,
        "bearer key (≥ 16 bytes) of `POST /internal/v1/events`; without it the route is off (404) and the log says so",
    ),
    setting(
        "allow_insecure_targets",
        None,
        None,
        "`1` or `true` allows `http://` and private/loopback webhook URLs (development and tests only); certificate checks stay on",
    ),
    setting(
        "dns_overrides",
        None,
        None,
        "`name=addr,…`: names the dispatcher resolves without DNS (tests); the SSRF guard still judges the address",
    ),
    setting(
        "extra_ca_certs",
        None,
        None,
        "a PEM file of extra trusted roots for deliveries and the SMTP server (tests, or a private CA)",
    ),
    setting(
        "retry_schedule",
        Some("retry_schedule"),
        Some(sipsim_core::retry::RetrySchedule::DEFAULT),
        "delays before each delivery attempt (units `ms`, `s`, `m`, `h`); the delivery fails after the last",
    ),
    setting(
        "retry_jitter",
        Some("retry_jitter"),
        Some("0.1"),
        "random spread applied to each delay, as a fraction (0 to 0.5)",
    ),
    setting(
        "delivery_timeout",
        Some("delivery_timeout"),
        Some("2s"),
        "time limit of one whole delivery attempt (and of *Send Test*)",
    ),
    setting(
        "delivery_concurrency",
        Some("delivery_concurrency"),
        Some("128"),
        "delivery attempts in flight at once per node",
    ),
    setting(
        "delivery_concurrency_per_integration",
        Some("delivery_concurrency_per_integration"),
        Some("16"),
        "the most attempts in flight at once to one integration: an endpoint that times out, answers 5xx or 429, or slows to several times its usual latency gets fewer (down to 1) and grows back to this as it answers well",
    ),
    setting(
        "pause_after",
        Some("pause_after"),
        Some("120h"),
        "pause an integration whose every delivery attempt has failed for this long",
    ),
    setting(
        "retention",
        Some("retention"),
        Some("720h"),
        "delete messages, their deliveries and attempt logs older than this (pending ones are kept; an account may have its own)",
    ),
    setting(
        "api_rate_limit",
        Some("api_rate_limit"),
        Some("100"),
        "requests per second per API client on `/api/v2`, bursts of twice that; `0` = off. A client over it gets `429` in the envelope with `Retry-After`; every authenticated answer carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`",
    ),
    setting(
        "token_rate_limit",
        Some("token_rate_limit"),
        Some("10"),
        "tokens issued per second per API client, bursts of twice that, counted once the client has authenticated; `429 slow_down` with `Retry-After` beyond. Failed token requests are limited apart, per client address and `client_id` (docs/SECURITY.md); `0` turns both off (benchmarks, API fuzzing)",
    ),
    setting(
        "smtp_url",
        None,
        None,
        "failure emails go out through this SMTP server: `smtp://host:port` (plain SMTP), `smtp://host:port?tls=required` (STARTTLS, required), `smtps://host:port` (TLS); a user and password go in the URL (`smtps://user:password@host`, percent-encoded). Needs `SIPSIM_SMTP_FROM`; without both, no email is sent and the log says so once",
    ),
    setting(
        "smtp_from",
        None,
        None,
        "the sender of failure emails: `alerts@example.com` or `SIPSIM webhooks <alerts@example.com>`",
    ),
    setting(
        "public_url",
        None,
        None,
        "the dashboard's address as users reach it (`https://webhooks.example.com`), for the links in failure emails; unset: `http://` and the listen address",
    ),
    setting(
        "notify_failing_after",
        None,
        Some("1h"),
        "an account's dashboard users are emailed when every delivery attempt to its endpoint has failed for this long (and when it is paused, and when it recovers; each kind at most once a day)",
    ),
    setting(
        "metrics_token",
        None,
        None,
        "when set (≥ 16 bytes), `GET /metrics` asks for it as a bearer token",
    ),
    setting(
        "trusted_proxies",
        None,
        None,
        "comma-separated CIDRs or addresses of the proxies in front of `sipsimd` (e.g. `10.0.0.0/8`): from those peers the client address of the login and token limits is the right-most `X-Forwarded-For` address that is not a trusted proxy; from any other peer the header is ignored. Set it whenever a proxy terminates TLS, or every client shares the proxy's address",
    ),
];

/// The variable naming the TOML file, beside the `--config` flag.
pub const CONFIG_VARIABLE: &str = "SIPSIM_CONFIG";

/// A setting's value as text, whatever type its layer gave it (TOML integers, floats and booleans
/// included). `Debug` never shows it: it may be a secret.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Text(pub String);

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Text(..)")
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnyScalar;
        impl Visitor<'_> for AnyScalar {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(AnyScalar)
    }
}

/// The layered values: setting key → its text, for the settings that have one.
#[derive(Debug, Clone, Default)]
pub struct Values(BTreeMap<String, Text>);

impl Values {
    /// The value of setting `key`, if set by any layer.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|t| t.0.as_str())
    }

    /// Every setting's default.
    pub fn defaults() -> Values {
        let mut values = Values::default();
        for setting in SETTINGS {
            if let Some(default) = setting.default {
                values.set(setting.key, default);
            }
        }
        values
    }

    /// Sets `key` (for code that builds a configuration without a command line).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_owned(), Text(value.into()));
    }

    /// Layers the sources: each setting's default, then the TOML file `file` (its text and name),
    /// then `variables` (the process's, [`Values::from_variables`]), then `flags`.
    pub fn layer(
        file: Option<(&str, &str)>,
        variables: &Values,
        flags: &Values,
    ) -> anyhow::Result<Values> {
        let mut figment = Figment::from(Serialized::defaults(&Values::defaults().0));
        if let Some((text, name)) = file {
            check_keys(text, name)?;
            figment = figment.merge(Toml::string(text));
        }
        let values: BTreeMap<String, Text> = figment
            .merge(Serialized::defaults(&variables.0))
            .merge(Serialized::defaults(&flags.0))
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        Ok(Values(values))
    }

    /// The settings' `SIPSIM_*` variables that are set, as text. Read here rather than through
    /// figment's `Env`, which parses each value (`0123…` would become a number, changing a key made
    /// of digits); a value is only ever parsed by its setting's own parser.
    pub fn from_variables() -> Values {
        let mut values = Values::default();
        for setting in SETTINGS {
            if let Ok(value) = std::env::var(setting.variable()) {
                values.set(setting.key, value);
            }
        }
        values
    }

    /// The values given as flags on `matches`' command line (not from a variable or a default):
    /// the top level's and those of the subcommand `matches` ran.
    pub fn from_flags(matches: &ArgMatches) -> Values {
        let mut flags = Values::default();
        let sub = matches.subcommand().map(|(_, m)| m);
        for m in [Some(matches), sub].into_iter().flatten() {
            for setting in SETTINGS {
                let Some(id) = setting.flag else { continue };
                let given = m
                    .try_get_raw(id)
                    .ok()
                    .flatten()
                    .and_then(|mut raw| raw.next())
                    .filter(|_| m.value_source(id) == Some(ValueSource::CommandLine));
                if let Some(value) = given.and_then(|v| v.to_str()) {
                    flags.set(setting.key, value);
                }
            }
        }
        flags
    }
}

/// Refuses a TOML file with a key that is no setting (a typo would otherwise be ignored).
fn check_keys(text: &str, name: &str) -> anyhow::Result<()> {
    let table: BTreeMap<String, Value> = Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| anyhow::anyhow!("{name} is not valid TOML: {e}"))?;
    for (key, value) in &table {
        if !SETTINGS.iter().any(|s| s.key == key) {
            anyhow::bail!("{name}: '{key}' is not a setting (the settings are in the README)");
        }
        if matches!(value, Value::Dict(..) | Value::Array(..)) {
            anyhow::bail!("{name}: '{key}' must be a string, a number or a boolean");
        }
    }
    Ok(())
}

/// The configuration table as the README shows it.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| setting (TOML key) | variable | flag | default | meaning |\n|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            s.key,
            s.variable(),
            s.flag_text().map_or("—".to_owned(), |f| format!("`{f}`")),
            s.default.map_or("—".to_owned(), |d| format!("`{d}`")),
            s.meaning
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    fn values(pairs: &[(&str, &str)]) -> Values {
        let mut v = Values::default();
        for (key, value) in pairs {
            v.set(key, *value);
        }
        v
    }

    #[test]
    fn a_later_source_wins_default_file_variable_flag() {
        let file = "listen = \"0.0.0.0:9000\"\nretry_jitter = 0.2\ndelivery_concurrency = 64\nretention = \"48h\"";
        let variables = values(&[("retry_jitter", "0.3"), ("delivery_concurrency", "32")]);
        let flags = values(&[("delivery_concurrency", "8")]);
        let layered = Values::layer(Some((file, "sipsim.toml")), &variables, &flags).unwrap();
        assert_eq!(layered.get("database_url"), Some("sqlite://sipsim.db"), "default");
        assert_eq!(layered.get("listen"), Some("0.0.0.0:9000"), "file over default");
        assert_eq!(layered.get("retention"), Some("48h"), "file over default");
        assert_eq!(layered.get("retry_jitter"), Some("0.3"), "variable over file");
        assert_eq!(layered.get("delivery_concurrency"), Some("8"), "flag over all");
        let config = crate::config::Config::from_values(&layered).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.delivery.concurrency, 8);
        assert_eq!(config.delivery.retention.as_secs(), 48 * 3600);
    }

    #[test]
    fn a_file_with_an_unknown_or_nested_key_is_refused_by_name() {
        let none = Values::default();
        let e = Values::layer(Some(("lisen = \"x\"", "f.toml")), &none, &none).unwrap_err();
        assert!(e.to_string().contains("'lisen' is not a setting"), "{e}");
        let e = Values::layer(Some(("[listen]\na = 1", "f.toml")), &none, &none).unwrap_err();
        assert!(e.to_string().contains("'listen' must be a string"), "{e}");
        let e = Values::layer(Some(("listen = ", "f.toml")), &none, &none).unwrap_err();
        assert!(e.to_string().contains("f.toml is not valid TOML"), "{e}");
    }

    #[test]
    fn values_are_text_whatever_their_layer_and_never_reparsed() {
        // A key of digits stays the same text (a parser that read it as a number would lose it).
        let key = "000123456789012345678901234567890123";
        let file = format!("jwt_secret = \"{key}\"\nallow_insecure_targets = true");
        let none = Values::default();
        let layered = Values::layer(
            Some((&file, "f.toml")),
            &values(&[("ingest_key", "00000000000000001")]),
            &none,
        )
        .unwrap();
        let config = crate::config::Config::from_values(&layered).unwrap();
        assert_eq!(config.jwt_secret.unwrap().expose(), key);
        assert_eq!(config.ingest_key.unwrap().expose(), "00000000000000001");
        assert_eq!(config.target_policy, sipsim_core::target::TargetPolicy::AllowInsecure);
    }

    #[test]
    fn every_default_parses() {
        let config = crate::config::Config::for_database("sqlite://x.db");
        assert_eq!(config.delivery.concurrency, 128);
        assert_eq!(config.delivery.timeout.as_secs(), 2);
        assert_eq!(config.database_max_connections, 16);
    }

    #[test]
    fn flags_count_only_when_typed() {
        let matches = Cli::command()
            .try_get_matches_from([
                "sipsimd",
                "--database",
                "sqlite://flag.db",
                "serve",
                "--delivery-concurrency",
                "7",
            ])
            .unwrap();
        let flags = Values::from_flags(&matches);
        assert_eq!(flags.get("database_url"), Some("sqlite://flag.db"));
        assert_eq!(flags.get("delivery_concurrency"), Some("7"));
        // Not typed: its clap default must not hide the file's or the variable's value.
        assert_eq!(flags.get("listen"), None);
    }

    /// Every flag that names a `SIPSIM_*` variable is a setting of the same variable and default,
    /// and every setting with a flag has it: the command line and this table cannot drift.
    #[test]
    fn the_flags_and_the_table_agree() {
        let command = Cli::command();
        let serve = command.find_subcommand("serve").expect("the serve command");
        let args: Vec<&clap::Arg> = command.get_arguments().chain(serve.get_arguments()).collect();
        for arg in &args {
            let Some(variable) = arg.get_env().and_then(|v| v.to_str()) else {
                continue;
            };
            if variable == CONFIG_VARIABLE {
                continue;
            }
            let setting = SETTINGS
                .iter()
                .find(|s| s.variable() == variable)
                .unwrap_or_else(|| panic!("{variable} is not in SETTINGS"));
            assert_eq!(setting.flag, Some(arg.get_id().as_str()), "{variable}");
            let default: Vec<_> =
                arg.get_default_values().iter().filter_map(|d| d.to_str()).collect();
            assert_eq!(default.first().copied(), setting.default, "{variable}");
        }
        for setting in SETTINGS.iter().filter(|s| s.flag.is_some()) {
            assert!(
                args.iter().any(|a| Some(a.get_id().as_str()) == setting.flag
                    && a.get_env().and_then(|v| v.to_str()) == Some(setting.variable().as_str())),
                "{} has no flag reading {}",
                setting.key,
                setting.variable()
            );
        }
    }

    /// The README's configuration table is this table.
    #[test]
    fn the_readme_shows_this_table() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .expect("README.md");
        let start = "<!-- settings: generated from crates/server/src/config/settings.rs -->\n";
        let end = "<!-- settings end -->";
        let from = readme.find(start).expect("the settings start marker") + start.len();
        let to = readme[from..].find(end).expect("the settings end marker") + from;
        if readme[from..to] != markdown_table() {
            eprintln!("{}", markdown_table());
        }
        assert_eq!(
            &readme[from..to],
            markdown_table(),
            "README.md's configuration table differs from SETTINGS; replace it with the table above"
        );
    }
}
