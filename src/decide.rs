//! Per-label decisions over time: smoothing, hysteresis between the on/off thresholds, a
//! minimum hold time, a cooldown between episodes, and Frigate-style events.
//!
//! Invariant: pure and clock-injected (`now` is passed in), so every rule is unit-tested.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Smoothing;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub on: f32,
    pub off: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    New,
    Update,
    End,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Update => "update",
            EventKind::End => "end",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub score: f32,
    pub top_score: f32,
    /// Unix seconds.
    pub start_time: f64,
    pub end_time: Option<f64>,
}

/// What one new score changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    /// `Some(on)` when the ON/OFF state flipped.
    pub state: Option<bool>,
    pub event: Option<Event>,
}

/// An `update` event is sent when an episode's top score rises by at least this much.
const UPDATE_STEP: f32 = 0.02;

pub struct LabelState {
    smoothing: Smoothing,
    hold: Duration,
    cooldown: Duration,
    window: VecDeque<f32>,
    on: bool,
    changed_at: Option<Instant>,
    episode: Option<(f64, f32)>,
}

impl LabelState {
    pub fn new(smoothing: Smoothing, hold: Duration, cooldown: Duration) -> Self {
        Self { smoothing, hold, cooldown, window: VecDeque::new(), on: false, changed_at: None, episode: None }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The camera was paused: an ON label turns OFF now and ends its episode (automations
    /// waiting for OFF fire), and smoothing starts afresh when scoring resumes. Hold and
    /// cooldown do not apply: a pause is the user's decision, not a score.
    pub fn pause(&mut self, now: Instant, wall: f64) -> Change {
        let score = self.window.back().copied().unwrap_or(0.0);
        self.window.clear();
        if !self.on {
            return Change::default();
        }
        self.on = false;
        self.changed_at = Some(now);
        let (start, top) = self.episode.take().unwrap_or((wall, score));
        Change {
            state: Some(false),
            event: Some(Event { kind: EventKind::End, score, top_score: top, start_time: start, end_time: Some(wall) }),
        }
    }

    /// Feeds one score; `wall` is the Unix time for event timestamps.
    pub fn update(&mut self, score: f32, t: Thresholds, now: Instant, wall: f64) -> (f32, Change) {
        let cap = match self.smoothing {
            Smoothing::None => 1,
            Smoothing::Mean { window } => window,
            Smoothing::NOfM { m, .. } => m,
        };
        self.window.push_back(score);
        while self.window.len() > cap {
            self.window.pop_front();
        }
        let mean = self.window.iter().sum::<f32>() / self.window.len() as f32;
        let (want_on, want_off) = match self.smoothing {
            Smoothing::NOfM { n, .. } => {
                (self.window.iter().filter(|s| **s >= t.on).count() >= n, self.window.iter().filter(|s| **s < t.off).count() >= n)
            }
            _ => (mean >= t.on, mean < t.off),
        };
        let since = self.changed_at.map(|c| now.saturating_duration_since(c));
        let mut change = Change::default();
        if !self.on && want_on && since.is_none_or(|s| s >= self.cooldown) {
            self.on = true;
            self.changed_at = Some(now);
            self.episode = Some((wall, score));
            change.state = Some(true);
            change.event = Some(Event { kind: EventKind::New, score, top_score: score, start_time: wall, end_time: None });
        } else if self.on && want_off && since.is_none_or(|s| s >= self.hold) {
            self.on = false;
            self.changed_at = Some(now);
            let (start, top) = self.episode.take().unwrap_or((wall, score));
            change.state = Some(false);
            change.event = Some(Event { kind: EventKind::End, score, top_score: top, start_time: start, end_time: Some(wall) });
        } else if let Some((start, top)) = self.episode.as_mut() {
            if score >= *top + UPDATE_STEP {
                *top = score;
                change.event = Some(Event { kind: EventKind::Update, score, top_score: score, start_time: *start, end_time: None });
            }
        }
        (mean, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { on: 0.6, off: 0.4 };

    fn feed(s: &mut LabelState, scores: &[f32], start: Instant, step_ms: u64) -> Vec<Option<bool>> {
        scores
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let now = start + Duration::from_millis(step_ms * i as u64);
                s.update(x, T, now, i as f64).1.state
            })
            .collect()
    }

    #[test]
    fn hysteresis_between_thresholds() {
        let mut s = LabelState::new(Smoothing::None, Duration::ZERO, Duration::ZERO);
        let got = feed(&mut s, &[0.5, 0.7, 0.5, 0.45, 0.39, 0.55, 0.61], Instant::now(), 1000);
        assert_eq!(got, vec![None, Some(true), None, None, Some(false), None, Some(true)]);
    }

    #[test]
    fn mean_smoothing_ignores_one_spike() {
        let mut s = LabelState::new(Smoothing::Mean { window: 3 }, Duration::ZERO, Duration::ZERO);
        let got = feed(&mut s, &[0.1, 0.9, 0.1, 0.8, 0.8, 0.8], Instant::now(), 1000);
        // window means: .37 .6- .57 then .8: the lone 0.9 spike never turns it on
        assert_eq!(got, vec![None, None, None, None, None, Some(true)]);
    }

    #[test]
    fn n_of_m() {
        let mut s = LabelState::new(Smoothing::NOfM { n: 2, m: 3 }, Duration::ZERO, Duration::ZERO);
        let got = feed(&mut s, &[0.9, 0.1, 0.9, 0.1, 0.1], Instant::now(), 1000);
        assert_eq!(got, vec![None, None, Some(true), Some(false), None]);
    }

    #[test]
    fn hold_keeps_on_and_cooldown_keeps_off() {
        let mut s = LabelState::new(Smoothing::None, Duration::from_secs(3), Duration::from_secs(5));
        // on at t=0; off wanted at t=1,2 but held until t=3; on wanted at t=4..7, cooldown until t=8
        let got = feed(&mut s, &[0.9, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9], Instant::now(), 1000);
        assert_eq!(got, vec![Some(true), None, None, Some(false), None, None, None, None, Some(true)]);
    }

    #[test]
    fn pause_ends_an_episode_at_once_and_resets_smoothing() {
        let mut s = LabelState::new(Smoothing::Mean { window: 3 }, Duration::from_secs(60), Duration::ZERO);
        let t0 = Instant::now();
        for i in 0..3 {
            s.update(0.9, T, t0 + Duration::from_secs(i), i as f64);
        }
        assert!(s.is_on());
        // hold_s = 60 would keep it ON; a pause does not wait
        let c = s.pause(t0 + Duration::from_secs(4), 4.0);
        assert_eq!(c.state, Some(false));
        let ev = c.event.unwrap();
        assert_eq!((ev.kind, ev.start_time, ev.end_time), (EventKind::End, 0.0, Some(4.0)));
        assert_eq!(s.pause(t0 + Duration::from_secs(5), 5.0), Change::default(), "already OFF");
        // resumed: old high scores are gone from the window
        assert_eq!(s.update(0.1, T, t0 + Duration::from_secs(6), 6.0).0, 0.1);
    }

    #[test]
    fn events_new_update_end() {
        let mut s = LabelState::new(Smoothing::None, Duration::ZERO, Duration::ZERO);
        let t0 = Instant::now();
        let kinds: Vec<Option<EventKind>> = [0.7, 0.71, 0.8, 0.3]
            .iter()
            .enumerate()
            .map(|(i, &x)| s.update(x, T, t0 + Duration::from_secs(i as u64), 100.0 + i as f64).1.event.map(|e| e.kind))
            .collect();
        assert_eq!(kinds, vec![Some(EventKind::New), None, Some(EventKind::Update), Some(EventKind::End)]);
        let mut s = LabelState::new(Smoothing::None, Duration::ZERO, Duration::ZERO);
        s.update(0.7, T, t0, 100.0);
        s.update(0.9, T, t0, 101.0);
        let end = s.update(0.1, T, t0, 105.0).1.event.unwrap();
        assert_eq!((end.start_time, end.end_time, end.top_score), (100.0, Some(105.0), 0.9));
    }
}
