//! The API describes itself: the guest serves `/openapi.json`, the host
//! serves `/docs` and its files. (The browser and schemathesis runs against
//! these are `make test-api`: tests/api/run.py.)

use inlet_e2e::{Server, message, sign};
use serde_json::Value;

#[test]
fn the_guest_serves_an_openapi_document_of_every_route() {
    let server = Server::start();
    let reply = server.get("/openapi.json");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let document = reply.json();
    assert_eq!(document["openapi"], "3.1.0");
    let mut operations: Vec<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    operations.sort();
    let expected = [
        ("delete", "/messages/{message_id}"),
        ("get", "/feed"),
        ("get", "/forwarding"),
        ("get", "/health/live"),
        ("get", "/health/ready"),
        ("get", "/messages"),
        ("get", "/messages/{message_id}"),
        ("get", "/metrics"),
        ("get", "/stats"),
        ("get", "/webhook/whatsapp"),
        ("post", "/forwarding/retry"),
        ("post", "/webhook"),
        ("post", "/webhook/whatsapp"),
    ];
    assert_eq!(operations, expected.map(|(m, p)| (m.to_owned(), p.to_owned())).to_vec());
    // Each operation answers with a status the document gives it.
    let body = message("doc-1", "+15550001", "2025-01-15T10:00:00Z", Some("hi"));
    for (method, path) in expected {
        let concrete = path.replace("{message_id}", "doc-1");
        let reply = match (method, path) {
            ("post", "/webhook") => server.webhook(&body, Some(&sign(&body))),
            ("post", _) => server.post_json(path, "{}", &[]),
            ("delete", _) => server.request("DELETE", &concrete, None),
            _ => server.get(&concrete),
        };
        let documented = &document["paths"][path][method]["responses"][reply.status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {} undocumented",
            reply.status
        );
    }
    assert_eq!(server.request("POST", "/openapi.json", None).status, 405);
}

#[test]
fn error_answers_match_their_documented_shapes() {
    let server = Server::start();
    let document = server.get("/openapi.json").json();
    let schemas = &document["components"]["schemas"];
    let unsigned = server.webhook("{}", None);
    assert_eq!(unsigned.status, 401);
    assert_has_properties(&unsigned.json(), &schemas["Detail"]);
    let invalid = server.get("/messages?limit=0");
    assert_eq!(invalid.status, 422);
    let problem = invalid.json();
    assert_has_properties(&problem, &schemas["ValidationProblem"]);
    assert_has_properties(&problem["detail"][0], &schemas["FieldError"]);
    let page = server.get("/messages").json();
    assert_has_properties(&page, &schemas["Page"]);
    let feed = server.get("/feed").json();
    assert_has_properties(&feed, &schemas["Feed"]);
}

/// `value` holds every property `schema` requires and nothing it does not name.
fn assert_has_properties(value: &Value, schema: &Value) {
    let properties = schema["properties"].as_object().expect("an object schema");
    for required in schema["required"].as_array().unwrap() {
        assert!(
            value.get(required.as_str().unwrap()).is_some(),
            "{value} lacks {required}"
        );
    }
    for key in value.as_object().unwrap().keys() {
        assert!(properties.contains_key(key), "{key} of {value} is not documented");
    }
}

#[test]
fn the_host_serves_the_docs_page_and_its_files() {
    let server = Server::start();
    let page = server.get("/docs");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.body.contains("/openapi.json"), "{}", page.body);
    let files: Vec<&str> = page
        .body
        .split(['"', '\''])
        .filter(|part| part.starts_with("/docs/"))
        .collect();
    assert_eq!(files.len(), 6, "{}", page.body);
    for file in files {
        let reply = server.get(file);
        assert_eq!(reply.status, 200, "{file}");
        assert!(!reply.body.is_empty(), "{file}");
        let kind = reply.header("content-type").unwrap();
        let expected = match file.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            _ => "image/png",
        };
        assert_eq!(kind, expected, "{file}");
    }
    assert!(!page.body.contains("https://"), "the page refers to another site");
    let missing = server.get("/docs/nothing.js");
    assert_eq!(
        (missing.status, missing.json()["detail"].as_str()),
        (404, Some("Not Found"))
    );
    assert_eq!(server.request("POST", "/docs", None).status, 405);
    let counted = r#"http_requests_total{path="/docs",status="200"}"#;
    assert!(server.metrics_showing(&[counted.to_owned()]).contains(counted));
}
