//! The measurements. Each returns its checks (the figures the table and chart show) and a JSON
//! section with every run's raw figures; the checks are medians over the runs. One file per
//! measurement; what they share is in `common.rs`.

mod api;
mod common;
mod growth;
mod isolation;
mod latency;
mod throughput;

pub use api::api;
pub use common::{Ctx, Section, median};
pub use growth::growth;
pub use isolation::isolation;
pub use latency::latency;
pub use throughput::{Feed, Load, ordering_cost, throughput};
