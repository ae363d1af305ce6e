//! `sipsim-store`: the storage backends behind [`sipsim_core::Store`].
//!
//! The SQL both dialects accept is written once (`plain/`), for [`SqlStore`] over either backend;
//! each backend module holds what differs — opening the database, its migrations, its delivery
//! queue. Nothing outside this crate sees SQL. The server picks a backend from the database URL in
//! exactly one place.

mod plain;
pub mod postgres;
mod rotation;
mod rows;
pub mod sqlite;
pub mod testing;

pub use plain::SqlStore;
pub use postgres::{PgDb, PgStore};
pub use sqlite::{SqliteDb, SqliteStore};

use sipsim_core::StoreError;

/// Wraps a sqlx error, keeping it as the source for the logs; a database that cannot grow (SQLite's
/// `SQLITE_FULL`, PostgreSQL's `disk_full`) becomes [`StoreError::StorageFull`].
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        let code = db.code();
        let full = match db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
            // SQLITE_FULL: the disk, or the database's max_page_count.
            Some(_) => code.as_deref() == Some("13"),
            // Class 53, insufficient resources: 53100 disk_full.
            None => code.as_deref() == Some("53100"),
        };
        if full {
            return StoreError::StorageFull(db.message().to_owned());
        }
    }
    StoreError::Backend(Box::new(e))
}

/// What a write probe writes: 64 KiB (sixteen pages), so a database with less room than a
/// modest ingest batch needs fails it.
pub(crate) const PROBE_BYTES: usize = 64 * 1024;

/// The migrator over one backend's embedded migrations (`(version, description, sql)`; no sqlx
/// macros, so nothing reads the folders at build time).
pub(crate) fn migrator(
    migrations: &[(i64, &'static str, &'static str)],
) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr as _;
    let migrations = migrations
        .iter()
        .map(|(version, description, sql)| {
            sqlx::migrate::Migration::new(
                *version,
                std::borrow::Cow::Borrowed(*description),
                sqlx::migrate::MigrationType::Simple,
                sqlx::AssertSqlSafe(*sql).into_sql_str(),
                false,
            )
        })
        .collect();
    sqlx::migrate::Migrator::with_migrations(migrations)
}

/// Wraps a migration error.
pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The migrations are listed by hand (no sqlx macros); a file added to a folder but not to its
    /// list would never run, silently (migration 0010 did exactly that for a while).
    fn assert_every_file_is_embedded(folder: &str, embedded: &[(i64, &str, &str)]) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(folder);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("the migrations folder")
            .map(|entry| entry.expect("a folder entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        assert_eq!(files.len(), embedded.len(), "{folder}: {files:?}");
        for (file, (version, _, sql)) in files.iter().zip(embedded) {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            assert!(
                name.starts_with(&format!("{version:04}_")),
                "{folder}: {name} is not version {version}"
            );
            let on_disk = std::fs::read_to_string(file).expect("a migration");
            assert_eq!(&on_disk, sql, "{folder}: {name} differs from what is embedded");
        }
    }

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        assert_every_file_is_embedded("sqlite", super::sqlite::MIGRATIONS);
        assert_every_file_is_embedded("postgres", super::postgres::MIGRATIONS);
    }
}
