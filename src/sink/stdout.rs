//! `[output] stdout = true`: one JSON line per state, label change and event on stdout — for
//! demos, `jq` pipelines and systemd's journal. Runs on its own thread so a blocked pipe never
//! stalls inference.
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{DropQueue, Output};

pub fn spawn(queue: Arc<DropQueue<Output>>, shutdown: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("sink-stdout".into())
        .spawn(move || loop {
            let stopping = shutdown.load(std::sync::atomic::Ordering::Relaxed);
            let mut out = std::io::stdout().lock();
            let mut wrote = false;
            while let Some(o) = queue.pop() {
                if let Some(line) = line(&o) {
                    // a closed pipe must not kill the daemon: results still go to MQTT
                    let _ = writeln!(out, "{line}");
                    wrote = true;
                }
            }
            if wrote {
                let _ = out.flush();
            }
            drop(out);
            if stopping {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        })
        .expect("spawn stdout sink")
}

fn line(o: &Output) -> Option<serde_json::Value> {
    Some(match o {
        Output::State { camera, json } => json!({"kind": "state", "camera": camera, "state": json}),
        Output::Label { camera, label, on } => {
            json!({"kind": "label", "camera": camera, "label": label, "state": if *on { "ON" } else { "OFF" }})
        }
        Output::Event(e) => json!({"kind": "event", "event": e}),
        Output::Status { camera, online } => {
            json!({"kind": "status", "camera": camera, "status": if *online { "online" } else { "offline" }})
        }
        Output::Snapshot { .. } => return None,
    })
}
