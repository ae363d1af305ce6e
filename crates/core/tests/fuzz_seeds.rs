//! Every fuzz seed, and every input a fuzzer ever found a failure with (saved beside the seeds), run
//! through the same property checks as the fuzz targets, on every `cargo test`.

use std::path::Path;

fn each_input(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its check", path.display());
        count += 1;
    }
    assert!(count >= 5, "only {count} inputs for {target}");
}

#[test]
fn payload_inputs() {
    each_input("payload", sipsim_core::checks::payload);
}

#[test]
fn ingest_inputs() {
    each_input("ingest", sipsim_core::checks::ingest);
}

#[test]
fn jwt_inputs() {
    each_input("jwt", sipsim_core::checks::jwt);
}

#[test]
fn webhook_url_inputs() {
    each_input("webhook_url", sipsim_core::checks::webhook_url);
}

#[test]
fn address_inputs() {
    each_input("address", sipsim_core::checks::address);
}
