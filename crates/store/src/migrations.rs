//! Both backends' migrations, embedded at compile time (no sqlx macros, so nothing reads the
//! folders at build time). A file's name gives its version and description:
//! `0006_users_sessions.sql` is version 6, "users sessions". sqlx compares an applied migration's
//! checksum, never its description, so a description may change; a file's content never may.

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(file name, SQL)` for each named file of `migrations/<folder>/`, in the order given.
macro_rules! embed {
    ($folder:literal: $($file:literal)*) => {
        &[$(($file, include_str!(concat!("../migrations/", $folder, "/", $file)))),*]
    };
}

/// SQLite's migrations, in order.
pub(crate) const SQLITE: &[(&str, &str)] = embed!("sqlite":
    "0001_accounts_clients_integrations.sql"
    "0002_delivery_queue.sql"
    "0003_deliveries_by_account_id.sql"
    "0004_pause.sql"
    "0005_ordering.sql"
    "0006_users_sessions.sql"
    "0007_secret_rotation.sql"
    "0008_account_retention.sql"
    "0009_settings_version.sql"
    "0010_due_index_without_waiting.sql"
    "0011_due_by_account.sql"
    "0012_deliveries_by_message.sql"
    "0013_delivery_rate.sql"
    "0014_notices.sql"
);

/// PostgreSQL's migrations, in order.
pub(crate) const POSTGRES: &[(&str, &str)] = embed!("postgres":
    "0001_schema.sql"
    "0002_users_sessions.sql"
    "0003_secret_rotation.sql"
    "0004_account_retention.sql"
    "0005_settings_version.sql"
    "0006_due_by_account.sql"
    "0007_queue_functions.sql"
    "0008_ingest_function.sql"
    "0009_low_rate_costs.sql"
    "0010_chain_locks_late.sql"
    "0011_claim_in_one_call.sql"
    "0012_delivery_rate.sql"
    "0013_notices.sql"
);

/// A file name's version and description (`0006_users_sessions.sql` → 6, "users sessions").
/// Every embedded name has this form (the test below reads them all).
fn version_and_description(file: &str) -> Option<(i64, String)> {
    let (number, rest) = file.split_once('_')?;
    let version = number.parse().ok().filter(|_| number.len() == 4)?;
    Some((version, rest.strip_suffix(".sql")?.replace('_', " ")))
}

/// The migrator over one backend's embedded files.
pub(crate) fn migrator(files: &[(&'static str, &'static str)]) -> Migrator {
    use sqlx::SqlSafeStr as _;
    let migrations = files
        .iter()
        .map(|(file, sql)| {
            let (version, description) = version_and_description(file)
                .expect("embedded migrations are named NNNN_description.sql (tested)");
            Migration::new(
                version,
                description.into(),
                MigrationType::Simple,
                sqlx::AssertSqlSafe(*sql).into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The files are listed by hand; a file added to a folder but not to its list would never run,
    /// silently (migration 0010 did exactly that for a while).
    fn assert_every_file_is_embedded(folder: &str, embedded: &[(&str, &str)]) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(folder);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("the migrations folder")
            .map(|entry| entry.expect("a folder entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        assert_eq!(files.len(), embedded.len(), "{folder}: {files:?}");
        for (number, (file, (name, sql))) in files.iter().zip(embedded).enumerate() {
            let on_disk_name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            assert_eq!(on_disk_name, *name, "{folder}: listed out of order");
            let (version, _) = version_and_description(name).expect("NNNN_description.sql");
            assert_eq!(version, number as i64 + 1, "{folder}: {name} leaves a gap");
            let on_disk = std::fs::read_to_string(file).expect("a migration");
            assert_eq!(&on_disk, sql, "{folder}: {name} differs from what is embedded");
        }
    }

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        assert_every_file_is_embedded("sqlite", SQLITE);
        assert_every_file_is_embedded("postgres", POSTGRES);
    }

    #[test]
    fn names_give_version_and_description() {
        assert_eq!(
            version_and_description("0006_users_sessions.sql"),
            Some((6, "users sessions".to_owned()))
        );
        for bad in ["users.sql", "6_users.sql", "000x_users.sql", "0006_users.txt"] {
            assert_eq!(version_and_description(bad), None, "{bad}");
        }
    }
}
