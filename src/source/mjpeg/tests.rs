use super::*;

const SOI: [u8; 2] = [0xFF, 0xD8];
const EOI: [u8; 2] = [0xFF, 0xD9];

/// A segment with a length field: `FF code len_hi len_lo payload`.
fn seg(code: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() + 2) as u16;
    [&[0xFF, code][..], &len.to_be_bytes(), payload].concat()
}

/// SOI, the given segments, one scan with `ecs` as its entropy-coded data, EOI.
fn jpeg(segments: &[Vec<u8>], ecs: &[u8]) -> Vec<u8> {
    let mut f = SOI.to_vec();
    for s in segments {
        f.extend_from_slice(s);
    }
    f.extend(seg(0xDB, &[0; 65]));
    f.extend(seg(0xDA, &[1, 1, 0, 0, 63, 0]));
    f.extend_from_slice(ecs);
    f.extend_from_slice(&EOI);
    f
}

/// Splits `stream` fed in `chunk`-byte reads.
fn split(stream: &[u8], chunk: usize) -> (Vec<Vec<u8>>, Splitter) {
    let mut s = Splitter::default();
    let frames = stream.chunks(chunk.max(1)).flat_map(|c| s.push(c)).collect();
    (frames, s)
}

/// Every read size gives the same frames.
fn assert_frames(stream: &[u8], expect: &[&[u8]]) {
    for chunk in 1..=stream.len() {
        let (frames, _) = split(stream, chunk);
        assert_eq!(frames, expect, "read size {chunk}");
    }
}

#[test]
fn case_frames_with_exif_thumbnails_all_come_out_whole() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mjpeg");
    let files: Vec<Vec<u8>> = (0..6).map(|i| std::fs::read(dir.join(format!("thumb_{i}.jpg"))).unwrap()).collect();
    assert!(files.iter().all(|f| f.windows(2).filter(|w| *w == EOI).count() == 2), "each file embeds a thumbnail");
    let stream = files.concat();
    for chunk in [1, 2, 3, 7, 1000, 4096, 65536, stream.len()] {
        let (frames, s) = split(&stream, chunk);
        assert_eq!(frames, files, "read size {chunk}");
        assert_eq!((s.frames, s.broken_frames, s.discarded_bytes), (6, 0, 0));
    }
    for f in &files {
        let img = crate::model::preprocess::decode(f, "frame", 1 << 20).unwrap();
        assert_eq!(img.dimensions(), (320, 240));
    }
}

#[test]
fn app_segments_may_hold_whole_jpegs() {
    let thumb = jpeg(&[], &[1, 2, 3]);
    let exif = [b"Exif\0\0".as_slice(), &thumb].concat();
    let frame = jpeg(&[seg(0xE1, &exif), seg(0xE0, b"JFIF\0\x01\x01")], &[9, 8, 7]);
    assert_frames(&frame, &[&frame]);
}

#[test]
fn markers_inside_segments_are_data() {
    let com = seg(0xFE, &[0xFF, 0xD9, 0xFF, 0xD8, 0xFF, 0xDA, 0xFF]);
    let app = seg(0xEF, &[0xFF; 40]);
    let frame = jpeg(&[com, app], &[1]);
    assert_frames(&frame, &[&frame]);
}

#[test]
fn entropy_data_has_stuffed_bytes_restarts_and_fill() {
    let ecs = [1, 0xFF, 0x00, 2, 0xFF, 0xD0, 3, 0xFF, 0xD7, 0xFF, 0x00, 0xFF, 0xFF, 0xFF];
    let frame = jpeg(&[], &ecs);
    assert_frames(&frame, &[&frame]);
}

#[test]
fn fill_bytes_before_markers_and_several_scans() {
    // progressive-like: a DHT and a second scan between the scans, fill bytes everywhere
    let mut frame = SOI.to_vec();
    frame.extend([0xFF, 0xFF]);
    frame.extend(seg(0xDB, &[0; 65]));
    frame.extend(seg(0xDA, &[1, 1, 0, 0, 63, 0]));
    frame.extend([5, 6, 0xFF, 0x00]);
    frame.extend([0xFF, 0xFF]);
    frame.extend(seg(0xC4, &[0xFF, 0xD9, 0, 0]));
    frame.extend(seg(0xDA, &[1, 1, 0, 0, 63, 0]));
    frame.extend([7, 0xFF, 0xFF]);
    frame.extend(EOI);
    assert_frames(&frame, &[&frame]);
}

#[test]
fn garbage_between_frames_is_skipped_and_counted() {
    let a = jpeg(&[], &[1, 2]);
    let b = jpeg(&[seg(0xFE, b"second")], &[3]);
    let garbage: &[u8] = &[0xFF, 0xD8, 0x00, 0xFF, 0xD9, b'x', 0xFF];
    let stream = [garbage, &a, b"\r\n junk \xff", &b, garbage].concat();
    assert_frames(&stream, &[&a, &b]);
    let (_, s) = split(&stream, 5);
    assert_eq!(s.broken_frames, 0);
    assert!(s.discarded_bytes >= (garbage.len() + 7) as u64);
}

#[test]
fn multipart_bodies_with_and_without_content_length() {
    let frames = [jpeg(&[], &[1, 0xFF, 0x00]), jpeg(&[seg(0xE1, b"Exif\0\0\xff\xd9")], &[2])];
    for with_length in [true, false] {
        let mut body = Vec::new();
        for f in &frames {
            body.extend_from_slice(b"--myboundary\r\nContent-Type: image/jpeg\r\n");
            if with_length {
                body.extend_from_slice(format!("Content-Length: {}\r\n", f.len()).as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(f);
            body.extend_from_slice(b"\r\n");
        }
        assert_frames(&body, &[&frames[0], &frames[1]]);
    }
}

#[test]
fn a_cut_frame_is_dropped_and_the_next_one_kept() {
    let a = jpeg(&[seg(0xE1, &[7; 30])], &[1, 2, 3, 4, 5, 6]);
    let b = jpeg(&[], &[9]);
    // cut inside the entropy data, inside a segment header, and right after the SOI
    for cut in [a.len() - 4, 6, 2] {
        let stream = [&a[..cut], &b[..]].concat();
        let (frames, s) = split(&stream, 3);
        assert_eq!(frames, vec![b.clone()], "cut at {cut}");
        assert_eq!(s.broken_frames, 1, "cut at {cut}");
    }
    // a byte where a marker must be
    let mut c = a.clone();
    c[4 + 30 + 2] = 0x12;
    let (frames, s) = split(&[&c[..], &b[..]].concat(), 4);
    assert_eq!((frames, s.broken_frames), (vec![b.clone()], 1));
}

#[test]
fn oversize_frames_are_dropped_with_bounded_memory() {
    let big = jpeg(&[], &vec![0x55; 5000]);
    let small = jpeg(&[], &[1]);
    let stream = [&big[..], &small, &big, &small].concat();
    let mut s = Splitter::with_max_frame(1000);
    let mut frames = vec![];
    for c in stream.chunks(100) {
        frames.extend(s.push(c));
        assert!(s.buf.len() <= 1100, "buffer grew to {}", s.buf.len());
    }
    assert_eq!(frames, vec![small.clone(), small]);
    assert_eq!(s.broken_frames, 2);
}

#[test]
fn never_panics_on_random_streams() {
    let mut rng = fastrand::Rng::with_seed(11);
    let alphabet = [0xFF, 0xFF, 0xD8, 0xD9, 0xDA, 0x00, 0xD0, 0xE1, 0x01, 0x02, 0x10, 0x7F];
    for _ in 0..300 {
        let len = rng.usize(0..3000);
        let stream: Vec<u8> = (0..len).map(|_| if rng.bool() { alphabet[rng.usize(..alphabet.len())] } else { rng.u8(..) }).collect();
        let mut s = Splitter::with_max_frame(2000);
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = rng.usize(1..=rest.len().min(300));
            for f in s.push(&rest[..n]) {
                assert!(f.starts_with(&[0xFF, 0xD8, 0xFF]) && f.ends_with(&EOI) && f.len() <= 2000 + 300);
            }
            rest = &rest[n..];
        }
    }
}

#[test]
fn streams_without_frames_say_what_they_are() {
    let cases: [(&[u8], Content); 3] = [
        (b"<!DOCTYPE html><html><body>Login</body></html>", Content::Html),
        (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\x01\0", Content::Png),
        (b"\0\0\0\x01\x67\x64\0\x1f\xac\xd9\0\0\0\x01\x68", Content::H26x),
    ];
    for (bytes, expect) in cases {
        let (frames, s) = split(&bytes.repeat(50), 64);
        assert!(frames.is_empty());
        let err = s.diagnose().unwrap();
        assert_eq!(err.content, expect);
        let msg = err.to_string();
        assert!(msg.starts_with("expected MJPEG") && msg.contains(&expect.describe()), "{msg}");
        assert!(msg.contains("ffmpeg"), "the message says what to use instead: {msg}");
    }
    let (_, s) = split(&jpeg(&[], &[1]), 4);
    assert!(s.diagnose().is_none());
}
