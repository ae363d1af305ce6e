//! Running `sipsimd` as an operator does: its argument lists, and what a finished run must show.

use std::process::Output;

/// The words of a command line, split at white space: `argv!("integration set --account {account}")`.
/// For arguments without spaces (ids, URLs, flags); a name with a space goes in an array instead.
macro_rules! argv {
    ($($fmt:tt)+) => {
        &format!($($fmt)+).split_whitespace().collect::<Vec<&str>>()[..]
    };
}
pub(crate) use argv;

/// Asserts that a command ran and exited 0, showing everything it wrote if not; its output.
#[track_caller]
pub fn succeeded(out: std::io::Result<Output>) -> Output {
    let out = out.expect("the command could not be started");
    assert!(
        out.status.success(),
        "exit {:?}; stdout: {}; stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What a killed node's deliveries must all reach in the database, counted by [`until_count`].
pub const SUCCEEDED: &str = "SELECT count(*) FROM deliveries WHERE status = 'succeeded'";

/// Calls `count` every 20 ms until it returns `want` or `within` has passed; its last answer.
pub async fn until_count(
    want: i64,
    within: std::time::Duration,
    mut count: impl AsyncFnMut() -> i64,
) -> i64 {
    let deadline = std::time::Instant::now() + within;
    loop {
        let n = count().await;
        if n == want || std::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
