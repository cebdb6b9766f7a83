//! `http` source: polls an IP camera's snapshot URL once per interval. An MJPEG stream URL
//! (multipart/x-mixed-replace) also works: each poll takes its first whole frame. A body that
//! is not an image (a login page, video) is an error that says what came and what to use.
use std::io::Read;
use std::time::{Duration, Instant};

use super::mjpeg::Splitter;
use super::sniff::Content;
use super::{Backoff, Frame, Payload, SourceCtx, StatusTracker};

/// Bounds a snapshot's size: no camera snapshot is near this, a misconfigured URL might be.
const MAX_SNAPSHOT_BYTES: u64 = 32 << 20;

/// GETs one image from `url`: the body of a snapshot URL, or the first JPEG frame of an MJPEG
/// stream URL (multipart/x-mixed-replace). Errors say what came instead of an image.
pub fn fetch(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, String> {
    let resp = agent.get(url).call().map_err(|e| format!("GET {url}: {e}"))?;
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let reader = resp.into_body().into_reader();
    if ctype.starts_with("multipart/") {
        return first_frame(reader, url);
    }
    let mut bytes = Vec::new();
    reader.take(MAX_SNAPSHOT_BYTES).read_to_end(&mut bytes).map_err(|e| format!("GET {url}: reading body: {e}"))?;
    if bytes.is_empty() {
        return Err(format!("GET {url}: empty body"));
    }
    match Content::sniff(&bytes) {
        c if c.is_image() => Ok(bytes),
        c => Err(not_an_image(url, &c, &ctype)),
    }
}

/// Reads an MJPEG stream body until its first whole frame (bounded by `MAX_SNAPSHOT_BYTES`).
fn first_frame(mut reader: impl Read, url: &str) -> Result<Vec<u8>, String> {
    let mut splitter = Splitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while total < MAX_SNAPSHOT_BYTES {
        let n = reader.read(&mut buf).map_err(|e| format!("GET {url}: reading stream: {e}"))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if let Some(frame) = splitter.push(&buf[..n]).into_iter().next() {
            return Ok(frame);
        }
    }
    let content = splitter.diagnose().map(|e| e.content).unwrap_or(Content::Unknown);
    Err(not_an_image(url, &content, "multipart/x-mixed-replace"))
}

fn not_an_image(url: &str, content: &Content, ctype: &str) -> String {
    let hint = match content {
        Content::Html | Content::HttpResponse | Content::Json | Content::Text(_) => {
            "that is a page or a message, not a snapshot: use the camera's snapshot URL (often .../snapshot.jpg) and check its credentials"
        }
        Content::H26x | Content::Mp4 | Content::Matroska | Content::MpegTs | Content::Avi | Content::Multipart(_) => {
            "use the camera's JPEG snapshot URL, or source kind \"command\" with ffmpeg -i <url> -f mjpeg -"
        }
        _ => "siglipd reads JPEG, PNG, WebP, BMP and GIF snapshots, and MJPEG streams",
    };
    let ctype = if ctype.is_empty() { "no content type".to_string() } else { ctype.to_string() };
    format!("GET {url}: expected an image but got {} ({ctype}); {hint}", content.describe())
}

pub fn run(url: &str, timeout: Duration, ctx: SourceCtx) {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(timeout)).build().into();
    let mut status = StatusTracker::new(ctx.clone());
    let mut backoff = Backoff::new(ctx.interval.max(Duration::from_secs(1)), Duration::from_secs(60));
    while !ctx.stopping() {
        let started = Instant::now();
        let wait = match fetch(&agent, url) {
            Ok(bytes) => {
                status.online();
                backoff.reset();
                ctx.slot.put(Frame { payload: Payload::Encoded(bytes), origin: url.to_string() });
                ctx.interval.saturating_sub(started.elapsed())
            }
            Err(e) => {
                status.offline(e);
                backoff.next_delay()
            }
        };
        if !ctx.sleep(wait) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// Serves one response on 127.0.0.1 and returns its URL.
    fn serve_once(ctype: &'static str, body: Vec<u8>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/cam", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        });
        url
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into()
    }

    fn thumb(i: usize) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mjpeg");
        std::fs::read(dir.join(format!("thumb_{i}.jpg"))).unwrap()
    }

    #[test]
    fn an_mjpeg_stream_url_gives_its_first_frame() {
        for with_length in [true, false] {
            let mut body = b"garbage before the first boundary\r\n".to_vec();
            for i in 0..3 {
                let f = thumb(i);
                body.extend_from_slice(b"--myboundary\r\nContent-Type: image/jpeg\r\n");
                if with_length {
                    body.extend_from_slice(format!("Content-Length: {}\r\n", f.len()).as_bytes());
                }
                body.extend_from_slice(b"\r\n");
                body.extend_from_slice(&f);
                body.extend_from_slice(b"\r\n");
            }
            let url = serve_once("multipart/x-mixed-replace; boundary=myboundary", body);
            assert_eq!(fetch(&agent(), &url).unwrap(), thumb(0), "with Content-Length: {with_length}");
        }
    }

    #[test]
    fn a_snapshot_url_gives_its_body() {
        let url = serve_once("image/jpeg", thumb(1));
        assert_eq!(fetch(&agent(), &url).unwrap(), thumb(1));
    }

    #[test]
    fn what_is_not_an_image_is_named() {
        let png_parts = b"--b\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\0\0\0\rIHDR\r\n".repeat(20);
        let cases: [(&'static str, Vec<u8>, &str, &str); 3] = [
            ("text/html", b"<!DOCTYPE html><html>login</html>".to_vec(), "an HTML page (text/html)", "snapshot URL"),
            ("video/h264", b"\0\0\0\x01\x67\x64\0\x1f".repeat(100), "H.264", "ffmpeg -i <url> -f mjpeg -"),
            ("multipart/x-mixed-replace; boundary=b", png_parts, "image/png parts", "kind \"command\""),
        ];
        for (ctype, body, what, hint) in cases {
            let err = fetch(&agent(), &serve_once(ctype, body)).unwrap_err();
            assert!(err.contains("expected an image but got") && err.contains(what) && err.contains(hint), "{err}");
        }
    }
}
