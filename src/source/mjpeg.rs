//! Splits an MJPEG byte stream into JPEG frames by the JPEG structure (ITU T.81 Annex B), not
//! by scanning for byte pairs: concatenated JPEGs (`rpicam-vid --codec mjpeg -o -`,
//! `ffmpeg -f mjpeg -`) and multipart/x-mixed-replace HTTP bodies (with or without a
//! Content-Length per part: part headers are skipped like any bytes between frames).
//!
//! Rules, each unit-tested below:
//! - a frame starts at SOI (`FF D8`) followed by a marker's `FF`;
//! - segments with a length field (APPn, COM, DQT, DHT, SOFn, SOS header, …) are skipped by
//!   that length, so whatever they contain (an EXIF thumbnail with its own SOI/EOI, stray
//!   `FF D9`) cannot end the frame; `FF` fill bytes may precede any marker (B.1.1.2);
//! - after an SOS header comes entropy-coded data, where `FF 00` is a stuffed `FF` and
//!   `FF D0`–`FF D7` are restart markers; any other marker ends the scan (B.1.1.5);
//! - the frame ends at EOI after at least one scan; a frame that breaks these rules (a byte
//!   where a marker must be, a new SOI inside it, more than the size bound) is dropped and
//!   counted, and the search for an SOI restarts just after its own SOI (a frame cut short
//!   by a camera restart may hide the next frame's SOI inside what looked like a segment);
//! - bytes between frames (multipart headers, garbage) are skipped and counted.
//!
//! Memory is bounded: a frame larger than the bound is dropped as soon as it exceeds it.

use thiserror::Error;

use super::sniff::Content;

/// Bounds a single frame so that a stream that never sends EOI cannot grow memory forever.
pub const MAX_FRAME_BYTES: usize = 32 << 20;

/// How many stream bytes are kept to tell what a stream without frames is.
const HEAD_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for SOI.
    Seeking,
    /// Inside a frame; `buf[pos]` is where the next marker must be.
    Marker { pos: usize, scans: u32 },
    /// Inside entropy-coded data; scanning from `buf[pos]`.
    Entropy { pos: usize, scans: u32 },
}

/// A stream that holds no JPEG frame: what it holds, and what to use instead.
#[derive(Debug, Error)]
#[error("expected MJPEG (JPEG frames back to back) but got {}; {hint}", content.describe())]
pub struct NotMjpeg {
    pub content: Content,
    pub hint: String,
}

impl NotMjpeg {
    fn new(content: Content, broken: u64) -> Self {
        const TRANSCODE: &str =
            "ask the program for MJPEG (rpicam-vid --codec mjpeg -o -) or transcode it: ffmpeg -i <input> -f mjpeg -";
        let hint = match &content {
            Content::Html | Content::HttpResponse | Content::Json | Content::Text(_) => {
                "the program printed a page or text, not video: check the URL and credentials it uses, then ask for MJPEG (ffmpeg -i <url> -f mjpeg -)".to_string()
            }
            Content::Png | Content::Gif | Content::Webp | Content::Bmp => {
                "for still images use source kind \"files\" (a file, directory or glob) or \"http\" (a snapshot URL); to stream them, transcode: ffmpeg -i <input> -f mjpeg -".to_string()
            }
            Content::Jpeg | Content::Multipart(_) if broken > 0 => {
                format!("all {broken} JPEG frames in it were malformed or over {} MiB", MAX_FRAME_BYTES >> 20)
            }
            Content::Empty => "the program wrote nothing to stdout (does it write to a file? use -o -)".to_string(),
            _ => TRANSCODE.to_string(),
        };
        Self { content, hint }
    }
}

/// Incremental MJPEG splitter: feed it reads of any size, get whole frames back.
pub struct Splitter {
    buf: Vec<u8>,
    state: State,
    max_frame: usize,
    head: Vec<u8>,
    /// Frames returned so far.
    pub frames: u64,
    /// Frames dropped as malformed or over the size bound.
    pub broken_frames: u64,
    /// Bytes skipped outside frames, plus the bytes of dropped frames.
    pub discarded_bytes: u64,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::with_max_frame(MAX_FRAME_BYTES)
    }
}

/// What one parsing step found.
enum Step {
    /// Need more bytes.
    More,
    /// Keep parsing in the new state.
    Go(State),
    /// A whole frame ends before this index.
    Frame(usize),
    /// The frame is malformed.
    Broken,
}

impl Splitter {
    /// A splitter that drops frames larger than `max_frame` bytes.
    pub fn with_max_frame(max_frame: usize) -> Self {
        Self { buf: Vec::new(), state: State::Seeking, max_frame, head: Vec::new(), frames: 0, broken_frames: 0, discarded_bytes: 0 }
    }

    /// Feeds bytes; returns the complete JPEG frames they finished (each from SOI to EOI).
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        if self.head.len() < HEAD_BYTES {
            let n = (HEAD_BYTES - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
        }
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        loop {
            let step = match self.state {
                State::Seeking => self.seek(),
                State::Marker { pos, scans } => self.marker(pos, scans),
                State::Entropy { pos, scans } => self.entropy(pos, scans),
            };
            match step {
                Step::More => break,
                Step::Go(state) => self.state = state,
                Step::Frame(end) => {
                    frames.push(self.buf.drain(..end).collect());
                    self.frames += 1;
                    self.state = State::Seeking;
                }
                // resync just after its SOI: a frame cut short may hide the next SOI in what
                // looked like its segments
                Step::Broken => self.drop_frame(2),
            }
        }
        if self.state != State::Seeking && self.buf.len() > self.max_frame {
            self.drop_frame(self.buf.len());
        }
        frames
    }

    /// Why a stream gave no frame, from its first bytes: `None` once a frame came out.
    pub fn diagnose(&self) -> Option<NotMjpeg> {
        (self.frames == 0).then(|| NotMjpeg::new(Content::sniff(&self.head), self.broken_frames))
    }

    fn drop_frame(&mut self, at: usize) {
        self.broken_frames += 1;
        self.discarded_bytes += at as u64;
        self.buf.drain(..at);
        self.state = State::Seeking;
    }

    fn seek(&mut self) -> Step {
        if let Some(i) = self.buf.windows(3).position(|w| w == [0xFF, 0xD8, 0xFF]) {
            self.discarded_bytes += i as u64;
            self.buf.drain(..i);
            return Step::Go(State::Marker { pos: 2, scans: 0 });
        }
        // keep a tail that may be the start of an SOI
        let keep = self.buf.len().min(2);
        let cut = self.buf.len() - keep;
        self.discarded_bytes += cut as u64;
        self.buf.drain(..cut);
        Step::More
    }

    /// At `pos` a marker must start: `FF`, optional `FF` fill bytes, the marker code.
    fn marker(&self, mut pos: usize, scans: u32) -> Step {
        let b = &self.buf;
        while b.get(pos) == Some(&0xFF) && b.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&ff), Some(&code)) = (b.get(pos), b.get(pos + 1)) else {
            return Step::More;
        };
        if ff != 0xFF {
            return Step::Broken;
        }
        match code {
            0xD9 if scans > 0 => Step::Frame(pos + 2),
            // EOI before any scan, SOI inside a frame, a stuffed byte outside entropy data
            0xD9 | 0xD8 | 0x00 => Step::Broken,
            0x01 | 0xD0..=0xD7 => Step::Go(State::Marker { pos: pos + 2, scans }),
            _ => {
                let Some(len) = b.get(pos + 2..pos + 4).map(|l| u16::from_be_bytes([l[0], l[1]]) as usize) else {
                    return Step::More;
                };
                if len < 2 {
                    return Step::Broken;
                }
                let next = pos + 2 + len;
                if code == 0xDA {
                    Step::Go(State::Entropy { pos: next, scans: scans + 1 })
                } else {
                    Step::Go(State::Marker { pos: next, scans })
                }
            }
        }
    }

    /// Entropy-coded data: skip stuffed bytes and restart markers, stop at any other marker.
    fn entropy(&self, pos: usize, scans: u32) -> Step {
        let b = &self.buf;
        let mut i = pos;
        loop {
            let Some(off) = b.get(i..).and_then(|rest| rest.iter().position(|&c| c == 0xFF)) else {
                // all of it is data: resume after it when more arrives
                return if b.len() > pos { Step::Go(State::Entropy { pos: b.len(), scans }) } else { Step::More };
            };
            let at = i + off;
            match b.get(at + 1) {
                None => return if at > pos { Step::Go(State::Entropy { pos: at, scans }) } else { Step::More },
                Some(0x00) | Some(0xD0..=0xD7) => i = at + 2,
                Some(0xFF) => i = at + 1,
                Some(_) => return Step::Go(State::Marker { pos: at, scans }),
            }
        }
    }
}

#[cfg(test)]
mod tests;
