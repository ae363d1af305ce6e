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
