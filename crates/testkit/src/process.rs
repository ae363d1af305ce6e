//! A server process started by a test or a benchmark: the real `sipsimd serve`, or any program
//! that announces its address the same way.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// A child process serving HTTP, and the log lines it wrote after announcing its address.
#[derive(Debug)]
pub struct Serving {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its standard error, line by line, after the line with the address; drained by a thread
    /// whether or not anyone reads it, so the child never blocks on a full pipe.
    pub log: mpsc::Receiver<String>,
}

/// Spawns `command` (e.g. `sipsimd serve --listen 127.0.0.1:0 …`) with standard error piped, and
/// waits for the log line that names its address: `listen=ADDR` in text logs, `"listen":"ADDR"`
/// in JSON ones. Fails if the process exits first.
pub fn spawn_serving(command: &mut Command) -> std::io::Result<Serving> {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().ok_or_else(|| other("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let Some(line) = lines.next() else {
            let _ = child.kill();
            let status = child.wait()?;
            return Err(other(&format!("the server exited ({status}) before serving")));
        };
        if let Some(addr) = announced(&line?) {
            break addr;
        }
    };
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Ok(Serving { child, addr, log })
}

/// Busy clock ticks of the whole machine (every process: the server, the load, the database).
pub fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    fields.iter().sum::<u64>() - idle
}

/// User + system clock ticks of one process.
pub fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// The address a log line announces, if it does.
fn announced(line: &str) -> Option<SocketAddr> {
    let text = line.split("listen=").nth(1).map(|rest| rest.split_whitespace().next());
    let json = || line.split("\"listen\":\"").nth(1).map(|rest| rest.split('"').next());
    text.or_else(json).flatten()?.parse().ok()
}

fn other(message: &str) -> std::io::Error {
    std::io::Error::other(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::announced;

    #[test]
    fn the_address_is_read_from_text_and_json_logs() {
        let text = "2026-12-07T10:00:00Z INFO sipsimd: serving listen=127.0.0.1:4242 version=0.1.0";
        let json = r#"{"level":"INFO","fields":{"message":"serving","listen":"127.0.0.1:4243"}}"#;
        assert_eq!(announced(text).map(|a| a.port()), Some(4242));
        assert_eq!(announced(json).map(|a| a.port()), Some(4243));
        assert_eq!(announced("INFO migrations applied"), None);
    }
}
