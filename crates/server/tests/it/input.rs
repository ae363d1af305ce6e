//! Bad input on `/api/v2`: odd event names, wrong methods, unknown paths, oversized bodies.
//! Each gets the envelope, a clear message, and changes nothing.

use reqwest::Method;

use crate::helpers::{Fetch, TestApp, assert_error};

fn unknown(echo: &str) -> String {
    format!(
        "Unknown event '{echo}'. Use GET /api/v2/webhooks/available for the list of valid events."
    )
}

#[tokio::test]
async fn odd_event_names_are_400_echoed_safely_and_change_nothing() {
    let (app, account, token) = TestApp::spawn_ready(&["sms"]).await;
    let long = "a".repeat(10 * 1024);
    let cases: Vec<(String, String)> = vec![
        ("foo%2Fbar".into(), "foo/bar".into()),
        ("..%2F..%2Fetc%2Fpasswd".into(), "../../etc/passwd".into()),
        ("%C3%A9v%C3%A9nement".into(), "événement".into()),
        ("%F0%9F%93%9E".into(), "📞".into()),
        ("bad%FFutf8".into(), "bad\u{FFFD}utf8".into()),
        (long.clone(), format!("{}…", "a".repeat(64))),
        (
            "sms'%3B%20DROP%20TABLE%20integrations%3B--".into(),
            "sms'; DROP TABLE integrations;--".into(),
        ),
        ("%3Cscript%3Ealert(1)%3C%2Fscript%3E".into(), "<script>alert(1)</script>".into()),
        ("SMS".into(), "SMS".into()),
        ("sms%20".into(), "sms ".into()),
        ("%00".into(), "\u{0}".into()),
        ("test".into(), "test".into()),
        ("%22quoted%22".into(), "\"quoted\"".into()),
    ];
    for (raw, echo) in &cases {
        let path = format!("/api/v2/webhooks/{raw}");
        for method in [Method::POST, Method::DELETE] {
            let r = app.call(method.clone(), &path, Some(&token)).await;
            assert_error(&r, 400, &unknown(echo), &path);
        }
    }
    let stored = app.store.get_integration(&account).await.unwrap().unwrap();
    assert_eq!(stored.events.names(), ["sms"]);
    let (status, _, body) = app.get("/api/v2/webhooks", &token).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], serde_json::json!([{ "event": "sms" }]));
}

#[tokio::test]
async fn wrong_methods_are_405_before_auth() {
    let (app, _, token) = TestApp::spawn_ready(&[]).await;
    let cases = [
        (Method::PUT, "/api/v2/webhooks/sms", "POST, DELETE"),
        (Method::PATCH, "/api/v2/webhooks/sms", "POST, DELETE"),
        (Method::GET, "/api/v2/webhooks/sms", "POST, DELETE"),
        (Method::POST, "/api/v2/webhooks", "GET, HEAD"),
        (Method::DELETE, "/api/v2/webhooks", "GET, HEAD"),
        (Method::POST, "/api/v2/webhooks/available", "GET, HEAD"),
        (Method::DELETE, "/api/v2/webhooks/available", "GET, HEAD"),
        (Method::PUT, "/api/v2/webhooks/available", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        for t in [Some(token.as_str()), None] {
            let r = app.call(method.clone(), path, t).await;
            assert_error(
                &r,
                405,
                &format!("Method not allowed. This route answers: {allow}."),
                path,
            );
            assert_eq!(r.1.get("allow").unwrap().to_str().unwrap().replace(',', ", "), allow);
        }
    }
}

#[tokio::test]
async fn unknown_paths_are_404_in_the_envelope_before_auth() {
    let (app, _, token) = TestApp::spawn_ready(&[]).await;
    let paths = [
        "/",
        "/api/v2/webhooks/",
        "/api/v2/webhooks/available/",
        "/API/v2/webhooks",
        "/api/v2/Webhooks",
        "/api/v2/webhooks/sms/extra",
        "/api/v3/webhooks",
        "/api/v2/account",
        "/oauth/token/",
    ];
    for path in paths {
        for t in [Some(token.as_str()), None] {
            for method in [Method::GET, Method::POST] {
                let r = app.call(method, path, t).await;
                assert_error(
                    &r,
                    404,
                    "Not found. GET /api/v2/openapi.json lists the routes this server answers.",
                    path,
                );
            }
        }
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_and_change_nothing() {
    let (app, account, token) = TestApp::spawn_ready(&["sms"]).await;
    let resp = app
        .http
        .post(app.url("/api/v2/webhooks/rating"))
        .bearer_auth(&token)
        .body(vec![b'x'; 17 * 1024])
        .fetch()
        .await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap();
    assert_error(
        &(status, headers, body),
        413,
        "Request body too large (the limit is 16 KiB).",
        "/api/v2/webhooks/rating",
    );
    let stored = app.store.get_integration(&account).await.unwrap().unwrap();
    assert_eq!(stored.events.names(), ["sms"]);

    // A small body on enable is ignored: the event is in the path.
    let resp = app
        .http
        .post(app.url("/api/v2/webhooks/rating"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"ignored": true}))
        .fetch()
        .await;
    assert_eq!(resp.status(), 200);
}

/// A body sent in chunks, no length declared, is cut off where it passes the route's limit: the
/// 413 comes in the envelope with that route's limit (without the limit, these bodies of spaces
/// would be read whole and refused as malformed, 400).
#[tokio::test]
async fn a_body_streamed_past_the_limit_is_413_with_that_routes_limit() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "/oauth/token",
            "application/x-www-form-urlencoded",
            None,
            17 * 1024,
            "Request body too large (the limit is 16 KiB).",
        ),
        (
            "/internal/v1/events",
            "application/json",
            Some(crate::helpers::INGEST_KEY),
            4 * 1024 * 1024 + 64 * 1024,
            "Request body too large (the limit is 4 MiB).",
        ),
    ];
    for (path, content_type, key, size, message) in cases {
        let (status, body) = streamed(&app, path, content_type, key, size).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert_eq!(body["errors"], serde_json::json!([message]), "{path}");
        assert_eq!(body["path"], path);
    }
}

/// POSTs `size` bytes of spaces to `path` with `Transfer-Encoding: chunked`, over a plain socket
/// (an HTTP client that knows the body's length would declare it); the status and the JSON body.
async fn streamed(
    app: &TestApp,
    path: &str,
    content_type: &str,
    key: Option<&str>,
    size: usize,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = app.url("");
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let socket = tokio::net::TcpStream::connect(host).await.unwrap();
    let (mut from, mut to) = socket.into_split();
    // Read from the start: the answer may come, and the socket close, while the body is going out.
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
        }
        answer
    });
    let auth = key.map(|k| format!("authorization: Bearer {k}\r\n"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {content_type}\r\n{}\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        auth.unwrap_or_default()
    );
    to.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 16 * 1024];
    let mut sent = 0;
    // The server may answer and stop reading before the end: a failed write is expected then.
    while sent < size {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if to.write_all(&frame).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = to.write_all(b"0\r\n\r\n").await;
    let answer = reader.await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, json)
}

#[tokio::test]
async fn a_database_failure_is_500_without_internals() {
    use sqlx::Connection;

    let (app, _, token) = TestApp::spawn_ready(&["sms"]).await;
    // Break the database behind the server's back: the table it reads is gone.
    let mut conn = sqlx::SqliteConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("DROP TABLE integrations").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let r = app.get("/api/v2/webhooks", &token).await;
    assert_error(&r, 500, "Internal server error.", "/api/v2/webhooks");
    let text = r.2.to_string().to_lowercase();
    for leak in ["integrations", "sqlite", "no such table", "select"] {
        assert!(!text.contains(leak), "500 body leaks '{leak}': {text}");
    }
    // Routes that need no database still work.
    let r = app.get("/api/v2/webhooks/available", &token).await;
    assert_eq!(r.0, 200);
}

/// Reads from `stream` until it closes or `within` passes; returns what came and whether it closed.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn a_client_trickling_its_head_is_disconnected() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    // One more header line a second, never the blank line that ends the head.
    let closed = loop {
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break true;
        }
        let (_, closed) = read_until_closed(&mut stream, std::time::Duration::from_secs(1)).await;
        if closed {
            break true;
        }
        if started.elapsed()
            > sipsim_server::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(5)
        {
            break false;
        }
    };
    assert!(closed, "still connected after {:?}", started.elapsed());
    assert!(
        started.elapsed() >= sipsim_server::HEADER_READ_TIMEOUT - std::time::Duration::from_secs(1)
    );
}

#[tokio::test]
async fn a_head_over_64_kib_is_refused() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let big =
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(100 * 1024));
    let _ = stream.write_all(big.as_bytes()).await;
    let (answer, closed) = read_until_closed(&mut stream, std::time::Duration::from_secs(5)).await;
    assert!(closed, "the connection stayed open after: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn a_client_trickling_its_body_gets_408_at_30_seconds() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let answer = loop {
        if stream.write_all(b"a").await.is_err() {
            break String::new();
        }
        let (answer, closed) =
            read_until_closed(&mut stream, std::time::Duration::from_secs(1)).await;
        if !answer.is_empty() || closed {
            break answer;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(40), "never cut");
    };
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"status\":408"), "in the envelope: {answer}");
    assert!(
        started.elapsed()
            >= sipsim_server::app::REQUEST_TIMEOUT - std::time::Duration::from_secs(2)
    );
}
