//! `/api/v2`: the public API SIPSIM's customers code against.

pub mod deliveries;
pub mod webhooks;
