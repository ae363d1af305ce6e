//! Reading a request by hand, for the receivers that must control their socket (hostile ones, TLS).

use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads one request's head and body (it is small and has a Content-Length); false if the
/// connection ends or fails first.
pub async fn read_request<S: AsyncRead + Unpin>(socket: &mut S) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return true;
            }
        }
    }
}
