//! The load generator: keep-alive HTTP/1.1 connections (hyper's client, one request in flight per
//! connection), driven closed-loop (each connection sends its next request when the last answered)
//! or open-loop (requests scheduled at a fixed rate; latency counts from the scheduled instant, so a
//! stalled server cannot hide its stall by slowing the generator down).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub bearer: Option<Arc<str>>,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Call {
    pub fn get(path: &str, bearer: Option<Arc<str>>) -> Self {
        Call {
            method: Method::GET,
            path: path.to_owned(),
            bearer,
            content_type: "application/json",
            body: Bytes::new(),
        }
    }

    pub fn post_json(path: &str, bearer: Option<Arc<str>>, body: Vec<u8>) -> Self {
        Call {
            method: Method::POST,
            path: path.to_owned(),
            bearer,
            content_type: "application/json",
            body: Bytes::from(body),
        }
    }
}

/// What one request did.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Which request (0, 1, … in the order they were handed out).
    pub index: u64,
    /// When it was meant to start (open loop) or started (closed loop).
    pub scheduled: Instant,
    /// When its answer had been read whole.
    pub done: Instant,
    pub status: u16,
    /// The answer's body, when asked for.
    pub body: Option<Bytes>,
}

impl Hit {
    pub fn latency_us(&self) -> u64 {
        self.done.duration_since(self.scheduled).as_micros() as u64
    }
}

/// When a closed loop stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests in all.
    Count(u64),
    /// After this long.
    After(Duration),
}

type Make = Arc<dyn Fn(u64) -> Call + Send + Sync>;

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    call: Call,
    keep_body: bool,
) -> anyhow::Result<(u16, Option<Bytes>)> {
    sender.ready().await?;
    let mut request = Request::builder()
        .method(call.method)
        .uri(call.path)
        .header(hyper::header::HOST, addr.to_string());
    if let Some(token) = call.bearer {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if !call.body.is_empty() {
        request = request.header(hyper::header::CONTENT_TYPE, call.content_type);
    }
    let response = sender.send_request(request.body(Full::new(call.body))?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, keep_body.then_some(body)))
}

/// `connections` connections send `make(i)` back to back until `stop`. Returns every request's hit,
/// in no particular order.
pub async fn closed_loop(
    addr: SocketAddr,
    connections: usize,
    stop: Stop,
    keep_body: bool,
    make: Make,
) -> anyhow::Result<Vec<Hit>> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let mut sender = connect(addr).await?;
        let next = next.clone();
        let make = make.clone();
        tasks.spawn(async move {
            let mut hits = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let go_on = match stop {
                    Stop::Count(n) => index < n,
                    Stop::After(d) => start.elapsed() < d,
                };
                if !go_on {
                    return Ok::<_, anyhow::Error>(hits);
                }
                let scheduled = Instant::now();
                let (status, body) = send(&mut sender, addr, make(index), keep_body).await?;
                hits.push(Hit { index, scheduled, done: Instant::now(), status, body });
            }
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

/// What an open loop did: every request's hit, and how late the schedule released each request
/// (microseconds), which is the generator's error, not the server's.
#[derive(Debug)]
pub struct OpenLoop {
    pub hits: Vec<Hit>,
    pub release_late_us: Vec<u64>,
}

/// Sends `make(i)` at `rate` requests/s for `duration` over at most `connections` connections.
/// Each hit's latency counts from its scheduled instant.
///
/// The schedule runs on a thread of its own, sleeping with the operating system's timer: Tokio's
/// timer wheel fires in whole milliseconds, so a request due at 2.4 ms left at 3 ms or later, and
/// up to a millisecond the server never saw was counted as its latency. A request a busy server
/// has not taken yet still waits in the channel, counted from its scheduled instant.
pub async fn open_loop(
    addr: SocketAddr,
    connections: usize,
    rate: f64,
    duration: Duration,
    keep_body: bool,
    make: Make,
) -> anyhow::Result<OpenLoop> {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let rx = Arc::new(Mutex::new(rx));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let mut sender = connect(addr).await?;
        let rx = rx.clone();
        let make = make.clone();
        tasks.spawn(async move {
            let mut hits = Vec::new();
            loop {
                let next = rx.lock().await.recv().await;
                let Some((index, scheduled)) = next else {
                    return Ok::<_, anyhow::Error>(hits);
                };
                let (status, body) = send(&mut sender, addr, make(index), keep_body).await?;
                hits.push(Hit { index, scheduled, done: Instant::now(), status, body });
            }
        });
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let ticker = std::thread::spawn(move || {
        let start = Instant::now();
        let mut late = Vec::with_capacity(total as usize);
        for index in 0..total {
            let at = start + period.mul_f64(index as f64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            late.push(Instant::now().saturating_duration_since(at).as_micros() as u64);
            // The scheduled instant, not now: a late tick still counts from when it was due.
            if tx.send((index, at)).is_err() {
                break;
            }
        }
        late
    });
    let mut hits = Vec::new();
    while let Some(done) = tasks.join_next().await {
        hits.extend(done??);
    }
    let release_late_us = tokio::task::spawn_blocking(move || ticker.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the load schedule's thread panicked"))?;
    Ok(OpenLoop { hits, release_late_us })
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(mut values: Vec<u64>) -> Self {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_unstable();
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Percentiles { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: at(1.0) }
    }

    pub fn ms(us: u64) -> f64 {
        us as f64 / 1000.0
    }
}
