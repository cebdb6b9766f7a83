//! The HTTP API in-process (tower `oneshot` against the axum router) with the tiny bundle:
//! same scores as `siglipd classify --json`, bounded and clear on bad input, token enforced.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use siglipd::config::Config;
use siglipd::engine::Engine;
use siglipd::http::{check_bind, router, Api, Classifier, Limits};
use siglipd::live::Live;
use siglipd::model::{Bundle, PrecisionChoice};
use siglipd::source::Payload;
use tower::ServiceExt;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn app(token: Option<&str>, limits: Limits) -> axum::Router {
    let bundle = Bundle::open(&fixtures().join("tiny")).unwrap();
    let engine = Engine::load(bundle, PrecisionChoice::Auto, true).unwrap();
    let c = Arc::new(Classifier::start(engine, &limits).unwrap());
    router(Api {
        classifier: Some(c),
        limits,
        token: token.map(str::to_string),
        live: None,
        controls: None,
        examples: None,
        sinks: None,
    })
}

fn multipart(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "XsiglipdX";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if *name == "image" {
            body.extend_from_slice(
                b"Content-Disposition: form-data; name=\"image\"; filename=\"x\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            );
        } else {
            body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
        }
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, serde_json::Value, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null), text)
}

async fn send_raw(app: &axum::Router, req: Request<Body>) -> (StatusCode, axum::body::Bytes) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn classify_req(fields: &[(&str, &[u8])], token: Option<&str>) -> Request<Body> {
    let (ctype, body) = multipart(fields);
    let mut b = Request::post("/api/classify").header("content-type", ctype);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn page_info_and_health() {
    let app = app(None, Limits::default());
    let (s, _, html) = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("id=\"labels\"") && html.contains("This is a photo of {}."));
    assert!(!html.contains("https://"), "the page must not load anything from the internet");
    let (s, info, _) = send(&app, Request::get("/api/info").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(info["precisions"], serde_json::json!(["fp32", "int8", "fp16"]));
    assert_eq!(info["default_precision"], "fp32");
    let (s, _, body) = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "ok\n"));
}

#[tokio::test]
async fn classify_matches_the_cli() {
    let app = app(None, Limits::default());
    let img = fixtures().join("images/rocket.jpg");
    let bytes = std::fs::read(&img).unwrap();
    let (s, v, text) =
        send(&app, classify_req(&[("image", &bytes), ("labels", b"cat, rocket, a cup of coffee"), ("precision", b"fp32")], None))
            .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_siglipd"))
        .args(["-q", "classify", "--model"])
        .arg(fixtures().join("tiny"))
        .args(["--labels", "cat, rocket, a cup of coffee", "--precision", "fp32", "--json"])
        .arg(&img)
        .output()
        .unwrap();
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(v[0]["scores"], cli[0]["scores"], "API and CLI must give the same scores in the same order");

    // JSON with a base64 data URL gives the same answer
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let body = serde_json::json!({"image": format!("data:image/jpeg;base64,{b64}"), "labels": "cat, rocket, a cup of coffee"});
    let req = Request::post("/api/classify").header("content-type", "application/json").body(Body::from(body.to_string())).unwrap();
    let (s, v2, _) = send(&app, req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v2[0]["scores"], cli[0]["scores"]);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_the_server_keeps_serving() {
    let limits = Limits { max_upload_bytes: 200_000, ..Limits::default() };
    let app = app(None, limits);
    let good = std::fs::read(fixtures().join("images/rocket.jpg")).unwrap();
    let truncated = std::fs::read(fixtures().join("images/truncated.jpg")).unwrap();
    let thousand: String = (0..1000).map(|i| format!("l{i}")).collect::<Vec<_>>().join(",");
    let big = vec![0u8; 300_000];
    type Case<'a> = (Vec<(&'a str, &'a [u8])>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("image", b"hello, not an image"), ("labels", b"cat")], StatusCode::BAD_REQUEST, "not a supported image"),
        (vec![("image", &truncated), ("labels", b"cat")], StatusCode::BAD_REQUEST, "cannot decode"),
        (vec![("image", &good), ("labels", b" ")], StatusCode::BAD_REQUEST, "no labels given"),
        (vec![("image", &good), ("labels", b"cat,,dog")], StatusCode::BAD_REQUEST, "label 2 is blank"),
        (vec![("image", &good), ("labels", thousand.as_bytes())], StatusCode::BAD_REQUEST, "too many labels: 1000"),
        (vec![("labels", b"cat")], StatusCode::BAD_REQUEST, "no image uploaded"),
        (vec![("image", &good), ("labels", b"cat"), ("template", b"no placeholder")], StatusCode::BAD_REQUEST, "placeholder"),
        (vec![("image", &good), ("labels", b"cat"), ("precision", b"bf16")], StatusCode::BAD_REQUEST, "unknown precision"),
        (vec![("image", &big), ("labels", b"cat")], StatusCode::PAYLOAD_TOO_LARGE, ""),
    ];
    for (fields, status, needle) in cases {
        let (s, v, text) = send(&app, classify_req(&fields, None)).await;
        assert_eq!(s, status, "{needle}: {text}");
        assert!(v["error"].as_str().unwrap_or(&text).contains(needle), "{needle}: {text}");
    }
    let (s, _, _) =
        send(&app, Request::post("/api/classify").header("content-type", "text/plain").body(Body::from("x")).unwrap()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // still serving
    let (s, _, text) = send(&app, classify_req(&[("image", &good), ("labels", b"cat")], None)).await;
    assert_eq!(s, StatusCode::OK, "{text}");
}

#[tokio::test]
async fn token_is_required_when_set() {
    let app = app(Some("s3cret"), Limits::default());
    let good = std::fs::read(fixtures().join("images/rocket.jpg")).unwrap();
    let (s, v, _) = send(&app, classify_req(&[("image", &good), ("labels", b"cat")], None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["error"].as_str().unwrap().contains("token"));
    let (s, _, _) = send(&app, classify_req(&[("image", &good), ("labels", b"cat")], Some("wrong"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = send(&app, classify_req(&[("image", &good), ("labels", b"cat")], Some("s3cret"))).await;
    assert_eq!(s, StatusCode::OK);
    // the page itself loads without a token, so it can ask for one
    let (s, _, _) = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    assert!(check_bind(&"0.0.0.0:7860".parse().unwrap(), None).is_err());
    assert!(check_bind(&"0.0.0.0:7860".parse().unwrap(), Some("t")).is_ok());
    assert!(check_bind(&"127.0.0.1:7860".parse().unwrap(), None).is_ok());
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let app = app(None, Limits::default());
    let good = std::fs::read(fixtures().join("images/rocket.jpg")).unwrap();
    send(&app, classify_req(&[("image", &good), ("labels", b"cat")], None)).await;
    send(&app, classify_req(&[("image", b"nope"), ("labels", b"cat")], None)).await;
    let (s, _, text) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("siglipd_http_classify_requests_total 2"), "{text}");
    assert!(text.contains("siglipd_http_classify_failed_total 1"), "{text}");
    assert!(text.contains("siglipd_http_classify_seconds_count 1"), "{text}");
    assert!(text.contains("siglipd_http_classify_seconds_bucket{le=\"+Inf\"} 1"), "{text}");
}

fn live_config() -> Config {
    let text = format!(
        "[model]\nbundle = \"{}\"\n[[camera]]\nid = \"door\"\nname = \"Front door\"\nsource = {{ kind = \"files\", path = \"x.png\" }}\n[[camera.label]]\nname = \"cat\"\n[[camera.label]]\nname = \"a parked car\"\n",
        fixtures().join("tiny").display()
    );
    Config::parse(&text, "test", Path::new(".")).unwrap()
}

#[tokio::test]
async fn live_view_endpoints_health_and_metrics() {
    let config = live_config();
    let live = Arc::new(Live::new(&config.cameras));
    let app = router(Api {
        classifier: None,
        limits: Limits::default(),
        token: None,
        live: Some(live.clone()),
        controls: None,
        examples: None,
        sinks: None,
    });

    // nothing yet: camera offline, no frame, not ready
    let (status, body) = send_raw(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("camera door offline"), "{}", String::from_utf8_lossy(&body));
    let (status, body) = send_raw(&app, Request::get("/api/cameras").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list[0]["id"], "door");
    assert_eq!(list[0]["name"], "Front door");
    assert_eq!(list[0]["online"], false);
    assert!(list[0]["state"].is_null());
    assert_eq!(list[0]["labels"][1], serde_json::json!({"name": "a parked car", "on": false, "score": "zero-shot", "fitted": false}));
    let (status, _) = send_raw(&app, Request::get("/api/cameras/door/frame.jpg").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = send_raw(&app, Request::get("/api/cameras/nope/state").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("no camera \\\"nope\\\""), "{}", String::from_utf8_lossy(&body));
    // uploads are off without a classifier: a clear 403
    let (ctype, body) = multipart(&[("image", &std::fs::read(fixtures().join("images/rocket.jpg")).unwrap()), ("labels", b"cat")]);
    let (status, body) =
        send_raw(&app, Request::post("/api/classify").header("content-type", ctype).body(Body::from(body)).unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&body));

    // a scored frame arrives (a PNG: the server must encode it to JPEG)
    let cam = live.camera("door").unwrap();
    assert_eq!(cam.set_source_online(true), Some(true), "the status to publish");
    cam.counters.processed.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
    live.inference_seconds.observe(0.2);
    live.beat();
    let png = std::fs::read(fixtures().join("images/camera_gray.png")).unwrap();
    let state = serde_json::json!({"ts": 12.5, "top": [{"label": "cat", "score": 0.75}], "scores": {"cat": 0.75, "a parked car": 0.1}, "infer_ms": 200.0});
    let msg: siglipd::sink::StateMsg = serde_json::from_value(state.clone()).unwrap();
    cam.update(std::sync::Arc::new(msg), vec![true, false], Payload::Encoded(png), vec![vec![1.0, 0.0]]);

    let (status, body) = send_raw(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    let (status, body) = send_raw(&app, Request::get("/api/cameras/door/state").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let one: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(one["online"], true);
    assert_eq!(one["state"], state);
    assert_eq!(one["labels"][0], serde_json::json!({"name": "cat", "on": true, "score": "zero-shot", "fitted": false}));
    assert_eq!(one["counters"]["processed"], 3);
    let (status, body) = send_raw(&app, Request::get("/api/cameras/door/frame.jpg").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with(&[0xFF, 0xD8]), "not a JPEG");
    let decoded = image::load_from_memory(&body).unwrap();
    let original = image::open(fixtures().join("images/camera_gray.png")).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (original.width(), original.height()));

    let (status, body) = send_raw(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        "siglipd_frames_processed_total{camera=\"door\"} 3",
        "siglipd_frames_dropped_total{camera=\"door\"} 0",
        "siglipd_source_up{camera=\"door\"} 1",
        "siglipd_inference_seconds_bucket{le=\"0.25\"} 1",
        "siglipd_inference_seconds_count 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }

    // score history, by display name or topic id, filtered by time
    {
        let mut h = cam.history.lock().unwrap();
        for i in 0..5 {
            h[1].push(siglipd::history::Point {
                t: 100.0 + i as f64,
                raw: 0.1 * i as f32,
                smoothed: 0.05 * i as f32,
                on: i >= 3,
                n: 1,
            });
        }
    }
    for q in ["label=a%20parked%20car", "label=a_parked_car"] {
        let (status, body) =
            send_raw(&app, Request::get(format!("/api/cameras/door/history?{q}&since=102")).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{q}");
        let h: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(h["label"], "a parked car");
        let pts = h["points"].as_array().unwrap();
        assert_eq!(pts.len(), 3, "{h}");
        assert_eq!(pts[2]["on"], true);
        assert!((pts[2]["raw"].as_f64().unwrap() - 0.4).abs() < 1e-6);
    }
    let (status, _) = send_raw(&app, Request::get("/api/cameras/door/history?label=dog").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // frames that cannot be scored make the camera unhealthy, with the reason
    assert_eq!(cam.set_failing(Some("cannot decode frame".into())), Some(false));
    let (status, body) = send_raw(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("camera door: recent frames could not be scored: cannot decode frame"));
    let (_, body) = send_raw(&app, Request::get("/api/cameras/door/state").body(Body::empty()).unwrap()).await;
    let one: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(one["online"], false);
    assert!(one["problem"].as_str().unwrap().contains("could not be scored"));
}

// ---- issue 15: the service surface -----------------------------------------------------------

fn get_with(path: &str, auth: &str) -> Request<Body> {
    Request::get(path).header("authorization", auth).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn auth_schemes_are_case_insensitive_basic_carries_the_token_and_401_says_how() {
    use base64::Engine as _;
    let app = app(Some("s3cret"), Limits::default());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for ok in [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER  s3cret",
        &format!("Basic {}", b64("anyuser:s3cret")),
        &format!("basic {}", b64(":s3cret")),
    ] {
        let (s, _, body) = send(&app, get_with("/api/info", ok)).await;
        assert_eq!(s, StatusCode::OK, "{ok}: {body}");
    }
    for bad in ["Bearer s3cre", "Bearer s3cret2", &format!("Basic {}", b64("s3cret:wrong")), "Digest s3cret", "s3cret"] {
        let resp = app.clone().oneshot(get_with("/api/info", bad)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{bad}");
        let www = resp.headers().get("www-authenticate").expect("401 carries WWW-Authenticate").to_str().unwrap();
        assert!(www.contains("Bearer") && www.contains("Basic"), "{www}");
    }
}

#[tokio::test]
async fn labels_with_commas_arrays_and_repeated_fields() {
    let app = app(None, Limits::default());
    let img = std::fs::read(fixtures().join("images/chelsea.png")).unwrap();
    let labels = |v: &serde_json::Value| -> Vec<String> {
        let mut l: Vec<String> = v[0]["scores"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap().to_string()).collect();
        l.sort();
        l
    };
    // CSV quoting in the list
    let (s, v, body) = send(&app, classify_req(&[("image", &img), ("labels", br#""a red, white and blue flag", cat"#)], None)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(labels(&v), vec!["a red, white and blue flag", "cat"]);
    // repeated `labels` fields (Python requests sends a list this way): all used
    let (s, v, body) = send(&app, classify_req(&[("image", &img), ("labels", b"cat"), ("labels", b"rocket")], None)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(labels(&v), vec!["cat", "rocket"]);
    // a repeated single-valued field is refused, naming it
    let (s, v, _) = send(&app, classify_req(&[("image", &img), ("image", &img), ("labels", b"cat")], None)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("\"image\" is given twice"), "{v}");
    // a JSON array, with a media type in capitals
    use base64::Engine as _;
    let body =
        serde_json::json!({"image": base64::engine::general_purpose::STANDARD.encode(&img), "labels": ["a cat, sitting", "rocket"]});
    let req = Request::post("/api/classify")
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, v, text) = send(&app, req).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(labels(&v), vec!["a cat, sitting", "rocket"]);
}

/// The template-amplification case: the work a request can cause is bounded by what the model
/// reads, so the 22 KB request is refused at once.
#[tokio::test]
async fn requests_cannot_amplify_work() {
    let app = app(None, Limits::default());
    let img = std::fs::read(fixtures().join("images/chelsea.png")).unwrap();
    let template = "{}".repeat(10_000);
    let long_labels = ["x".repeat(600), "y".repeat(600), "z".repeat(600)].join(", ");
    let started = std::time::Instant::now();
    let (s, v, _) = send(&app, classify_req(&[("image", &img), ("labels", b"cat"), ("template", template.as_bytes())], None)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("at most 256"), "{v}");
    let (s, v, _) = send(&app, classify_req(&[("image", &img), ("labels", long_labels.as_bytes())], None)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("label 1 is 600 characters"), "{v}");
    let (s, _, _) = send(&app, classify_req(&[("image", &img), ("labels", b"cat"), ("template", b"{} and {}")], None)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // refused before any model work (a correctness bound, not a timing test: generous)
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// Connections that never finish their request head are closed, and the cap keeps
/// descriptors for everything else; the server answers again once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_timed_out_and_connections_capped() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let app = app(None, Limits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = siglipd::http::ConnLimits {
        head_timeout: Duration::from_millis(800),
        connection_max: Duration::from_secs(30),
        max_connections: 32,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(siglipd::http::serve_connections(listener, app, limits, async {
        let _ = stop_rx.await;
    }));
    let health = move || -> Option<String> {
        let mut c = std::net::TcpStream::connect(addr).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let result = tokio::task::spawn_blocking(move || {
        // 100 slowloris connections: more than the cap, each sends half a request head
        let slow: Vec<std::net::TcpStream> = (0..100)
            .filter_map(|_| {
                let mut c = std::net::TcpStream::connect(addr).ok()?;
                c.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").ok()?;
                Some(c)
            })
            .collect();
        assert!(slow.len() >= 90);
        // the server closes them after the head timeout: reads return EOF
        std::thread::sleep(Duration::from_millis(1500));
        let t = Instant::now();
        let closed = slow
            .into_iter()
            .filter(|c| {
                let mut c = c;
                c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let mut b = [0u8; 512];
                loop {
                    match c.read(&mut b) {
                        Ok(0) => return true, // closed (perhaps after a 408)
                        Ok(_) => continue,
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
                        Err(_) => return true, // reset
                    }
                }
            })
            .count();
        assert!(t.elapsed() < Duration::from_secs(60));
        let answer = health();
        (closed, answer)
    })
    .await
    .unwrap();
    let (closed, answer) = result;
    assert_eq!(closed, 100, "every slow connection is closed by the server");
    assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")), "the server answers again");
    let _ = stop_tx.send(());
    server.await.unwrap();
}
