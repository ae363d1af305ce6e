//! The HTTP application: routes, the OpenAPI document generated from them, and the layers every
//! request passes through.

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::api::{deliveries, webhooks};
use crate::request::{self, API_BODY_LIMIT};
use crate::state::AppState;
use crate::{ingest, oauth};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SIPSIM Webhooks API",
        description = "Manage which webhook events are delivered to your endpoint, and obtain the OAuth \
                       access tokens that guard it. The webhook URL itself is set in the dashboard.",
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "webhooks", description = "List available and enabled events; enable or disable one."),
        (name = "deliveries", description = "The attempt log: list deliveries, resend one."),
        (name = "oauth", description = "OAuth 2.0 client-credentials tokens."),
        (name = "internal", description = "Event ingest from the telephony core (SIPSIM_INGEST_KEY)."),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
        components.add_security_scheme(
            "ingest_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The documented routes and their OpenAPI document, built from the same handler annotations so that
/// one cannot change without the other.
pub fn api_routes() -> (Router<AppState>, OpenApiDoc) {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    OpenApiRouter::with_openapi(doc)
        .routes(routes!(oauth::issue_token))
        .routes(routes!(webhooks::list_available_events))
        .routes(routes!(webhooks::list_enabled_events))
        .routes(routes!(webhooks::enable_event, webhooks::disable_event))
        .routes(routes!(deliveries::list_deliveries))
        .routes(routes!(deliveries::resend_delivery))
        // Each route's body limit: tower-http refuses a declared length over it at once and cuts
        // off a body that streams past it (axum's extractors answer that 413). `layer` wraps the
        // routes added so far: the API's 16 KiB stops above ingest, which has its own 4 MiB.
        .layer(RequestBodyLimitLayer::new(API_BODY_LIMIT))
        .routes(
            routes!(ingest::ingest_events)
                .layer(RequestBodyLimitLayer::new(ingest::INGEST_BODY_LIMIT)),
        )
        .split_for_parts()
}

/// The OpenAPI document as served at `/api/v2/openapi.json`: the generated one, with the
/// `webhooks` section utoipa cannot express.
pub fn openapi() -> serde_json::Value {
    openapi_of(api_routes().1)
}

fn openapi_of(doc: OpenApiDoc) -> serde_json::Value {
    crate::api::payloads::add_webhooks(serde_json::to_value(doc).unwrap_or_default())
}

/// The longest a request may take to arrive and be answered.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The whole application over `state`.
pub fn app(state: AppState) -> Router {
    let (routes, doc) = api_routes();
    let doc_json = Bytes::from(serde_json::to_vec_pretty(&openapi_of(doc)).unwrap_or_default());
    let routes = routes
        .route("/api/v2/openapi.json", get(move || async move { json_bytes(doc_json.clone()) }))
        .route("/metrics", get(crate::observe_http::metrics))
        .route("/healthz", get(crate::observe_http::healthz))
        .route("/readyz", get(crate::observe_http::readyz))
        .merge(crate::dashboard::routes().layer(RequestBodyLimitLayer::new(API_BODY_LIMIT)))
        // Only requests that matched a route: their template is the metrics' route label.
        .route_layer(MapRequestLayer::new(request::note_route))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state);
    // What every request passes through, outermost first, as one layer around the routed
    // application: axum clones a route's whole layered service for each request, one boxed level
    // per `Router::layer`, so layers stacked on the routes one by one cost an allocation each per
    // request (measured: docs/BENCHMARKS.md, "instructions per request").
    // - The request context sees every answer, the `Allow` header axum adds to a 405 included.
    // - A panic is a 500, never a dropped connection.
    // - A whole request, body included, must be in within 30 s: a client trickling its body is cut.
    // - The limits above are tower-http's; axum's own default (2 MiB) would cut ingest's 4 MiB.
    let every_request = ServiceBuilder::new()
        .layer(from_fn(request::context))
        .layer(CatchPanicLayer::custom(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(DefaultBodyLimit::disable());
    Router::new().fallback_service(routes).layer(every_request)
}

fn json_bytes(body: Bytes) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
