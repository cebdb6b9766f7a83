//! Score history per camera and label: what the live view charts and what threshold
//! calibration replays ("what would have fired").
//!
//! Memory is bounded whatever the frame rate: the most recent [`RECENT`] frames are kept at
//! full resolution; older ones are merged into [`BUCKET_S`]-second buckets, of which the last
//! [`BUCKETS`] are kept (24 h). A bucket keeps the highest raw score (peaks stay visible), the
//! mean smoothed score and whether the label was ON at any frame in it (ON periods stay visible
//! however short). Per label: at most `RECENT × 24 + BUCKETS × 40` bytes ≈ 106 KiB.
//!
//! Written by the inference thread (a push under a per-camera lock, no allocation once the
//! rings are full), read by the web server; charts are drawn in the browser.
use std::collections::VecDeque;

use serde::Serialize;

/// Frames kept at full resolution, per label.
pub const RECENT: usize = 2048;
/// Width of an older bucket, seconds.
pub const BUCKET_S: f64 = 60.0;
/// Buckets kept: 24 h.
pub const BUCKETS: usize = 1440;

/// One frame's decision inputs and outcome for one label.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Unix seconds (never earlier than the point before).
    pub t: f64,
    /// The label's score of this frame.
    pub raw: f32,
    /// After smoothing (what the thresholds compare).
    pub smoothed: f32,
    pub on: bool,
    /// Frames merged into this point (1 for a recent frame).
    pub n: u32,
}

#[derive(Debug, Default)]
pub struct LabelHistory {
    recent: VecDeque<Point>,
    /// Older frames, one point per bucket (`t` = the bucket's first frame), oldest first.
    coarse: VecDeque<Point>,
    /// Sum of smoothed scores in the newest bucket (for its running mean).
    newest_sum: f64,
}

impl LabelHistory {
    pub fn push(&mut self, p: Point) {
        if self.recent.len() == RECENT {
            let old = self.recent.pop_front().expect("full");
            self.merge(old);
        }
        self.recent.push_back(p);
    }

    fn merge(&mut self, p: Point) {
        match self.coarse.back_mut() {
            Some(b) if p.t - b.t < BUCKET_S => {
                self.newest_sum += p.smoothed as f64;
                b.n += 1;
                b.raw = b.raw.max(p.raw);
                b.on |= p.on;
                b.smoothed = (self.newest_sum / b.n as f64) as f32;
            }
            _ => {
                if self.coarse.len() == BUCKETS {
                    self.coarse.pop_front();
                }
                self.newest_sum = p.smoothed as f64;
                self.coarse.push_back(Point { n: 1, ..p });
            }
        }
    }

    /// Points at or after `since` (Unix seconds), oldest first: buckets, then recent frames.
    pub fn since(&self, since: f64) -> Vec<Point> {
        self.coarse.iter().chain(&self.recent).filter(|p| p.t >= since).copied().collect()
    }

    /// Points held (for the memory bound).
    pub fn len(&self) -> usize {
        self.recent.len() + self.coarse.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, raw: f32, on: bool) -> Point {
        Point { t, raw, smoothed: raw, on, n: 1 }
    }

    #[test]
    fn memory_is_bounded_over_a_long_run() {
        // three days at 10 frames per second
        let mut h = LabelHistory::default();
        for i in 0..(3 * 86_400 * 10) {
            h.push(point(i as f64 / 10.0, 0.1, false));
        }
        assert!(h.len() <= RECENT + BUCKETS, "{}", h.len());
        let pts = h.since(0.0);
        // the last 24 h are still covered
        let span = pts.last().unwrap().t - pts.first().unwrap().t;
        assert!(span >= 86_400.0 - BUCKET_S, "{span}");
        assert!(pts.windows(2).all(|w| w[0].t <= w[1].t), "oldest first");
    }

    #[test]
    fn downsampling_keeps_short_on_periods_and_peaks_visible() {
        let mut h = LabelHistory::default();
        // 2 fps for 2 h; one frame at t = 1800.5 is ON with a peak score
        for i in 0..(2 * 7200) {
            let t = i as f64 / 2.0;
            let spike = t == 1800.5;
            h.push(point(t, if spike { 0.97 } else { 0.2 }, spike));
        }
        let old: Vec<Point> = h.since(0.0).into_iter().filter(|p| p.n > 1).collect();
        assert!(!old.is_empty());
        let bucket = old.iter().find(|p| p.t <= 1800.5 && 1800.5 < p.t + BUCKET_S).expect("the spike's bucket");
        assert!(bucket.on && bucket.raw == 0.97, "{bucket:?}");
        assert!((bucket.smoothed - 0.2).abs() < 0.02, "mean, not max: {bucket:?}");
        assert_eq!(old.iter().filter(|p| p.on).count(), 1);
        assert!(old.iter().all(|p| p.n <= (BUCKET_S * 2.0) as u32));
    }

    #[test]
    fn since_filters() {
        let mut h = LabelHistory::default();
        for i in 0..10 {
            h.push(point(i as f64, 0.5, false));
        }
        assert_eq!(h.since(7.0).len(), 3);
        assert!(h.since(100.0).is_empty());
    }
}
