//! "An error, never a panic" for the three front doors that take bytes from outside: the config
//! parser (property tests in `config.rs`), the MJPEG splitter and the image decoder. Random
//! bytes, and real frames and images with random bytes changed, cut or inserted.
use std::path::Path;

use proptest::prelude::*;
use siglipd::model::preprocess;
use siglipd::source::mjpeg::Splitter;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images").join(name)).unwrap()
}

/// A real file with `edits` applied: (position fraction, byte) overwrites, then a cut.
fn mangled(base: &[u8], edits: &[(f64, u8)], cut: f64) -> Vec<u8> {
    let mut b = base.to_vec();
    for (at, v) in edits {
        let i = ((*at * b.len() as f64) as usize).min(b.len() - 1);
        b[i] = *v;
    }
    b.truncate(((cut * b.len() as f64) as usize).max(1));
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn splitter_takes_any_bytes_in_any_chunks(data in proptest::collection::vec(any::<u8>(), 0..4096), chunk in 1usize..600) {
        let mut s = Splitter::with_max_frame(2048);
        for c in data.chunks(chunk) {
            for f in s.push(c) {
                prop_assert!(f.len() <= 2048);
            }
        }
        let _ = s.diagnose();
    }

    #[test]
    fn splitter_takes_damaged_frames(edits in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..8), cut in 0.0f64..1.0, chunk in 1usize..5000) {
        let jpeg = fixture("rocket.jpg");
        let mut stream = mangled(&jpeg, &edits, cut);
        stream.extend_from_slice(&jpeg); // a good frame after the damaged one
        let mut s = Splitter::default();
        let frames: Vec<Vec<u8>> = stream.chunks(chunk).flat_map(|c| s.push(c)).collect();
        prop_assert!(frames.len() <= 2);
    }

    #[test]
    fn decoder_takes_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = preprocess::decode(&data, "fuzz", 1 << 20);
    }

    #[test]
    fn decoder_takes_damaged_images(which in 0usize..4, edits in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 1..6), cut in 0.3f64..1.0) {
        let name = ["rocket.jpg", "chelsea.png", "camera_gray.png", "rocket.jpg"][which];
        let _ = preprocess::decode(&mangled(&fixture(name), &edits, cut), name, 1 << 24);
    }
}
