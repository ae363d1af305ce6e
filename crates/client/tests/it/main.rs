//! Tests of `sipsim-client` and the `sipsim` binary against a live server. One test binary.

mod cli;
mod library;
mod support;
