//! The OpenAPI document is generated from the routes; these tests fail when the two drift apart.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::TestApp;

async fn document(app: &TestApp) -> Value {
    let (status, _, doc) = app.call(Method::GET, "/api/v2/openapi.json", None).await;
    assert_eq!(status, 200);
    doc
}

#[tokio::test]
async fn every_documented_operation_is_served_and_every_served_route_is_documented() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "delete", "put", "patch"].contains(&method.as_str()) {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    assert_eq!(
        documented,
        [
            "DELETE /api/v2/webhooks/{event}",
            "GET /api/v2/webhook-deliveries",
            "GET /api/v2/webhooks",
            "GET /api/v2/webhooks/available",
            "POST /api/v2/webhook-deliveries/{id}/resend",
            "POST /api/v2/webhooks/{event}",
            "POST /internal/v1/events",
            "POST /oauth/token",
        ]
    );
    // Each documented operation answers (not 404/405) when called without credentials.
    for op in &documented {
        let (method, path) = op.split_once(' ').unwrap();
        let path = path.replace("{event}", "sms").replace("{id}", "dlv_0123456789abcdefghjkmnpqrs");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, _, _) = app.call(method.clone(), &path, None).await;
        assert!(
            status != 404 && status != 405,
            "{method} {path} is documented but answers {status}"
        );
        let template =
            path.replace("/sms", "/{event}").replace("dlv_0123456789abcdefghjkmnpqrs", "{id}");
        let documented_statuses: Vec<u16> = doc["paths"][template][method.as_str().to_lowercase()]
            ["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        assert!(
            documented_statuses.contains(&status.as_u16()),
            "{method} {path} answered {status}, which its document does not list"
        );
    }
}

#[tokio::test]
async fn document_carries_the_contracts_examples_and_scopes() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let text = doc.to_string();
    for needle in [
        "Webhook integration not configured. Set a webhook URL via the dashboard first.",
        "Unknown event 'invalid_event'. Use GET /api/v2/webhooks/available for the list of valid events.",
        "https://example.com/webhooks/sipsim",
        "incoming_call_end_chain_member_call",
    ] {
        assert!(text.contains(needle), "missing example: {needle}");
    }
    assert_eq!(
        doc["paths"]["/api/v2/webhooks/{event}"]["post"]["security"][0]["bearer"],
        serde_json::json!(["webhooks.write"])
    );
    assert_eq!(
        doc["paths"]["/api/v2/webhooks"]["get"]["security"][0]["bearer"],
        serde_json::json!(["webhooks.read"])
    );
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(
        doc["paths"]["/api/v2/webhooks/available"]["get"]["responses"]["200"]["content"]
            ["application/json"]["example"]["data"]
            .as_array()
            .unwrap()
            .len(),
        14
    );
}

/// The `webhooks` section (OpenAPI 3.1): one entry per event the server sends, the 14 and `test`,
/// each with its payload's schema, the documented example and the signature headers.
#[tokio::test]
async fn the_document_lists_every_event_it_sends_under_webhooks() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let webhooks = doc["webhooks"].as_object().expect("a webhooks section");
    let mut names: Vec<&str> = webhooks.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = sipsim_core::Event::CATALOG.iter().map(|e| e.name()).collect();
    expected.push("test");
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for (name, item) in webhooks {
        let body = &item["post"]["requestBody"]["content"]["application/json"];
        assert_eq!(body["schema"]["title"], name.as_str());
        let example: Value = serde_json::from_str(sipsim_core::payload::example_json(
            sipsim_core::Event::from_name(name).unwrap(),
        ))
        .unwrap();
        assert_eq!(body["example"], example, "{name}");
        let headers: Vec<&str> = item["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(headers.contains(&"X-Webhook-Signature") && headers.contains(&"webhook-signature"));
    }
    // What the payloads refer to is in the components.
    assert!(doc["components"]["schemas"]["Timestamp"].is_object());
    assert!(doc["components"]["schemas"]["IncomingEndStatus"].is_object());
}
