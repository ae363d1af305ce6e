//! A local webhook receiver whose answers a test scripts, recording every request.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    /// This status, with a short body.
    Status(u16),
    /// This status with `Retry-After: <value>`.
    RetryAfter(u16, &'static str),
    /// Nothing for 30 s: longer than any sender waits.
    Hang,
    /// `302` to this location.
    Redirect(&'static str),
    /// `200` with a body of this many bytes.
    Big(usize),
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// Its path.
    pub path: String,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// The value of header `name`; panics when it is missing or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap_or_else(|_| panic!("the {name} header is not text"))
    }
}

#[derive(Default)]
struct Inner {
    script: Mutex<VecDeque<Reply>>,
    then: Mutex<Option<Reply>>,
    got: Mutex<Vec<Received>>,
    in_progress: AtomicUsize,
    most_in_progress: AtomicUsize,
}

/// A receiver on `127.0.0.1`, answering its script in order and then `200` (or what
/// [`Receiver::always`] said). Cheap to clone: every clone is the same receiver.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
    addr: SocketAddr,
}

/// Counts a request out when its handler ends or is dropped (the sender gave up).
struct InProgress(Arc<Inner>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Receiver {
    /// Starts a receiver answering `script` in order, then `200`.
    pub async fn start(script: Vec<Reply>) -> Receiver {
        let inner = Arc::new(Inner { script: Mutex::new(script.into()), ..Inner::default() });
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port on 127.0.0.1");
        let addr = listener.local_addr().expect("the receiver's address");
        let app = Router::new().fallback(receive).with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { inner, addr }
    }

    /// Starts a receiver answering `statuses` in order, then `200`.
    pub async fn answering(statuses: &[u16]) -> Receiver {
        Receiver::start(statuses.iter().map(|s| Reply::Status(*s)).collect()).await
    }

    /// Starts a receiver that answers every request with `reply`.
    pub async fn always(reply: Reply) -> Receiver {
        let r = Receiver::start(Vec::new()).await;
        *lock(&r.inner.then) = Some(reply);
        r
    }

    /// Answers `reply` from now on, once its script is done (a receiver that starts failing, or
    /// recovers).
    pub fn answer_from_now_on(&self, reply: Reply) {
        *lock(&self.inner.then) = Some(reply);
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` its address and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.inner.got).clone()
    }

    /// Waits until `n` requests arrived (or `within` passed) and returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.requests();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Requests being answered right now.
    pub fn in_progress(&self) -> usize {
        self.inner.in_progress.load(Ordering::SeqCst)
    }

    /// The most requests it was answering at once.
    pub fn most_in_progress(&self) -> usize {
        self.inner.most_in_progress.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = inner.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
    inner.most_in_progress.fetch_max(now, Ordering::SeqCst);
    let _counted = InProgress(inner.clone());
    lock(&inner.got).push(Received {
        headers,
        body,
        path: uri.path().to_owned(),
        at: Instant::now(),
    });
    let scripted = lock(&inner.script).pop_front();
    let reply = scripted.or(*lock(&inner.then)).unwrap_or(Reply::Status(200));
    let status = |s: u16| StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match reply {
        Reply::Status(s) => (status(s), "receiver says hi").into_response(),
        Reply::RetryAfter(s, after) => (status(s), [("retry-after", after)]).into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        Reply::Redirect(to) => (StatusCode::FOUND, [("location", to)]).into_response(),
        Reply::Big(n) => Response::new(axum::body::Body::from(vec![b'x'; n])),
    }
}
