//! `camera` source: a V4L2/UVC camera through nokhwa.
//!
//! nokhwa pitfalls handled here: format negotiation ("Failed to Fufill") is avoided by listing
//! the camera's formats and requesting an exact one (MJPEG preferred, YUYV as fallback, the
//! smallest resolution whose short side is ≥ `min_side`); `frame()` can block forever, so capture
//! runs on its own thread and a watchdog abandons it and reopens the camera with capped
//! backoff; capture loops as fast as the camera delivers into the latest-wins slot, so the
//! driver's buffer queue never holds stale frames for inference.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use nokhwa::utils::{CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
use nokhwa::Camera;

use super::{Backoff, Frame, Payload, SourceCtx, StatusTracker};

/// Picks the format to request: MJPEG over YUYV (less USB bandwidth, and decoding it is
/// cheap with libjpeg-turbo), then the smallest frame whose short side still covers the
/// model input, then the highest frame rate. Falls back to the largest frame if none is big
/// enough. None if the camera offers neither MJPEG nor YUYV.
pub fn choose_format(formats: &[CameraFormat], min_side: u32) -> Option<CameraFormat> {
    let rank = |f: &CameraFormat| match f.format() {
        FrameFormat::MJPEG => Some(0),
        FrameFormat::YUYV => Some(1),
        _ => None,
    };
    let usable: Vec<&CameraFormat> = formats.iter().filter(|f| rank(f).is_some()).collect();
    let big_enough = |f: &&&CameraFormat| f.width().min(f.height()) >= min_side;
    let area = |f: &CameraFormat| f.width() as u64 * f.height() as u64;
    if let Some(best) = usable.iter().filter(big_enough).min_by_key(|f| (rank(f), area(f), std::cmp::Reverse(f.frame_rate()))) {
        return Some(**best);
    }
    usable.iter().max_by_key(|f| (area(f), std::cmp::Reverse(rank(f)), f.frame_rate())).map(|f| **f)
}

/// YUYV 4:2:2 (BT.601, limited range — what UVC cameras send) to RGB.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32) -> Option<RgbImage> {
    let (w, h) = (width as usize, height as usize);
    if w % 2 != 0 || data.len() < w * h * 2 {
        return None;
    }
    let mut out = vec![0u8; w * h * 3];
    for (i, px) in data[..w * h * 2].chunks_exact(4).enumerate() {
        let (y0, u, y1, v) = (px[0] as f32, px[1] as f32 - 128.0, px[2] as f32, px[3] as f32 - 128.0);
        for (k, y) in [y0, y1].into_iter().enumerate() {
            let c = 1.164 * (y - 16.0);
            let rgb = [c + 1.596 * v, c - 0.392 * u - 0.813 * v, c + 2.017 * u];
            let o = (i * 2 + k) * 3;
            for (j, val) in rgb.into_iter().enumerate() {
                out[o + j] = val.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::from_vec(width, height, out)
}

fn open(device: u32, min_side: u32, camera: &str) -> Result<Camera, String> {
    const ANY: [FrameFormat; 2] = [FrameFormat::MJPEG, FrameFormat::YUYV];
    let mut cam = Camera::new(CameraIndex::Index(device), RequestedFormat::with_formats(RequestedFormatType::None, &ANY))
        .map_err(|e| format!("cannot open camera {device}: {e}"))?;
    let formats = cam.compatible_camera_formats().map_err(|e| format!("camera {device}: cannot list formats: {e}"))?;
    let offered: Vec<String> = formats.iter().map(|f| f.to_string()).collect();
    tracing::info!(camera, device, "camera offers: {}", offered.join(", "));
    let fmt = choose_format(&formats, min_side)
        .ok_or_else(|| format!("camera {device} offers neither MJPEG nor YUYV (it has: {})", offered.join(", ")))?;
    let only: &'static [FrameFormat] = match fmt.format() {
        FrameFormat::MJPEG => &[FrameFormat::MJPEG],
        _ => &[FrameFormat::YUYV],
    };
    cam.set_camera_requset(RequestedFormat::with_formats(RequestedFormatType::Exact(fmt), only))
        .map_err(|e| format!("camera {device}: cannot set {fmt}: {e}"))?;
    tracing::info!(camera, device, format = %fmt, "camera format chosen");
    cam.open_stream().map_err(|e| format!("camera {device}: cannot start streaming: {e}"))?;
    Ok(cam)
}

pub fn run(device: u32, min_side: u32, ctx: SourceCtx) {
    let mut status = StatusTracker::new(ctx.clone());
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let origin = format!("/dev/video{device}");
    while !ctx.stopping() {
        // each capture thread gets its own stop flag: an abandoned (stuck) one exits as soon as
        // its blocking call returns, without touching the slot again
        let stop = Arc::new(AtomicBool::new(false));
        let last_ms = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let (err_tx, err_rx) = std::sync::mpsc::channel::<String>();
        let capture = {
            let (stop, last_ms, slot, camera, origin) =
                (stop.clone(), last_ms.clone(), ctx.slot.clone(), ctx.camera.clone(), origin.clone());
            std::thread::Builder::new().name(format!("capture-{camera}")).spawn(move || {
                let mut cam = match open(device, min_side, &camera) {
                    Ok(c) => c,
                    Err(e) => return drop(err_tx.send(e)),
                };
                while !stop.load(Ordering::Relaxed) {
                    let buf = match cam.frame() {
                        Ok(b) => b,
                        Err(e) => return drop(err_tx.send(format!("camera {device}: {e}"))),
                    };
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let res = buf.resolution();
                    let payload = match buf.source_frame_format() {
                        FrameFormat::MJPEG => Payload::Encoded(buf.buffer().to_vec()),
                        _ => match yuyv_to_rgb(buf.buffer(), res.width(), res.height()) {
                            Some(img) => Payload::Rgb(img),
                            None => continue,
                        },
                    };
                    last_ms.store(started.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
                    slot.put(Frame { payload, origin: origin.clone() });
                }
                let _ = cam.stop_stream();
            })
        };
        if let Err(e) = capture {
            status.offline(format!("cannot start capture thread: {e}"));
            return;
        }
        let why = loop {
            if ctx.stopping() {
                stop.store(true, Ordering::Relaxed);
                return;
            }
            if let Ok(e) = err_rx.try_recv() {
                break e;
            }
            let last = last_ms.load(Ordering::Relaxed);
            if last > 0 {
                status.online();
                backoff.reset();
            }
            let since = started.elapsed().saturating_sub(Duration::from_millis(last.saturating_sub(1)));
            if since > ctx.watchdog {
                break format!("no frame from camera {device} for {:.0} s (watchdog; reopening)", ctx.watchdog.as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        stop.store(true, Ordering::Relaxed);
        status.offline(why);
        if !ctx.sleep(backoff.next_delay()) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokhwa::utils::Resolution;

    fn f(w: u32, h: u32, fmt: FrameFormat, fps: u32) -> CameraFormat {
        CameraFormat::new(Resolution::new(w, h), fmt, fps)
    }

    #[test]
    fn prefers_smallest_mjpeg_that_covers_the_model() {
        let formats = [
            f(1920, 1080, FrameFormat::MJPEG, 30),
            f(320, 240, FrameFormat::MJPEG, 30),
            f(160, 120, FrameFormat::MJPEG, 30),
            f(320, 240, FrameFormat::YUYV, 30),
            f(640, 480, FrameFormat::MJPEG, 30),
        ];
        assert_eq!(choose_format(&formats, 224), Some(f(320, 240, FrameFormat::MJPEG, 30)));
    }

    #[test]
    fn falls_back_to_yuyv_then_to_largest() {
        let formats = [f(640, 480, FrameFormat::YUYV, 30), f(1280, 720, FrameFormat::YUYV, 10), f(640, 480, FrameFormat::NV12, 30)];
        assert_eq!(choose_format(&formats, 224), Some(f(640, 480, FrameFormat::YUYV, 30)));
        let small = [f(160, 120, FrameFormat::MJPEG, 30), f(176, 144, FrameFormat::YUYV, 30)];
        assert_eq!(choose_format(&small, 224), Some(f(176, 144, FrameFormat::YUYV, 30)));
        assert_eq!(choose_format(&[f(640, 480, FrameFormat::NV12, 30)], 224), None);
    }

    #[test]
    fn yuyv_gray_and_colours() {
        // Y=235 (white), U=V=128 → white; Y=16 → black
        let img = yuyv_to_rgb(&[235, 128, 16, 128], 2, 1).unwrap();
        assert_eq!(img.as_raw(), &[255, 255, 255, 0, 0, 0]);
        // pure red in BT.601 limited range: Y=81 U=90 V=240
        let red = yuyv_to_rgb(&[81, 90, 81, 240], 2, 1).unwrap();
        let p = red.get_pixel(0, 0).0;
        assert!(p[0] > 250 && p[1] < 5 && p[2] < 5, "{p:?}");
        assert!(yuyv_to_rgb(&[0; 3], 2, 1).is_none());
    }
}
