//! Splits a raw MJPEG byte stream (concatenated JPEGs, as `rpicam-vid --codec mjpeg -o -` or
//! `ffmpeg -f mjpeg -` write them) into frames at the SOI/EOI markers.

/// Bounds a single frame so that a stream that never sends EOI cannot grow memory forever.
pub const MAX_FRAME_BYTES: usize = 32 << 20;

#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Where to resume scanning for EOI inside `buf` (after the SOI).
    scan: usize,
    in_frame: bool,
    pub discarded_bytes: u64,
}

impl Splitter {
    /// Feeds bytes; returns the complete JPEG frames found.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        loop {
            if !self.in_frame {
                match find(&self.buf, 0, [0xFF, 0xD8]) {
                    Some(i) => {
                        self.discarded_bytes += i as u64;
                        self.buf.drain(..i);
                        self.in_frame = true;
                        self.scan = 2;
                    }
                    None => {
                        // keep a trailing 0xFF: it may start the next SOI
                        let keep = usize::from(self.buf.last() == Some(&0xFF));
                        self.discarded_bytes += (self.buf.len() - keep) as u64;
                        self.buf.drain(..self.buf.len() - keep);
                        return frames;
                    }
                }
            }
            match find(&self.buf, self.scan, [0xFF, 0xD9]) {
                Some(i) => {
                    let frame: Vec<u8> = self.buf.drain(..i + 2).collect();
                    frames.push(frame);
                    self.in_frame = false;
                }
                None => {
                    self.scan = self.buf.len().saturating_sub(1).max(2);
                    if self.buf.len() > MAX_FRAME_BYTES {
                        self.discarded_bytes += self.buf.len() as u64;
                        self.buf.clear();
                        self.in_frame = false;
                    }
                    return frames;
                }
            }
        }
    }
}

fn find(hay: &[u8], from: usize, pat: [u8; 2]) -> Option<usize> {
    hay.get(from..)?.windows(2).position(|w| w == pat).map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_across_arbitrary_chunks() {
        let a = [0xFF, 0xD8, 1, 2, 0xFF, 0xD9];
        let b = [0xFF, 0xD8, 3, 0xFF, 0x00, 4, 0xFF, 0xD9];
        let mut stream = vec![9, 9];
        stream.extend_from_slice(&a);
        stream.extend_from_slice(&b);
        for chunk in 1..stream.len() {
            let mut s = Splitter::default();
            let frames: Vec<Vec<u8>> = stream.chunks(chunk).flat_map(|c| s.push(c)).collect();
            assert_eq!(frames, vec![a.to_vec(), b.to_vec()], "chunk size {chunk}");
            assert_eq!(s.discarded_bytes, 2);
        }
    }
}
