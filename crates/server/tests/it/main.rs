//! Integration tests of `sipsimd`: a real server on a real socket over a temporary SQLite file, driven
//! by a real HTTP client. One test binary, one module per concern.

mod auth;
mod backup;
mod browser;
mod cache;
mod cli;
mod cluster;
mod contract;
mod crash;
mod dashboard;
mod deliveries;
mod encryption;
mod helpers;
mod ingest;
mod input;
mod limits;
mod logs;
mod notices;
mod oauth;
mod observe;
mod openapi;
mod process;
mod simulate;
mod storage;
