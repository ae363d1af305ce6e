//! Random bytes from the operating system, for ids, secrets and keys.

/// Returns `N` bytes from the OS's CSPRNG.
///
/// # Panics
/// Only if the operating system cannot provide randomness at all, in which case no secret this
/// system makes could be trusted and stopping is the right answer.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    buf
}
