//! `sipsim-store`: the storage backends behind [`sipsim_core::Store`].
//!
//! Each backend lives in its own module with its own migrations folder and SQL; nothing outside this
//! crate sees SQL. The server picks a backend from the database URL in exactly one place.

pub mod postgres;
mod rows;
pub mod sqlite;
pub mod testing;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use sipsim_core::StoreError;

/// Wraps a sqlx error, keeping it as the source for the logs.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Wraps a migration error.
pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Backend(Box::new(e))
}
