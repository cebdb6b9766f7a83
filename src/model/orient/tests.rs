use super::*;

/// A TIFF/EXIF block with IFD0 entries `(tag, type, count, 4 value bytes)`.
fn tiff(big: bool, entries: &[(u16, u16, u32, [u8; 4])]) -> Vec<u8> {
    let u16b = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u32b = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut t = if big { b"MM\0*".to_vec() } else { b"II*\0".to_vec() };
    t.extend(u32b(8));
    t.extend(u16b(entries.len() as u16));
    for (tag, typ, n, val) in entries {
        t.extend(u16b(*tag));
        t.extend(u16b(*typ));
        t.extend(u32b(*n));
        t.extend(val);
    }
    t.extend(u32b(0));
    t
}

fn short(v: u16, big: bool) -> [u8; 4] {
    let b = if big { v.to_be_bytes() } else { v.to_le_bytes() };
    [b[0], b[1], 0, 0]
}

fn exif_block(orientation: u16) -> Vec<u8> {
    [b"Exif\0\0".as_slice(), &tiff(false, &[(0x0100, 3, 1, short(5, false)), (0x0112, 3, 1, short(orientation, false))])].concat()
}

fn xmp_attr(v: u8) -> Vec<u8> {
    format!("<x:xmpmeta><rdf:Description xmlns:tiff=\"http://ns.adobe.com/tiff/1.0/\" tiff:Orientation=\"{v}\"/></x:xmpmeta>")
        .into_bytes()
}

fn xmp_elem(v: u8) -> Vec<u8> {
    format!("<x:xmpmeta><rdf:Description><tiff:Orientation>{v}</tiff:Orientation></rdf:Description></x:xmpmeta>").into_bytes()
}

fn jpeg(segments: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    for (code, payload) in segments {
        j.extend([0xFF, *code]);
        j.extend(((payload.len() + 2) as u16).to_be_bytes());
        j.extend(payload);
    }
    j.extend([0xFF, 0xDA, 0, 2, 1, 2, 3, 0xFF, 0xD9]);
    j
}

fn app1_xmp(x: &[u8]) -> (u8, Vec<u8>) {
    (0xE1, [b"http://ns.adobe.com/xap/1.0/\0".as_slice(), x].concat())
}

#[test]
fn jpeg_exif_and_xmp() {
    assert_eq!(orientation(&jpeg(&[(0xE1, exif_block(6))])), Some(6));
    assert_eq!(orientation(&jpeg(&[(0xE1, exif_block(1))])), None);
    assert_eq!(orientation(&jpeg(&[app1_xmp(&xmp_attr(6))])), Some(6), "XMP attribute form");
    assert_eq!(orientation(&jpeg(&[app1_xmp(&xmp_elem(8))])), Some(8), "XMP element form");
    // EXIF without the tag: XMP decides; EXIF with the tag: XMP is not read
    let no_tag = [b"Exif\0\0".as_slice(), &tiff(true, &[(0x0100, 3, 1, short(5, true))])].concat();
    assert_eq!(orientation(&jpeg(&[(0xE1, no_tag), app1_xmp(&xmp_attr(3))])), Some(3));
    assert_eq!(orientation(&jpeg(&[(0xE1, exif_block(1)), app1_xmp(&xmp_attr(3))])), None);
    // the last XMP segment wins; a second EXIF segment is appended to the first (first tag wins)
    assert_eq!(orientation(&jpeg(&[app1_xmp(&xmp_attr(3)), app1_xmp(&xmp_attr(5))])), Some(5));
    assert_eq!(orientation(&jpeg(&[(0xE1, exif_block(7)), (0xE1, exif_block(2))])), Some(7));
}

#[test]
fn xmp_regex_takes_the_first_match_of_either_form() {
    assert_eq!(xmp_orientation(b"tiff:Orientation='6' tiff:Orientation=\"8\""), Some(8));
    assert_eq!(xmp_orientation(b"<tiff:Orientation>4</tiff:Orientation> tiff:Orientation=\"8\""), Some(4));
    assert_eq!(xmp_orientation(b"tiff:Orientation=\"x\""), None);
    assert_eq!(xmp_orientation(b"tiff:Orientation>"), None);
}

#[test]
fn tiff_field_types_and_counts_as_pillow_reads_them() {
    let one = |typ: u16, n: u32, val: [u8; 4]| exif_orientation(&tiff(false, &[(0x0112, typ, n, val)]));
    assert_eq!(one(3, 1, [6, 0, 0, 0]), Some(Some(6)), "SHORT");
    assert_eq!(one(4, 1, [8, 0, 0, 0]), Some(Some(8)), "LONG");
    assert_eq!(one(1, 1, [3, 0, 0, 0]), Some(Some(3)), "BYTE");
    assert_eq!(one(3, 2, [6, 0, 6, 0]), Some(None), "two values: a tuple, present but no transpose");
    assert_eq!(one(7, 1, [6, 0, 0, 0]), Some(None), "UNDEFINED: bytes");
    assert_eq!(one(99, 1, [6, 0, 0, 0]), None, "unknown type: skipped, so XMP may decide");
    let first = tiff(true, &[(0x0112, 3, 1, short(5, true)), (0x0112, 3, 1, short(2, true))]);
    assert_eq!(exif_orientation(&first), Some(Some(5)), "the first entry wins");
    assert_eq!(exif_orientation(b"Exif\0\0Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0"), Some(Some(6)));
    assert_eq!(exif_orientation(b"garbage"), None);
    assert_eq!(exif_orientation(b"II*\0\xff\xff\0\0"), None, "IFD offset out of range");
}

fn png(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in chunks.iter().cloned().chain([(b"IEND", vec![])]) {
        p.extend((data.len() as u32).to_be_bytes());
        p.extend(kind);
        p.extend(&data);
        p.extend([0; 4]); // CRC: not checked here
    }
    p
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_profile(exif: &[u8]) -> Vec<u8> {
    let hex = hex::encode(exif);
    let lines: Vec<&str> = hex.as_bytes().chunks(72).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("\nexif\n{:8}\n{}\n", exif.len(), lines.join("\n")).into_bytes()
}

#[test]
fn png_chunks_everywhere_pillow_looks() {
    let ihdr = (b"IHDR", vec![0; 13]);
    let exif_tiff = exif_block(6)[6..].to_vec();
    type Chunks = Vec<(&'static [u8; 4], Vec<u8>)>;
    let cases: Vec<(Chunks, Option<u16>)> = vec![
        (vec![ihdr.clone(), (b"eXIf", exif_tiff.clone())], Some(6)),
        (vec![ihdr.clone(), (b"tEXt", [b"exif\0".as_slice(), &exif_block(8)].concat())], Some(8)),
        (vec![ihdr.clone(), (b"tEXt", [b"Raw profile type exif\0".as_slice(), &raw_profile(&exif_block(3))].concat())], Some(3)),
        (
            vec![ihdr.clone(), (b"zTXt", [b"Raw profile type exif\0\0".as_slice(), &zlib(&raw_profile(&exif_block(5)))].concat())],
            Some(5),
        ),
        (vec![ihdr.clone(), (b"iTXt", [b"XML:com.adobe.xmp\0\0\0\0\0".as_slice(), &xmp_attr(6)].concat())], Some(6)),
        (vec![ihdr.clone(), (b"iTXt", [b"XML:com.adobe.xmp\0\x01\0en\0\0".as_slice(), &zlib(&xmp_elem(7))].concat())], Some(7)),
        (vec![ihdr.clone(), (b"tEXt", [b"XML:com.adobe.xmp\0".as_slice(), &xmp_attr(2)].concat())], Some(2)),
        // after IDAT too; the later chunk wins; eXIf beats the raw profile
        (vec![ihdr.clone(), (b"IDAT", vec![1, 2]), (b"eXIf", exif_tiff.clone())], Some(6)),
        (vec![ihdr.clone(), (b"eXIf", exif_block(2)[6..].to_vec()), (b"eXIf", exif_tiff.clone())], Some(6)),
        (
            vec![
                ihdr.clone(),
                (b"eXIf", exif_tiff),
                (b"tEXt", [b"Raw profile type exif\0".as_slice(), &raw_profile(&exif_block(3))].concat()),
            ],
            Some(6),
        ),
        (vec![ihdr, (b"tEXt", b"Comment\0tiff:Orientation=\"6\"".to_vec())], None),
    ];
    for (i, (chunks, expect)) in cases.into_iter().enumerate() {
        assert_eq!(orientation(&png(&chunks)), expect, "case {i}");
    }
}

fn webp(flags: u8, chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut body = b"WEBPVP8X".to_vec();
    body.extend(10u32.to_le_bytes());
    body.extend([flags, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    for (kind, data) in chunks {
        body.extend(*kind);
        body.extend((data.len() as u32).to_le_bytes());
        body.extend(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    [b"RIFF".as_slice(), &(body.len() as u32).to_le_bytes(), &body].concat()
}

#[test]
fn webp_chunks_when_the_header_announces_them() {
    let exif = exif_block(6)[6..].to_vec();
    assert_eq!(orientation(&webp(0x08, &[(b"VP8L", vec![1; 5]), (b"EXIF", exif.clone())])), Some(6));
    assert_eq!(orientation(&webp(0x00, &[(b"EXIF", exif.clone())])), None, "flag not set: libwebp ignores it");
    assert_eq!(orientation(&webp(0x04, &[(b"XMP ", xmp_attr(8))])), Some(8));
    assert_eq!(orientation(&webp(0x08, &[(b"EXIF", exif), (b"EXIF", exif_block(3))])), Some(6), "the first chunk wins");
}

#[test]
fn other_formats_and_garbage_have_none() {
    assert_eq!(orientation(b"GIF89a tiff:Orientation=\"6\""), None);
    assert_eq!(orientation(b"BM tiff:Orientation=\"6\""), None);
    assert_eq!(orientation(&[0xFF, 0xD8, 0xFF, 0xE1, 0xFF]), None);
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..500 {
        let mut j = jpeg(&[(0xE1, exif_block(6))]);
        let n = rng.usize(..j.len());
        j.truncate(n);
        for _ in 0..3 {
            if !j.is_empty() {
                let i = rng.usize(..j.len());
                j[i] = rng.u8(..);
            }
        }
        let _ = orientation(&j); // must not panic
    }
}

#[test]
fn corrupt_metadata_never_panics() {
    let mut rng = fastrand::Rng::with_seed(5);
    let exif = exif_block(6);
    let samples = [
        jpeg(&[(0xE1, exif.clone()), app1_xmp(&xmp_attr(6))]),
        png(&[
            (b"IHDR", vec![0; 13]),
            (b"eXIf", exif[6..].to_vec()),
            (b"zTXt", [b"Raw profile type exif\0\0".as_slice(), &zlib(&raw_profile(&exif))].concat()),
        ]),
        webp(0x0C, &[(b"EXIF", exif[6..].to_vec()), (b"XMP ", xmp_elem(3))]),
    ];
    for sample in samples {
        for _ in 0..400 {
            let mut b = sample.clone();
            for _ in 0..rng.usize(1..6) {
                let i = rng.usize(..b.len());
                b[i] = if rng.bool() { 0xFF } else { rng.u8(..) };
            }
            b.truncate(rng.usize(b.len() / 2..=b.len()));
            let _ = orientation(&b);
            let _ = crate::model::trns::png_key(&b);
        }
    }
    // lengths and offsets at the top of their range
    let huge = tiff(false, &[(0x0112, 4, u32::MAX, [0xFF; 4])]);
    assert_eq!(exif_orientation(&huge), None);
    let mut far = b"II*\0\xff\xff\xff\xff".to_vec();
    far.extend([0; 8]);
    assert_eq!(exif_orientation(&far), None);
}
