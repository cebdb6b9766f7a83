//! Which camera the inference thread scores next, and the wall clock it stamps results with.
use std::time::{Duration, Instant};

/// Fair turns across cameras: a camera is *eligible* when it is due (its last turn plus its
/// interval has passed: never faster than configured) and has a frame waiting; among eligible
/// cameras the one with the smallest *pass* goes next (stride scheduling, Waldspurger & Weihl
/// 1995): each turn adds the camera's interval to its pass, so when the model cannot keep up,
/// cameras get turns in proportion to their configured rates instead of the first camera
/// forever. A camera that was not eligible (no frame, not due) is lifted to the current pass,
/// so it cannot bank turns and burst later.
pub struct Scheduler {
    turns: Vec<Turn>,
    /// The pass of the last camera served (the scheduler's virtual time).
    virtual_time: f64,
}

struct Turn {
    due: Instant,
    interval: Duration,
    pass: f64,
}

impl Scheduler {
    pub fn new(intervals: &[Duration], now: Instant) -> Self {
        Self { turns: intervals.iter().map(|&interval| Turn { due: now, interval, pass: 0.0 }).collect(), virtual_time: 0.0 }
    }

    /// The camera to serve now, if any; `ready(i)` says whether camera `i` has a frame.
    pub fn next(&mut self, now: Instant, ready: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for (i, t) in self.turns.iter_mut().enumerate() {
            if t.due > now || !ready(i) {
                t.pass = t.pass.max(self.virtual_time);
                continue;
            }
            if best.is_none_or(|(p, _)| t.pass < p) {
                best = Some((t.pass, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Camera `i` was served at `now`. Returns how late it was (now − due).
    pub fn served(&mut self, i: usize, now: Instant) -> Duration {
        let t = &mut self.turns[i];
        let lag = now.saturating_duration_since(t.due);
        self.virtual_time = t.pass;
        t.pass += t.interval.as_secs_f64();
        t.due = now + t.interval;
        lag
    }

    /// When the next camera becomes due (for the idle wait).
    pub fn next_due(&self) -> Option<Instant> {
        self.turns.iter().map(|t| t.due).min()
    }
}

/// Unix time for published timestamps that never goes backwards. Boards without a battery
/// clock boot in the past and are stepped forward by NTP (fine: time jumps ahead); a step
/// backwards would make an event end before it started, so while the system clock is behind
/// the last stamp, time advances by the monotonic clock from there.
pub struct WallClock {
    last: Option<(f64, Instant)>,
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl WallClock {
    pub fn new() -> Self {
        Self { last: None }
    }

    pub fn now(&mut self) -> f64 {
        self.at(crate::host::unix_now(), Instant::now())
    }

    /// `system` is the system clock's reading at monotonic time `mono`.
    pub fn at(&mut self, system: f64, mono: Instant) -> f64 {
        let floor = self.last.map(|(wall, at)| wall + mono.saturating_duration_since(at).as_secs_f64());
        let t = match floor {
            Some(f) if system < f => f,
            _ => system,
        };
        self.last = Some((t, mono));
        t
    }
}

/// Warn once when a camera is scored this late: the board cannot keep up with its rate.
pub fn falling_behind(lag: Duration, interval: Duration) -> bool {
    lag > (interval * 2).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates `secs` of a model that takes `infer` per frame, cameras with `intervals`,
    /// every camera always having a fresh frame. Returns frames scored per camera.
    fn simulate(intervals: &[f64], infer: f64, secs: f64) -> Vec<usize> {
        let t0 = Instant::now();
        let ivs: Vec<Duration> = intervals.iter().map(|s| Duration::from_secs_f64(*s)).collect();
        let mut s = Scheduler::new(&ivs, t0);
        let mut scored = vec![0; intervals.len()];
        let mut now = t0;
        while now < t0 + Duration::from_secs_f64(secs) {
            match s.next(now, |_| true) {
                Some(i) => {
                    scored[i] += 1;
                    s.served(i, now);
                    now += Duration::from_secs_f64(infer);
                }
                None => now = s.next_due().unwrap(),
            }
        }
        scored
    }

    #[test]
    fn an_overloaded_model_shares_turns_in_proportion_to_rates() {
        // the reported starvation: ~400 ms per frame, two cameras at 0.2 s
        let got = simulate(&[0.2, 0.2], 0.4, 25.0);
        assert!(got[1] > 0, "camera b starved: {got:?}");
        assert!(got[0].abs_diff(got[1]) <= 1, "equal rates, equal shares: {got:?}");
        // rates 5, 5 and 2.5 fps, capacity 2.5 fps: shares 2 : 2 : 1 within 5 %
        let got = simulate(&[0.2, 0.2, 0.4], 0.4, 100.0);
        let total: usize = got.iter().sum();
        for (n, share) in got.iter().zip([0.4, 0.4, 0.2]) {
            let want = share * total as f64;
            assert!((*n as f64 - want).abs() <= 0.05 * want, "{got:?}");
        }
    }

    #[test]
    fn a_model_that_keeps_up_gives_every_camera_its_rate() {
        let got = simulate(&[0.5, 1.0], 0.05, 60.0);
        assert!((118..=121).contains(&got[0]) && (59..=61).contains(&got[1]), "{got:?}");
    }

    #[test]
    fn only_cameras_with_a_frame_are_picked_and_idle_ones_bank_nothing() {
        let t0 = Instant::now();
        let iv = [Duration::from_millis(100); 2];
        let mut s = Scheduler::new(&iv, t0);
        // camera 1 has no frame for a long time while camera 0 is served 50 times
        let mut now = t0;
        for _ in 0..50 {
            assert_eq!(s.next(now, |i| i == 0), Some(0));
            s.served(0, now);
            now += Duration::from_millis(100);
        }
        // camera 1 comes back: it alternates with 0 instead of taking 50 turns in a row
        let mut seq = vec![];
        for _ in 0..6 {
            let i = s.next(now, |_| true).unwrap();
            s.served(i, now);
            seq.push(i);
            now += Duration::from_millis(100);
        }
        assert!(seq.iter().filter(|&&i| i == 1).count() <= 4, "{seq:?}");
        assert!(seq.contains(&0), "{seq:?}");
        assert_eq!(s.next(now, |_| false), None);
    }

    #[test]
    fn wall_clock_never_goes_backwards() {
        let mut c = WallClock::new();
        let m0 = Instant::now();
        assert_eq!(c.at(1000.0, m0), 1000.0);
        // NTP steps the clock back an hour: time keeps advancing from the last stamp
        let t = c.at(-2600.0 + 1000.0, m0 + Duration::from_secs(2));
        assert!((t - 1002.0).abs() < 1e-6, "{t}");
        // a step forward (a board without RTC getting the time) is taken as is
        assert_eq!(c.at(5000.0, m0 + Duration::from_secs(3)), 5000.0);
    }
}
