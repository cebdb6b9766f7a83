//! `http` source: polls an IP camera's JPEG snapshot URL once per interval.
use std::io::Read;
use std::time::{Duration, Instant};

use super::{Backoff, Frame, Payload, SourceCtx, StatusTracker};

/// Bounds a snapshot's size: no camera snapshot is near this, a misconfigured URL might be.
const MAX_SNAPSHOT_BYTES: u64 = 32 << 20;

pub fn fetch(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, String> {
    let resp = agent.get(url).call().map_err(|e| format!("GET {url}: {e}"))?;
    let mut bytes = Vec::new();
    resp.into_body()
        .into_reader()
        .take(MAX_SNAPSHOT_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("GET {url}: reading body: {e}"))?;
    if bytes.is_empty() {
        return Err(format!("GET {url}: empty body"));
    }
    Ok(bytes)
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
                ctx.slot.put(Frame { payload: Payload::Encoded(bytes), origin: url.to_string(), at: Instant::now() });
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
