//! `sipsim-store`: the storage backends behind [`sipsim_core::Store`].
//!
//! The SQL both dialects accept is written once (`plain/`), for [`SqlStore`] over either backend;
//! each backend module holds what differs — opening the database, its delivery queue — and
//! `migrations.rs` embeds both dialects' migrations. Nothing outside this crate sees SQL. The
//! server picks a backend from the database URL in exactly one place.

mod migrations;
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

/// Wraps a migration error.
pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Backend(Box::new(e))
}
