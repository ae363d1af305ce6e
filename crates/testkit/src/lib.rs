//! `sipsim-testkit`: what the tests of several crates share, so that each is written once.
//!
//! - [`receiver::Receiver`]: a local webhook receiver whose answers a test scripts (statuses,
//!   `Retry-After`, hanging, redirects, big bodies), recording every request and counting those in
//!   progress.
//! - [`process::spawn_serving`]: a server process (the real `sipsimd serve`), waited for until it
//!   announces its address, its log kept for the test; [`process::machine_busy_ticks`] and
//!   [`process::process_ticks`], the CPU time the benchmarks divide by the work done.
//! - [`node::spawn`] (feature `node`): a `sipsimd` node built by `Node::build`, serving on a free
//!   port in the test's own process until the handle is dropped.
//!
//! The process-level tests (kill -9, several nodes) spawn the real binary instead; the benchmark's
//! receiver stays its own (it counts latencies at a rate no test needs, see `crates/bench`).

#[cfg(feature = "node")]
pub mod node;
pub mod process;
pub mod receiver;
