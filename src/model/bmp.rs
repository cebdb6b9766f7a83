//! BMP rules where the image crate and Pillow 13.0.0 (`BmpImagePlugin.py`, `Unpack.c`) differ.
//!
//! - 16-bit pixels: the image crate scales 5/6-bit channels with rounding, Pillow
//!   (`ImagingUnpackBGR15/16`) with `v·255/max` truncated; the layout is 5-5-5 unless the
//!   BITFIELDS masks say 5-6-5 (the only two Pillow reads).
//! - RLE8/RLE4 (`BmpRleDecoder`): pixels skipped by a delta or an early end of line are index 0
//!   (the image crate leaves them black); a run longer than the row is cut at the row's end;
//!   absolute runs are padded to an even file offset. A stream that ends before the last row
//!   is refused by Pillow ("not enough image data"), and here too.
//! - palettes: a palette that is the grey ramp makes mode "L" (index = grey level); else colours
//!   past the palette are black.
use image::RgbImage;

/// Why an RLE BMP could not be decoded; the caller adds the file name.
#[derive(Debug, thiserror::Error)]
pub enum BmpError {
    #[error("the RLE data ends before the last row (not enough image data)")]
    Truncated,
}

/// Little-endian header fields of a BMP with a BITMAPINFOHEADER or later.
struct Header {
    width: usize,
    height: i64,
    bpp: u16,
    compression: u32,
    data_offset: usize,
    palette: Vec<[u8; 3]>,
}

fn header(b: &[u8]) -> Option<Header> {
    let h = parse_header(b)?;
    (1..=65_535).contains(&h.width).then_some(h).filter(|h| h.height.unsigned_abs() <= 65_535)
}

fn parse_header(b: &[u8]) -> Option<Header> {
    let u32_at = |o: usize| b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    let dib = u32_at(14)? as usize;
    if !b.starts_with(b"BM") || dib < 40 {
        return None;
    }
    let bpp = b.get(28..30).map(|s| u16::from_le_bytes([s[0], s[1]]))?;
    let colors = match u32_at(46)? as usize {
        0 if bpp <= 8 => 1 << bpp,
        n => n.min(256),
    };
    let start = 14 + dib;
    let palette = (0..colors).map_while(|i| b.get(start + 4 * i..start + 4 * i + 3).map(|c| [c[2], c[1], c[0]])).collect();
    Some(Header {
        width: u32_at(18)? as i32 as i64 as usize,
        height: u32_at(22)? as i32 as i64,
        bpp,
        compression: u32_at(30)?,
        data_offset: u32_at(10)? as usize,
        palette,
    })
}

/// Maps 16-bit BMP pixels decoded by the image crate to Pillow's values (no-op for others).
pub fn bmp16_like_pil(bytes: &[u8], img: &mut RgbImage) {
    let Some(h) = header(bytes).filter(|h| h.bpp == 16) else {
        return;
    };
    let green_mask = bytes.get(58..62).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    let green_bits = if h.compression == 3 && green_mask == Some(0x7E0) { 6 } else { 5 };
    let table = |bits: u32| {
        let max = (1u32 << bits) - 1;
        let mut t: [u8; 256] = std::array::from_fn(|i| i as u8);
        for v in 0..=max {
            // the image crate's rounded value → Pillow's truncated one
            t[((v * 255 + max / 2) / max) as usize] = (v * 255 / max) as u8;
        }
        t
    };
    let (five, green) = (table(5), table(green_bits));
    for p in img.pixels_mut() {
        p.0 = [five[p.0[0] as usize], green[p.0[1] as usize], five[p.0[2] as usize]];
    }
}

/// Decodes an RLE8/RLE4 BMP as Pillow does: `None` if `bytes` is not one (or is a 2-colour
/// grey one, left to the image crate). The caller has checked the pixel count.
pub fn decode_rle(bytes: &[u8]) -> Option<Result<RgbImage, BmpError>> {
    let h = header(bytes).filter(|h| matches!((h.compression, h.bpp), (1, 8) | (2, 4)))?;
    let rows = h.height.unsigned_abs() as usize;
    let grey = is_grey(&h.palette);
    if grey && h.palette.len() <= 2 {
        return None;
    }
    let indices = match rle_indices(bytes, h.data_offset, h.width, rows, h.compression == 2) {
        Some(v) => v,
        None => return Some(Err(BmpError::Truncated)),
    };
    let lut: Vec<[u8; 3]> =
        (0..256usize).map(|i| if grey { [i as u8; 3] } else { h.palette.get(i).copied().unwrap_or([0; 3]) }).collect();
    let mut rgb = Vec::with_capacity(h.width * rows * 3);
    for y in 0..rows {
        // bottom-up unless the height is negative
        let src = if h.height > 0 { rows - 1 - y } else { y };
        rgb.extend(indices[src * h.width..][..h.width].iter().flat_map(|&i| lut[i as usize]));
    }
    Some(Ok(RgbImage::from_vec(h.width as u32, rows as u32, rgb).expect("sized from the header")))
}

/// Pillow's grey-palette test: entry i is (i, i, i) for every entry (2 entries: 0 and 255).
fn is_grey(palette: &[[u8; 3]]) -> bool {
    palette.iter().enumerate().all(|(i, c)| {
        let v = if palette.len() == 2 { [0u8, 255][i] } else { i as u8 };
        *c == [v; 3]
    })
}

/// `BmpRleDecoder.decode`: the index of every pixel in stream order (`None`: too short).
fn rle_indices(b: &[u8], offset: usize, w: usize, h: usize, rle4: bool) -> Option<Vec<u8>> {
    let dest = w * h;
    let mut data = Vec::with_capacity(dest);
    let (mut pos, mut x) = (offset, 0usize);
    while data.len() < dest {
        let (Some(&count), Some(&byte)) = (b.get(pos), b.get(pos + 1)) else {
            break;
        };
        pos += 2;
        match (count, byte) {
            (n @ 1.., v) => {
                let n = (n as usize).min(w.saturating_sub(x));
                let pair = if rle4 { [v >> 4, v & 0x0F] } else { [v, v] };
                data.extend((0..n).map(|i| pair[i % 2]));
                x += n;
            }
            (0, 0) => {
                data.resize(data.len().div_ceil(w.max(1)) * w, 0);
                x = 0;
            }
            (0, 1) => break,
            (0, 2) => {
                let (Some(&right), Some(&up)) = (b.get(pos), b.get(pos + 1)) else {
                    break;
                };
                pos += 2;
                let skip = (right as usize + up as usize * w).min(dest - data.len());
                data.resize(data.len() + skip, 0);
                x = data.len() % w.max(1);
            }
            (0, n) => {
                let n = (n as usize).min(dest - data.len());
                let nbytes = if rle4 { n.div_ceil(2) } else { n };
                let Some(raw) = b.get(pos..pos + nbytes) else {
                    break;
                };
                pos += nbytes;
                if rle4 {
                    data.extend(raw.iter().flat_map(|&v| [v >> 4, v & 0x0F]).take(n));
                } else {
                    data.extend_from_slice(raw);
                }
                if data.len() == dest {
                    break;
                }
                x += byte as usize;
                pos += pos % 2; // word alignment, by file offset
            }
        }
    }
    (data.len() >= dest).then(|| {
        data.truncate(dest);
        data
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle8_skips_are_index_0_and_runs_stop_at_the_row_end() {
        // 4x2: row 0 (bottom): run of 6 (cut to 4); row 1: delta 2 right, run 1 of index 3, EOL
        let data = [6, 1, 0, 0, 0, 2, 2, 0, 1, 3, 0, 0, 0, 1];
        assert_eq!(rle_indices(&data, 0, 4, 2, false), Some(vec![1, 1, 1, 1, 0, 0, 3, 0]));
        // absolute run of 3 then word alignment
        let data = [0, 3, 7, 8, 9, 0, 1, 5, 0, 1];
        assert_eq!(rle_indices(&data, 0, 4, 1, false), Some(vec![7, 8, 9, 5]));
        assert_eq!(rle_indices(&[2, 1, 0, 1], 0, 4, 1, false), None, "ends early: refused");
    }

    #[test]
    fn rle4_alternates_the_two_nibbles() {
        let data = [5, 0x12, 0, 0, 0, 1];
        assert_eq!(rle_indices(&data, 0, 5, 1, true), Some(vec![1, 2, 1, 2, 1]));
    }

    #[test]
    fn grey_palettes_as_pillow_sees_them() {
        assert!(is_grey(&[[0; 3], [1; 3], [2; 3]]) && is_grey(&[[0; 3], [255; 3]]));
        assert!(!is_grey(&[[0; 3], [1; 3], [3; 3]]));
    }
}
