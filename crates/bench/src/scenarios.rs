//! The measurements. Each returns its checks (the figures the table and chart show) and a JSON
//! section with every run's raw figures; the checks are medians over the runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::{self, Backend, Db};
use crate::load::{self, Call, Percentiles, Stop};
use crate::mix::{self, Mix};
use crate::node::{self, INGEST_KEY, Served};
use crate::receiver::Receiver;
use crate::report::{Check, Cmp};

/// Everything the scenarios share.
#[derive(Debug)]
pub struct Ctx {
    pub sipsimd: PathBuf,
    pub receiver: Receiver,
    pub quick: bool,
    pub runs: usize,
    /// Events/s of the end-to-end latency runs (default 500; 200 with --quick).
    pub latency_rate: Option<f64>,
}

impl Ctx {
    /// `full` in a full run, `quick` in a smoke run.
    fn size<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// What a scenario reports.
#[derive(Debug, Default)]
pub struct Section {
    pub checks: Vec<Check>,
    pub json: Value,
}

pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn medians(runs: &[Value], key: &str) -> f64 {
    median(runs.iter().filter_map(|r| r[key].as_f64()).collect())
}

fn ingest_key() -> Option<Arc<str>> {
    Some(Arc::from(INGEST_KEY))
}

/// Runs one sipsimd on a fresh database whose accounts point at `urls`.
async fn node(
    ctx: &Ctx,
    backend: Backend,
    urls: &[String],
) -> anyhow::Result<(Db, Served, Vec<String>)> {
    let db = Db::new(backend).await?;
    let store = db.store().await?;
    let accounts = fixture::accounts(store.as_ref(), urls).await?;
    let accounts = accounts.iter().map(ToString::to_string).collect();
    drop(store);
    let served = node::sipsimd(&ctx.sipsimd, &db.url, &[])?;
    Ok((db, served, accounts))
}

fn ok_urls(receiver: &Receiver, n: usize) -> Vec<String> {
    (0..n).map(|i| receiver.ok_url(i)).collect()
}

/// Asks `/oauth/token` for a token with `webhooks.read`.
async fn token(ctx: &Ctx, db: &Db, served: &Served, account: &str) -> anyhow::Result<Arc<str>> {
    let created = node::operator(
        &ctx.sipsimd,
        &db.url,
        &[
            "client",
            "create",
            "--account",
            account,
            "--scopes",
            "webhooks.read",
        ],
    )?;
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        created["client_id"].as_str().unwrap_or_default(),
        created["client_secret"].as_str().unwrap_or_default()
    );
    let mut call = Call::post_json("/oauth/token", None, form.into_bytes());
    call.content_type = "application/x-www-form-urlencoded";
    let hits = load::closed_loop(
        served.addr,
        1,
        Stop::Count(1),
        true,
        Arc::new(move |_| call.clone()),
    )
    .await?;
    let body = hits
        .first()
        .and_then(|h| h.body.clone())
        .unwrap_or_default();
    let answer: Value = serde_json::from_slice(&body)?;
    let token = answer["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no token in {answer}"))?;
    Ok(Arc::from(token))
}

/// Requests/s and latency of a closed loop.
fn rate_of(hits: &[load::Hit], expect: u16) -> anyhow::Result<(f64, Percentiles)> {
    let bad = hits.iter().filter(|h| h.status != expect).count();
    anyhow::ensure!(
        bad == 0,
        "{bad} of {} requests did not answer {expect}",
        hits.len()
    );
    let first = hits.iter().map(|h| h.scheduled).min();
    let last = hits.iter().map(|h| h.done).max();
    let secs = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let rate = if secs > 0.0 {
        hits.len() as f64 / secs
    } else {
        0.0
    };
    Ok((
        rate,
        Percentiles::of(hits.iter().map(|h| h.latency_us()).collect()),
    ))
}

/// 1 and 6: `GET /api/v2/webhooks` against a trivial axum handler, and the idle node's memory.
pub async fn api(ctx: &Ctx, backend: Backend) -> anyhow::Result<Section> {
    let (db, served, accounts) = node(ctx, backend, &ok_urls(&ctx.receiver, 1)).await?;
    let bearer = token(ctx, &db, &served, &accounts[0]).await?;
    // Idle: started, migrated, one token issued, nothing else.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_kib, _) = served.rss_kib();
    let baseline = node::baseline()?;
    let duration = ctx.size(Duration::from_secs(10), Duration::from_millis(500));
    let connections = 32;
    let ours_call = Call::get("/api/v2/webhooks", Some(bearer));
    let base_call = Call::get("/api/v2/webhooks", None);
    let mut runs = Vec::new();
    for _ in 0..ctx.runs {
        let mut run = json!({});
        for (name, addr, call) in [
            ("baseline", baseline.addr, &base_call),
            ("sipsimd", served.addr, &ours_call),
        ] {
            let call = call.clone();
            let make: Arc<dyn Fn(u64) -> Call + Send + Sync> = Arc::new(move |_| call.clone());
            // Warm up: connections, caches, the allocator.
            load::closed_loop(
                addr,
                connections,
                Stop::After(duration / 5),
                false,
                make.clone(),
            )
            .await?;
            let hits =
                load::closed_loop(addr, connections, Stop::After(duration), false, make).await?;
            let (rate, p) = rate_of(&hits, 200)?;
            run[format!("{name}_rps")] = json!(rate);
            run[format!("{name}_p50_ms")] = json!(Percentiles::ms(p.p50));
            run[format!("{name}_p99_ms")] = json!(Percentiles::ms(p.p99));
        }
        run["ratio"] = json!(
            run["sipsimd_rps"].as_f64().unwrap_or(0.0)
                / run["baseline_rps"].as_f64().unwrap_or(1.0)
        );
        runs.push(run);
    }
    drop(baseline);
    drop(served);
    db.remove().await;
    let b = backend.name();
    let rps = medians(&runs, "sipsimd_rps");
    let base = medians(&runs, "baseline_rps");
    let checks = vec![
        Check::info(
            format!("api {b}: GET /webhooks"),
            rps,
            "req/s",
            format!("32 connections; baseline axum handler {:.0} req/s", base),
        ),
        Check::info(
            format!("api {b}: ratio to baseline"),
            medians(&runs, "ratio"),
            "×",
            "median of each run's ratio",
        )
        .target(Cmp::AtLeast, 0.5),
        Check::info(
            format!("api {b}: p50"),
            medians(&runs, "sipsimd_p50_ms"),
            "ms",
            format!("baseline {} ms", medians(&runs, "baseline_p50_ms")),
        ),
        Check::info(
            format!("api {b}: p99"),
            medians(&runs, "sipsimd_p99_ms"),
            "ms",
            format!("baseline {} ms", medians(&runs, "baseline_p99_ms")),
        )
        .target(Cmp::AtMost, 5.0),
        Check::info(
            format!("memory {b}: idle RSS"),
            idle_kib as f64 / 1024.0,
            "MB",
            "sipsimd serve after start, 2 s idle",
        )
        .target(Cmp::AtMost, 20.0),
    ];
    Ok(Section {
        checks,
        json: json!({ "backend": b, "connections": connections, "seconds": duration.as_secs_f64(), "idle_rss_kib": idle_kib, "runs": runs }),
    })
}

/// How events enter in a throughput run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// One event per ingest request, 64 connections.
    Single,
    /// 1,000 events per request, 4 requests in flight.
    Batched,
}

/// One throughput measurement: what is sent, how, and to how many accounts.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub mix: Mix,
    pub feed: Feed,
    pub accounts: usize,
}

impl Load {
    /// The runs the harness makes: the SIPSIM mix both ways (the headline), call events alone over
    /// 20 accounts and for one account, and SMS alone (the unordered path, for the cost ratio).
    pub const ALL: [Load; 6] = [
        Load {
            mix: Mix::Sipsim,
            feed: Feed::Single,
            accounts: 20,
        },
        Load {
            mix: Mix::Sipsim,
            feed: Feed::Batched,
            accounts: 20,
        },
        Load {
            mix: Mix::Calls,
            feed: Feed::Batched,
            accounts: 20,
        },
        Load {
            mix: Mix::Calls,
            feed: Feed::Batched,
            accounts: 1,
        },
        Load {
            mix: Mix::Sms,
            feed: Feed::Batched,
            accounts: 20,
        },
        Load {
            mix: Mix::Sipsim,
            feed: Feed::Batched,
            accounts: 1,
        },
    ];

    pub fn label(self) -> String {
        let feed = match self.feed {
            Feed::Single => "single-event",
            Feed::Batched => "batches of 1,000",
        };
        let accounts = match self.accounts {
            1 => "one account".to_owned(),
            n => format!("{n} accounts"),
        };
        format!("{}, {feed}, {accounts}", self.mix.name())
    }

    /// The target for this load on `backend`, deliveries/s.
    fn target(self, backend: Backend) -> Option<f64> {
        let sqlite = backend == Backend::Sqlite;
        match (self.mix, self.feed, self.accounts) {
            (Mix::Sipsim | Mix::Calls, Feed::Batched, 20) => {
                Some(if sqlite { 8_000.0 } else { 4_000.0 })
            }
            (Mix::Calls, Feed::Batched, 1) => Some(if sqlite { 3_000.0 } else { 2_000.0 }),
            (Mix::Sipsim, Feed::Single, _) => Some(if sqlite { 3_000.0 } else { 2_500.0 }),
            _ => None,
        }
    }
}

/// 2 and 6: ingest → 2xx at the receiver, the machine's CPU per delivery, and the node's peak RSS.
pub async fn throughput(ctx: &Ctx, backend: Backend, load: Load) -> anyhow::Result<Section> {
    let urls = ok_urls(&ctx.receiver, load.accounts);
    let (db, served, accounts) = node(ctx, backend, &urls).await?;
    // One account gets a fifth of the events: a backlog of 20,000 is already minutes of its traffic.
    let (events, connections, per_request) = match (load.feed, load.accounts) {
        (Feed::Single, _) => (ctx.size(30_000, 300), 64, 1),
        (Feed::Batched, 1) => (ctx.size(20_000, 1_000), 4, 1_000),
        (Feed::Batched, _) => (ctx.size(100_000, 2_000), 4, 1_000),
    };
    // Warm up: every integration's connection pool, the store's caches.
    let warm = mix::items(load.mix, &accounts, 200.max(load.accounts * 10), 0);
    let before = ctx.receiver.ok_count();
    send_all(served.addr, &mix::batches(&warm, 100), 2).await?;
    ctx.receiver
        .wait_for(
            before + warm.len() as u64,
            Duration::from_secs(60),
            Receiver::ok_count,
        )
        .await
        .ok_or_else(|| anyhow::anyhow!("warm-up deliveries never arrived"))?;

    let mut runs = Vec::new();
    let mut ordered = 0.0;
    for run in 0..ctx.runs {
        // Fresh calls each run (a call's events are ordered behind its earlier ones).
        let items = mix::items(load.mix, &accounts, events, run as u64 + 1);
        ordered = mix::ordered_share(&items);
        let bodies = mix::batches(&items, per_request);
        let before = ctx.receiver.ok_count();
        let (busy0, own0) = (node::machine_busy_ticks(), served.cpu_ticks());
        let t0 = Instant::now();
        let hits = send_all(served.addr, &bodies, connections).await?;
        let ingested = t0.elapsed();
        let (ingest_rate, _) = rate_of(&hits, 202)?;
        let done = ctx
            .receiver
            .wait_for(
                before + events as u64,
                Duration::from_secs(600),
                Receiver::ok_count,
            )
            .await
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "only {} of {events} delivered",
                    ctx.receiver.ok_count() - before
                )
            })?;
        let secs = done.duration_since(t0).as_secs_f64();
        let (busy1, own1) = (node::machine_busy_ticks(), served.cpu_ticks());
        runs.push(json!({
            "deliveries_per_s": events as f64 / secs,
            "ingest_requests_per_s": ingest_rate,
            "ingest_seconds": ingested.as_secs_f64(),
            "ingest_events_per_s": events as f64 / ingested.as_secs_f64(),
            "seconds": secs,
            "machine_cpu_ms_per_delivery": (busy1 - busy0) as f64 * node::MS_PER_TICK / events as f64,
            "sipsimd_cpu_ms_per_delivery": (own1 - own0) as f64 * node::MS_PER_TICK / events as f64,
        }));
    }
    let (_, peak_kib) = served.rss_kib();
    // The receiver's own rate, driven directly by the same generator: the ceiling on this machine.
    let receiver_rps = {
        let payload = Arc::new(fixture::sms_payload());
        let hits = load::closed_loop(
            ctx.receiver.addr,
            64,
            Stop::After(ctx.size(Duration::from_secs(3), Duration::from_millis(300))),
            false,
            Arc::new(move |_| Call::post_json("/ok/0", None, payload.as_bytes().to_vec())),
        )
        .await?;
        rate_of(&hits, 200)?.0
    };
    drop(served);
    db.remove().await;
    let b = backend.name();
    let rate = medians(&runs, "deliveries_per_s");
    let cpu = medians(&runs, "machine_cpu_ms_per_delivery");
    let label = load.label();
    let mut delivered = Check::info(
        format!("delivery {b}: {label}"),
        rate,
        "/s",
        format!(
            "ingest alone {:.0}/s; {:.0} % ordered; {:.2}× the receiver's own {:.0} req/s; Svix here: 575–660/s",
            medians(&runs, "ingest_events_per_s"),
            ordered * 100.0,
            rate / receiver_rps,
            receiver_rps
        ),
    );
    if let Some(t) = load.target(backend) {
        delivered = delivered.target(Cmp::AtLeast, t);
    }
    let mut checks = vec![delivered];
    // CPU and memory for the headline batched run and the call-events run.
    if load.feed == Feed::Batched && load.accounts > 1 && load.mix != Mix::Sms {
        let cpu_target = if backend == Backend::Sqlite { 0.3 } else { 0.4 };
        checks.push(
            Check::info(
                format!("delivery {b}: {label}: machine CPU"),
                cpu,
                "ms/deliv",
                format!(
                    "sipsimd itself {:.3} ms; Svix here: 2.6–3.3 ms",
                    medians(&runs, "sipsimd_cpu_ms_per_delivery")
                ),
            )
            .target(Cmp::AtMost, cpu_target),
        );
        checks.push(
            Check::info(
                format!("memory {b}: peak RSS ({label})"),
                peak_kib as f64 / 1024.0,
                "MB",
                "sipsimd VmHWM after the runs",
            )
            .target(Cmp::AtMost, 100.0),
        );
    }
    Ok(Section {
        checks,
        json: json!({ "backend": b, "load": label, "events": events, "connections": connections, "accounts": load.accounts, "ordered_share": ordered, "receiver_rps": receiver_rps, "peak_rss_kib": peak_kib, "runs": runs }),
    })
}

/// Ordered ÷ unordered: what a call event costs against an SMS, batched over 20 accounts, for
/// ingest alone and end to end (cost = 1 / rate).
pub fn ordering_cost(backend: Backend, calls: &Section, sms: &Section) -> Vec<Check> {
    let of = |s: &Section, key: &str| {
        medians(
            s.json["runs"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
            key,
        )
    };
    let b = backend.name();
    let ingest = of(sms, "ingest_events_per_s") / of(calls, "ingest_events_per_s");
    let delivery = of(sms, "deliveries_per_s") / of(calls, "deliveries_per_s");
    vec![
        Check::info(
            format!("ordered ÷ unordered {b}: ingest cost"),
            ingest,
            "×",
            format!(
                "call events {:.0}/s vs sms {:.0}/s ingested",
                of(calls, "ingest_events_per_s"),
                of(sms, "ingest_events_per_s")
            ),
        )
        .target(Cmp::AtMost, 1.3),
        Check::info(
            format!("ordered ÷ unordered {b}: delivery cost"),
            delivery,
            "×",
            format!(
                "call events {:.0}/s vs sms {:.0}/s delivered",
                of(calls, "deliveries_per_s"),
                of(sms, "deliveries_per_s")
            ),
        )
        .target(Cmp::AtMost, 1.3),
    ]
}

/// Sends every body to the ingest endpoint over `connections`, each request once, in order of
/// sending.
async fn send_all(
    addr: std::net::SocketAddr,
    bodies: &[Vec<u8>],
    connections: usize,
) -> anyhow::Result<Vec<load::Hit>> {
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(bodies.to_vec());
    let n = bodies.len() as u64;
    load::closed_loop(
        addr,
        connections.min(bodies.len()).max(1),
        Stop::Count(n),
        false,
        Arc::new(move |i| {
            Call::post_json(
                "/internal/v1/events",
                ingest_key(),
                bodies[i as usize].clone(),
            )
        }),
    )
    .await
}

/// Sends `rate` single-event ingest requests/s for `duration`, SIPSIM's mix over `accounts`, and
/// returns the latency from each request's scheduled instant to its arrival at the receiver, for the
/// messages that arrived at a healthy endpoint (`skip` names an account whose messages are not
/// waited for). `seed` picks the calls (a fresh seed per run, so no call is sent twice).
async fn latencies(
    ctx: &Ctx,
    served: &Served,
    accounts: &[String],
    rate: f64,
    duration: Duration,
    skip: Option<&str>,
    seed: u64,
) -> anyhow::Result<Latencies> {
    let n = (rate * duration.as_secs_f64() * 1.1) as usize + 100;
    let items = Arc::new(mix::items(Mix::Sipsim, accounts, n, seed));
    let make = {
        let items = items.clone();
        Arc::new(move |i: u64| {
            let body = items[i as usize % items.len()].body.clone().into_bytes();
            Call::post_json("/internal/v1/events", ingest_key(), body)
        })
    };
    ctx.receiver.take_arrivals();
    ctx.receiver.record(true);
    let load::OpenLoop {
        hits,
        release_late_us,
    } = load::open_loop(served.addr, 16, rate, duration, true, make).await?;
    let mut sent: HashMap<String, Instant> = HashMap::new();
    for hit in &hits {
        anyhow::ensure!(hit.status == 202, "ingest answered {}", hit.status);
        let account = &accounts[items[hit.index as usize % items.len()].account];
        if Some(account.as_str()) == skip {
            continue;
        }
        let answer: Value = serde_json::from_slice(hit.body.as_deref().unwrap_or_default())?;
        let id = answer["data"][0]["message_id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no message_id in {answer}"))?;
        sent.insert(id.to_owned(), hit.scheduled);
    }
    let mut arrivals = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.len() < sent.len() && Instant::now() < deadline {
        arrivals.extend(ctx.receiver.take_arrivals());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ctx.receiver.record(false);
    let lat: Vec<u64> = sent
        .iter()
        .filter_map(|(id, at)| {
            arrivals
                .get(id)
                .map(|got| got.saturating_duration_since(*at).as_micros() as u64)
        })
        .collect();
    anyhow::ensure!(
        lat.len() == sent.len(),
        "only {} of {} events arrived",
        lat.len(),
        sent.len()
    );
    Ok(Latencies {
        e2e: lat,
        ingest: hits.iter().map(load::Hit::latency_us).collect(),
        release_late: release_late_us,
    })
}

/// One open-loop run's latencies, microseconds.
struct Latencies {
    /// Scheduled instant → the receiver has it.
    e2e: Vec<u64>,
    /// Scheduled instant → the 202 read whole.
    ingest: Vec<u64>,
    /// How late the generator released each request after its scheduled instant.
    release_late: Vec<u64>,
}

/// 3: end-to-end latency at a steady rate.
pub async fn latency(ctx: &Ctx, backend: Backend) -> anyhow::Result<Section> {
    let (db, served, accounts) = node(ctx, backend, &ok_urls(&ctx.receiver, 20)).await?;
    let rate = ctx.latency_rate.unwrap_or(ctx.size(500.0, 200.0));
    let duration = ctx.size(Duration::from_secs(20), Duration::from_secs(1));
    // Warm-up second, not counted.
    latencies(
        ctx,
        &served,
        &accounts,
        rate,
        Duration::from_secs(1),
        None,
        100,
    )
    .await?;
    let mut runs = Vec::new();
    for run in 0..ctx.runs {
        let run_lat = latencies(
            ctx,
            &served,
            &accounts,
            rate,
            duration,
            None,
            101 + run as u64,
        )
        .await?;
        let p = Percentiles::of(run_lat.e2e);
        let i = Percentiles::of(run_lat.ingest);
        let late = Percentiles::of(run_lat.release_late);
        runs.push(json!({
            "p50_ms": Percentiles::ms(p.p50), "p90_ms": Percentiles::ms(p.p90),
            "p99_ms": Percentiles::ms(p.p99), "max_ms": Percentiles::ms(p.max),
            "ingest_p50_ms": Percentiles::ms(i.p50), "ingest_p99_ms": Percentiles::ms(i.p99),
            "release_late_p50_ms": Percentiles::ms(late.p50),
            "release_late_p99_ms": Percentiles::ms(late.p99),
        }));
    }
    drop(served);
    db.remove().await;
    let b = backend.name();
    let checks = vec![
        Check::info(
            format!("end-to-end {b} at {rate}/s: p50"),
            medians(&runs, "p50_ms"),
            "ms",
            format!(
                "ingest request sent → receiver has it (the 202 alone: {} ms; requests left the \
                 schedule {} ms late, p99 {} ms); Svix here 3.4–4.4 ms at 50/s",
                medians(&runs, "ingest_p50_ms"),
                medians(&runs, "release_late_p50_ms"),
                medians(&runs, "release_late_p99_ms")
            ),
        )
        .target(Cmp::AtMost, 3.0),
        Check::info(
            format!("end-to-end {b} at {rate}/s: p99"),
            medians(&runs, "p99_ms"),
            "ms",
            format!(
                "max {} ms; Svix here 5.6–16.6 ms at 50/s",
                medians(&runs, "max_ms")
            ),
        )
        .target(Cmp::AtMost, 15.0),
    ];
    Ok(Section {
        checks,
        json: json!({ "backend": b, "rate_per_s": rate, "seconds": duration.as_secs_f64(), "accounts": 20, "runs": runs }),
    })
}

/// 4: 100 accounts, SIPSIM's mix, with and without one whose receiver hangs; the hanging one starts
/// with a backlog of due deliveries (50,000; 1,000 with --quick), as a bad neighbour has after hours
/// of failing.
pub async fn isolation(ctx: &Ctx, backend: Backend) -> anyhow::Result<Section> {
    let accounts_n = 100;
    let rate = ctx.size(500.0, 200.0);
    let duration = ctx.size(Duration::from_secs(10), Duration::from_secs(1));
    let burst = ctx.size(20_000usize, 1_000);
    let backlog = ctx.size(50_000usize, 1_000);
    let mut conditions = Vec::new();
    for hanging in [false, true] {
        let mut urls = ok_urls(&ctx.receiver, accounts_n);
        if hanging {
            urls[0] = ctx.receiver.hang_url();
        }
        let (db, served, accounts) = node(ctx, backend, &urls).await?;
        let skip = hanging.then(|| accounts[0].clone());
        if hanging {
            // SMS, so that every one of them is due (a call's later events wait for its first).
            let queued = mix::items(Mix::Sms, &accounts[..1], backlog, 99);
            send_all(served.addr, &mix::batches(&queued, 1_000), 2).await?;
        }
        latencies(
            ctx,
            &served,
            &accounts,
            rate,
            Duration::from_secs(1),
            skip.as_deref(),
            200,
        )
        .await?;
        let mut runs = Vec::new();
        for run in 0..ctx.runs {
            let seed = 201 + run as u64;
            let p = Percentiles::of(
                latencies(
                    ctx,
                    &served,
                    &accounts,
                    rate,
                    duration,
                    skip.as_deref(),
                    seed,
                )
                .await?
                .e2e,
            );
            // Throughput: a burst in batches of 1,000 over every account; the healthy ones' rate.
            let items = mix::items(Mix::Sipsim, &accounts, burst, seed + 1000);
            let healthy = items
                .iter()
                .filter(|i| !(hanging && i.account == 0))
                .count() as u64;
            let before = ctx.receiver.ok_count();
            let t0 = Instant::now();
            send_all(served.addr, &mix::batches(&items, 1_000), 4).await?;
            let done = ctx
                .receiver
                .wait_for(
                    before + healthy,
                    Duration::from_secs(300),
                    Receiver::ok_count,
                )
                .await
                .ok_or_else(|| anyhow::anyhow!("healthy deliveries never all arrived"))?;
            runs.push(json!({
                "healthy_p50_ms": Percentiles::ms(p.p50),
                "healthy_p99_ms": Percentiles::ms(p.p99),
                "healthy_per_s": healthy as f64 / done.duration_since(t0).as_secs_f64(),
            }));
        }
        let hung = ctx.receiver.hung_count();
        drop(served);
        db.remove().await;
        conditions.push(
            json!({ "hanging_account": hanging, "runs": runs, "hung_requests_so_far": hung }),
        );
    }
    let of = |i: usize, key: &str| {
        medians(
            conditions[i]["runs"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
            key,
        )
    };
    let b = backend.name();
    let p99_ratio = of(1, "healthy_p99_ms") / of(0, "healthy_p99_ms");
    let rate_ratio = of(1, "healthy_per_s") / of(0, "healthy_per_s");
    let checks = vec![
        Check::info(
            format!("isolation {b}: healthy p99, one hanging ÷ none"),
            p99_ratio,
            "×",
            format!(
                "{} ms vs {} ms at {rate}/s over {accounts_n} accounts; {backlog} due at the hanging one",
                of(1, "healthy_p99_ms"),
                of(0, "healthy_p99_ms")
            ),
        )
        .target(Cmp::AtMost, 1.10),
        Check::info(
            format!("isolation {b}: healthy throughput, one hanging ÷ none"),
            rate_ratio,
            "×",
            format!(
                "{:.0}/s vs {:.0}/s, bursts of {burst} in batches of 1,000",
                of(1, "healthy_per_s"),
                of(0, "healthy_per_s")
            ),
        )
        .target(Cmp::AtLeast, 0.95),
    ];
    Ok(Section {
        checks,
        json: json!({ "backend": b, "backlog": backlog, "accounts": accounts_n, "rate_per_s": rate, "seconds": duration.as_secs_f64(), "burst": burst, "conditions": conditions }),
    })
}

/// 5: the cost of claiming and completing deliveries with a small and a large queue behind them,
/// through the store itself (what the dispatcher calls), 64 at a time as the dispatcher claims.
pub async fn growth(ctx: &Ctx, backend: Backend) -> anyhow::Result<Section> {
    let sizes = ctx.size([10_000usize, 1_000_000], [1_000, 10_000]);
    let measured = ctx.size(10_000usize, 500);
    let mut points = Vec::new();
    for queued in sizes {
        let (db, store, ids) = fixture::store_with_accounts(backend, 10).await?;
        let body = fixture::sms_payload().into_bytes();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        let t_fill = Instant::now();
        let mut filled = 0;
        while filled < queued {
            // Up to ten batches of 1,000 per call (one group commit), never past `queued`.
            let left = queued - filled;
            let groups: Vec<Vec<sipsim_core::queue::NewMessage>> =
                (0..left.div_ceil(1_000).min(10))
                    .map(|g| {
                        (0..1_000.min(left - g * 1_000))
                            .map(|k| sipsim_core::queue::NewMessage {
                                account_id: ids[(g + k) % ids.len()].clone(),
                                event: sipsim_core::Event::Sms,
                                body: body.clone(),
                                ordering_key: None,
                                idempotency_key: None,
                            })
                            .collect()
                    })
                    .collect();
            let refs: Vec<&[sipsim_core::queue::NewMessage]> =
                groups.iter().map(Vec::as_slice).collect();
            for group in store.ingest_groups(&refs, now).await? {
                filled += group?.len();
            }
        }
        let fill_secs = t_fill.elapsed().as_secs_f64();
        let mut claim = Duration::ZERO;
        let mut complete = Duration::ZERO;
        let mut done = 0;
        while done < measured {
            let t = Instant::now();
            let claimed = store
                .claim_due(now + 1, 64, 60_000, &sipsim_core::queue::Shares::UNLIMITED)
                .await?;
            claim += t.elapsed();
            anyhow::ensure!(!claimed.is_empty(), "nothing left to claim after {done}");
            let finished: Vec<sipsim_core::queue::FinishedAttempt> = claimed
                .iter()
                .map(|c| sipsim_core::queue::FinishedAttempt {
                    id: c.id.clone(),
                    lease_token: c.lease_token.clone(),
                    record: sipsim_core::queue::AttemptRecord {
                        started_at_ms: now,
                        duration_ms: 1,
                        status_code: Some(200),
                        error: None,
                        response_snippet: None,
                    },
                    completion: sipsim_core::queue::Completion::Succeeded,
                })
                .collect();
            let t = Instant::now();
            store.complete(&finished).await?;
            complete += t.elapsed();
            done += claimed.len();
        }
        drop(store);
        db.remove().await;
        points.push(json!({
            "queued": queued,
            "fill_seconds": fill_secs,
            "fill_per_s": queued as f64 / fill_secs,
            "measured": done,
            "claim_us_per_delivery": claim.as_secs_f64() * 1e6 / done as f64,
            "complete_us_per_delivery": complete.as_secs_f64() * 1e6 / done as f64,
        }));
    }
    let b = backend.name();
    let per = |i: usize| {
        points[i]["claim_us_per_delivery"]
            .as_f64()
            .unwrap_or(f64::NAN)
            + points[i]["complete_us_per_delivery"]
                .as_f64()
                .unwrap_or(f64::NAN)
    };
    let (small, large) = (sizes[0], sizes[1]);
    let checks = vec![
        Check::info(
            format!("growth {b}: claim+complete at {small} queued"),
            per(0),
            "µs/deliv",
            "store calls, 64 per claim",
        ),
        Check::info(
            format!("growth {b}: claim+complete at {large} queued"),
            per(1),
            "µs/deliv",
            "store calls, 64 per claim",
        ),
        Check::info(
            format!("growth {b}: {large} ÷ {small} queued"),
            per(1) / per(0),
            "×",
            "flat means ≈ 1",
        )
        .target(Cmp::AtMost, 1.25),
    ];
    Ok(Section {
        checks,
        json: json!({ "backend": b, "points": points }),
    })
}
