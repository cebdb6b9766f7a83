//! `[output] stdout = true`: one JSON line per state, label change and event on stdout — for
//! demos, `jq` pipelines and systemd's journal. Runs on its own thread so a blocked pipe never
//! stalls inference.
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::{DropQueue, EventMsg, Output, StateMsg};

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

/// One stdout line (the README documents these shapes).
#[derive(serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line<'a> {
    State { camera: &'a str, state: &'a StateMsg },
    Label { camera: &'a str, label: &'a str, state: &'static str },
    Event { event: &'a EventMsg },
    Status { camera: &'a str, status: &'static str },
}

fn line(o: &Output) -> Option<String> {
    let l = match o {
        Output::State { camera, state } => Line::State { camera, state },
        Output::Label { camera, label, on } => Line::Label { camera, label, state: if *on { "ON" } else { "OFF" } },
        Output::Event(event) => Line::Event { event },
        Output::Status { camera, online } => Line::Status { camera, status: if *online { "online" } else { "offline" } },
        Output::Snapshot { .. } | Output::Threshold { .. } => return None,
    };
    serde_json::to_string(&l).ok()
}
