//! [`Exec`] for SQLite's and PostgreSQL's connections: bind the [`Arg`]s in order, run, map
//! nothing (the caller maps errors, so it can still tell a unique violation from the rest).

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Executor as _, SqlSafeStr};

use super::{Arg, Exec};

/// Implements [`Exec`] for one connection type. The two differ only in their types: the bounds
/// sqlx's executors need cannot be carried by a trait (Rust does not imply a trait's where-clauses
/// where it is used), so the body is stated once here and instantiated twice, in this file only.
macro_rules! exec_for {
    ($conn:ty, $db:ty, $row:ty) => {
        #[async_trait]
        impl Exec for $conn {
            type Row = $row;

            async fn run<S: SqlSafeStr + Send>(
                &mut self,
                sql: S,
                args: &[Arg<'_>],
            ) -> Result<u64, sqlx::Error> {
                let query = bind(sqlx::query::<$db>(sql), args);
                Ok(self.execute(query).await?.rows_affected())
            }

            async fn optional<S: SqlSafeStr + Send>(
                &mut self,
                sql: S,
                args: &[Arg<'_>],
            ) -> Result<Option<$row>, sqlx::Error> {
                self.fetch_optional(bind(sqlx::query::<$db>(sql), args)).await
            }

            async fn all<S: SqlSafeStr + Send>(
                &mut self,
                sql: S,
                args: &[Arg<'_>],
            ) -> Result<Vec<$row>, sqlx::Error> {
                self.fetch_all(bind(sqlx::query::<$db>(sql), args)).await
            }
        }
    };
}

/// Binds `args` to `query`, in order.
fn bind<'q, DB>(
    query: sqlx::query::Query<'q, DB, DB::Arguments>,
    args: &[Arg<'_>],
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: sqlx::Database,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    args.iter().fold(query, |query, arg| match *arg {
        Arg::Text(v) => query.bind(v),
        Arg::OptText(v) => query.bind(v),
        Arg::Int(v) => query.bind(v),
        Arg::OptInt(v) => query.bind(v),
        Arg::Bytes(v) => query.bind(v),
        Arg::Bool(v) => query.bind(v),
    })
}

exec_for!(SqliteConnection, sqlx::Sqlite, SqliteRow);
exec_for!(PgConnection, sqlx::Postgres, PgRow);
