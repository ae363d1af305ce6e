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

/// One test per fuzz target, named after it: `inputs!(payload)` runs `fuzz/seeds/payload/` through
/// `sipsim_core::checks::payload`.
macro_rules! inputs {
    ($($target:ident),*) => {$(
        #[test]
        fn $target() {
            each_input(stringify!($target), sipsim_core::checks::$target);
        }
    )*};
}

inputs!(payload, ingest, jwt, webhook_url, address);
