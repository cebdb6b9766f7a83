//! `files` source: one image file, every image in a directory, or a glob; once or looping.
//! One file per camera interval, so a slideshow of test images paces like a camera.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Backoff, Frame, Payload, SourceCtx, StatusTracker};

const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "jfif"];

/// The files a pattern names right now, sorted (re-listed every pass: files may come and go).
pub fn list(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let path = Path::new(pattern);
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| format!("cannot list {pattern}: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect()
    } else {
        glob::glob(pattern)
            .map_err(|e| format!("bad pattern {pattern:?}: {e}"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect()
    };
    files.sort();
    if files.is_empty() {
        return Err(format!("no image files at {pattern}"));
    }
    Ok(files)
}

pub fn run(pattern: &str, looping: bool, ctx: SourceCtx) {
    let mut status = StatusTracker::new(ctx.clone());
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    while !ctx.stopping() {
        let files = match list(pattern) {
            Ok(f) => f,
            Err(e) => {
                status.offline(e);
                if !ctx.sleep(backoff.next_delay()) {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        for file in files {
            let started = Instant::now();
            match std::fs::read(&file) {
                Ok(bytes) => {
                    status.online();
                    ctx.slot.put(Frame { payload: Payload::Encoded(bytes), origin: file.display().to_string() });
                }
                // A file that vanished between listing and reading is not a source failure;
                // anything else (no descriptors left, permissions, I/O) is.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!(camera = %ctx.camera, "cannot read {}: {e}", file.display())
                }
                Err(e) => status.offline(format!("cannot read {}: {e}{}", file.display(), super::fd_hint(&e))),
            }
            if !ctx.sleep(ctx.interval.saturating_sub(started.elapsed())) {
                return;
            }
        }
        if !looping {
            tracing::info!(camera = %ctx.camera, "files source finished (loop = false)");
            return;
        }
    }
}
