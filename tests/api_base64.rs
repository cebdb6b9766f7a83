//! `POST /api/classify` with JSON bodies as clients send them (issue 11, case
//! `api-base64-wrapped`): wrapped base64 (LF, CRLF), `data:` URLs and padding variants score
//! exactly like the plain body; what is not base64 is a 400 that names the problem.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use siglipd::engine::Engine;
use siglipd::http::{router, Api, Classifier, Limits};
use siglipd::model::{Bundle, PrecisionChoice};
use tower::ServiceExt;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn app() -> axum::Router {
    let bundle = Bundle::open(&fixtures().join("tiny")).unwrap();
    let engine = Engine::load(bundle, PrecisionChoice::Auto, true).unwrap();
    let limits = Limits::default();
    let c = Arc::new(Classifier::start(engine, &limits).unwrap());
    router(Api { classifier: Some(c), limits, token: None, live: None, controls: None, examples: None, sinks: None })
}

async fn classify(app: &axum::Router, image: &str) -> (StatusCode, serde_json::Value, String) {
    let body = serde_json::json!({"image": image, "labels": "cat, rocket"}).to_string();
    let req = Request::post("/api/classify").header("content-type", "application/json").body(Body::from(body)).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let text = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    (status, serde_json::from_str(&text).unwrap_or_default(), text)
}

fn wrap(s: &str, eol: &str) -> String {
    s.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(eol) + eol
}

#[tokio::test]
async fn wrapped_and_data_url_bodies_score_like_the_plain_one() {
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("api/api_body_wrapped_base64.json")).unwrap()).unwrap();
    let wrapped = case["image"].as_str().unwrap().to_string();
    let plain: String = wrapped.split_whitespace().collect();
    let app = app();
    let (status, reference, text) = classify(&app, &plain).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    for form in [
        wrapped.clone(),
        wrap(&plain, "\r\n"),
        format!("data:image/jpeg;base64,{}", wrap(&plain, "\n")),
        plain.trim_end_matches('=').to_string(),
    ] {
        let (status, scores, text) = classify(&app, &form).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(scores, reference, "same scores as the plain body");
    }
}

#[tokio::test]
async fn what_is_not_base64_is_refused_naming_the_problem() {
    let app = app();
    for (image, expect) in [
        ("", "image field is empty"),
        ("/9j/4AAQ*SkZJRg==", "'*' at byte 8"),
        ("data:image/jpeg,%FF%D8", "not base64"),
        ("QUJD==QUJD", "padding '=' before the end"),
    ] {
        let (status, _, text) = classify(&app, image).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{image:?}: {text}");
        assert!(text.contains(expect), "{image:?}: {text}");
    }
}
