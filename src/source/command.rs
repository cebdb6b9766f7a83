//! `command` source: spawns a program and reads an MJPEG stream from its stdout — how
//! Raspberry Pi CSI cameras (`rpicam-vid --codec mjpeg -o -`) and RTSP cameras
//! (`ffmpeg -i rtsp://… -f mjpeg -`) are read. A watchdog kills and respawns a process that
//! stops sending frames; a process that exits is respawned with capped backoff. A process
//! whose output holds no JPEG frame (an H.264 stream, a web page, PNGs) is stopped with an error
//! that says what it sent and what to run instead.
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mjpeg::Splitter;
use super::{Backoff, Frame, Payload, SourceCtx, StatusTracker};

/// Bytes read without a single JPEG frame after which the stream is judged not MJPEG (a few
/// frames' worth even at high resolution, so a slow start is not misjudged).
const NOT_MJPEG_AFTER_BYTES: u64 = 4 << 20;

pub fn run(program: &str, args: &[String], ctx: SourceCtx) {
    let mut status = StatusTracker::new(ctx.clone());
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let origin = format!("{program} {}", args.join(" "));
    while !ctx.stopping() {
        let received = ctx.slot.received.load(Ordering::Relaxed);
        let why = match run_once(program, args, &origin, &ctx, &mut status) {
            Ok(Some(why)) => why,
            Ok(None) => return, // shutting down
            Err(e) => e,
        };
        // a run that delivered frames earns a quick restart; a process that fails at once
        // backs off further each time
        if ctx.slot.received.load(Ordering::Relaxed) > received {
            backoff.reset();
        }
        status.offline(why);
        if !ctx.sleep(backoff.next_delay()) {
            return;
        }
    }
}

/// Runs the process until it fails (Ok(Some(reason))), or shutdown (Ok(None)).
fn run_once(
    program: &str,
    args: &[String],
    origin: &str,
    ctx: &SourceCtx,
    status: &mut StatusTracker,
) -> Result<Option<String>, String> {
    let mut child: Child = Command::new(program)
        .args(args)
        // own process group, so the watchdog can kill the whole pipeline (`sh -c "a | b"`)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let last_frame_ms = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let not_mjpeg: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let reader = {
        let slot = ctx.slot.clone();
        let last = last_frame_ms.clone();
        let origin = origin.to_string();
        let not_mjpeg = not_mjpeg.clone();
        std::thread::spawn(move || {
            let mut splitter = Splitter::default();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                for bytes in splitter.push(&buf[..n]) {
                    last.store(started.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
                    slot.put(Frame { payload: Payload::Encoded(bytes), origin: origin.clone() });
                }
                // at the end, or after enough bytes without a single frame: say what came instead
                if n == 0 || splitter.discarded_bytes >= NOT_MJPEG_AFTER_BYTES {
                    if let Some(e) = splitter.diagnose() {
                        *not_mjpeg.lock().unwrap() = Some(e.to_string());
                        return;
                    }
                }
                if n == 0 {
                    return;
                }
            }
        })
    };
    let result = loop {
        if ctx.stopping() {
            break None;
        }
        if let Some(e) = not_mjpeg.lock().unwrap().take() {
            break Some(format!("{program:?}: {e}"));
        }
        if let Ok(Some(exit)) = child.try_wait() {
            // the reader may still be reading the last bytes: give it a moment to judge them
            let deadline = Instant::now() + Duration::from_millis(500);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let why = not_mjpeg.lock().unwrap().take().map(|e| format!(": {e}")).unwrap_or_default();
            break Some(format!("{program:?} exited ({exit}){why}"));
        }
        let last = last_frame_ms.load(Ordering::Relaxed);
        let since_last = started.elapsed().saturating_sub(Duration::from_millis(last.saturating_sub(1)));
        if last > 0 {
            status.online();
        }
        if since_last > ctx.watchdog {
            break Some(format!("no frame from {program:?} for {:.0} s (watchdog)", ctx.watchdog.as_secs_f64()));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // SAFETY: plain kill(2) on the process group we created above
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.kill();
    let _ = child.wait();
    // the reader ends when the pipe closes; not joined, so a stray grandchild holding the pipe
    // open cannot stall the restart
    drop(reader);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Doorbell, Slot, Status};
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    type Statuses = Arc<Mutex<Vec<Status>>>;

    fn ctx() -> (SourceCtx, Statuses) {
        let statuses: Statuses = Arc::default();
        let seen = statuses.clone();
        let ctx = SourceCtx {
            camera: "test".into(),
            slot: Arc::new(Slot::new(Arc::new(Doorbell::default()))),
            shutdown: Arc::new(AtomicBool::new(false)),
            status: Arc::new(move |s| seen.lock().unwrap().push(s)),
            interval: Duration::from_millis(10),
            watchdog: Duration::from_secs(20),
        };
        (ctx, statuses)
    }

    fn wait_for(what: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !what() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Issue 11, case `mjpeg-exif-thumbnail`: six frames whose EXIF embeds a thumbnail.
    #[test]
    fn frames_with_exif_thumbnails_all_arrive_whole() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mjpeg");
        let (ctx, statuses) = ctx();
        let (stop, slot) = (ctx.shutdown.clone(), ctx.slot.clone());
        let script = format!("cat {dir}/thumb_0.jpg {dir}/thumb_1.jpg {dir}/thumb_2.jpg {dir}/thumb_3.jpg {dir}/thumb_4.jpg {dir}/thumb_5.jpg; exec sleep 30");
        let t = std::thread::spawn(move || run("sh", &["-c".into(), script], ctx));
        wait_for(|| slot.received.load(Ordering::Relaxed) >= 6);
        assert_eq!(slot.received.load(Ordering::Relaxed), 6);
        let Payload::Encoded(last) = slot.take().unwrap().payload else { panic!("encoded frame expected") };
        assert_eq!(last, std::fs::read(format!("{dir}/thumb_5.jpg")).unwrap());
        wait_for(|| !statuses.lock().unwrap().is_empty());
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        assert_eq!(statuses.lock().unwrap().first(), Some(&Status::Online));
    }

    #[test]
    fn a_program_that_sends_no_mjpeg_is_offline_saying_what_it_sent() {
        for (script, what) in [
            ("printf '<!DOCTYPE html><html>login</html>'", "an HTML page"),
            ("printf '\\211PNG\\r\\n\\032\\n\\000\\000\\000\\015IHDR'", "a PNG image"),
            ("printf '\\000\\000\\000\\001\\147\\144\\000\\037'", "an H.264/H.265 video stream"),
        ] {
            let (ctx, statuses) = ctx();
            let stop = ctx.shutdown.clone();
            let t = std::thread::spawn(move || run("sh", &["-c".into(), script.into()], ctx));
            wait_for(|| !statuses.lock().unwrap().is_empty());
            stop.store(true, Ordering::Relaxed);
            t.join().unwrap();
            let first = statuses.lock().unwrap().first().cloned();
            let Some(Status::Offline(msg)) = first else { panic!("{script}: {first:?}") };
            assert!(msg.contains("expected MJPEG") && msg.contains(what) && msg.contains("ffmpeg"), "{script}: {msg}");
        }
    }
}
