//! The single transparent colour that survives `load_image`, and what transformers 5.23 does
//! with it.
//!
//! `load_image` ends with Pillow's `convert("RGB")`, which drops an alpha channel but keeps a
//! *colour key* in `info["transparency"]` (`Image.convert`: P and L keys become the RGB colour
//! of the key, RGB keys stay, "1" and "I;16" keys stay as a grey level). The PIL image
//! processor then calls `image_transforms.convert_to_rgb`, which sees that key, converts to
//! RGBA (every pixel equal to the key gets alpha 0) and composites onto white: **every pixel
//! of the key colour becomes white**. Keys come from (Pillow plugins):
//! - GIF (`GifImagePlugin`): the first frame's transparency index → its palette colour
//!   (grey level for an identity-ramp palette);
//! - PNG (`PngImagePlugin.chunk_tRNS`): palette images whose tRNS has exactly one fully
//!   transparent entry and only opaque others → that entry's PLTE colour (other tRNS tables
//!   are dropped by `convert`); grey: the 16-bit sample value as is (1-bit: 255 if non-zero,
//!   else 0); RGB: the three 16-bit values as they are (compared with 8-bit pixels).
//! - JPEG, WebP, BMP: none.

use image::RgbImage;

/// A colour key as Pillow stores it: values may exceed 255 (then nothing matches).
pub type Key = [u16; 3];

/// The PNG colour key `convert("RGB")` keeps, if any.
pub fn png_key(bytes: &[u8]) -> Option<Key> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return None;
    }
    let (mut depth, mut ctype, mut plte, mut trns) = (0u8, 0u8, &[][..], None);
    let mut pos = 8;
    while let Some(head) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let data = bytes.get(pos + 8..(pos + 8).saturating_add(len))?;
        match &head[4..8] {
            b"IHDR" if len >= 13 => (depth, ctype) = (data[8], data[9]),
            b"PLTE" => plte = data,
            b"tRNS" => trns = Some(data),
            b"IDAT" | b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let t = trns?;
    let u16_at = |o: usize| t.get(o..o + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match ctype {
        3 => {
            // `_simple_palette`: b"^\xff*\x00\xff*$"
            let zeros = t.iter().filter(|&&a| a == 0).count();
            let simple = zeros == 1 && t.iter().all(|&a| a == 0 || a == 255);
            let i = t.iter().position(|&a| a == 0).filter(|_| simple)?;
            let c = plte.get(i * 3..i * 3 + 3).unwrap_or(&[0, 0, 0]);
            Some([c[0] as u16, c[1] as u16, c[2] as u16])
        }
        0 if depth == 1 => u16_at(0).map(|v| if v != 0 { [255; 3] } else { [0; 3] }),
        0 => u16_at(0).map(|v| [v; 3]),
        2 => Some([u16_at(0)?, u16_at(2)?, u16_at(4)?]),
        _ => None,
    }
}

/// transformers' `convert_to_rgb` with a colour key: pixels of that colour become white.
pub fn whiten_key(img: &mut RgbImage, key: Key) {
    for p in img.pixels_mut() {
        if [p.0[0] as u16, p.0[1] as u16, p.0[2] as u16] == key {
            p.0 = [255; 3];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(ctype: u8, depth: u8, plte: &[u8], trns: &[u8]) -> Vec<u8> {
        let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, depth, ctype, 0, 0, 0];
        let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(b"IHDR", &ihdr[..]), (b"PLTE", plte), (b"tRNS", trns)] {
            if !data.is_empty() {
                p.extend((data.len() as u32).to_be_bytes());
                p.extend(kind);
                p.extend(data);
                p.extend([0; 4]);
            }
        }
        p
    }

    #[test]
    fn keys_as_pillow_keeps_them() {
        let plte = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(png_key(&png(3, 8, &plte, &[255, 0, 255])), Some([4, 5, 6]));
        assert_eq!(png_key(&png(3, 8, &plte, &[255, 255, 0])), Some([7, 8, 9]));
        assert_eq!(png_key(&png(3, 8, &plte, &[0, 128])), None, "per-entry alpha: dropped by convert");
        assert_eq!(png_key(&png(3, 8, &plte, &[0, 0])), None, "two transparent entries: bytes, dropped");
        assert_eq!(png_key(&png(3, 8, &plte, &[255, 255, 255, 0])), Some([0, 0, 0]), "entry past PLTE");
        assert_eq!(png_key(&png(0, 8, &[], &[0, 77])), Some([77; 3]));
        assert_eq!(png_key(&png(0, 2, &[], &[0, 3])), Some([3; 3]), "raw sample value, not scaled");
        assert_eq!(png_key(&png(0, 1, &[], &[0, 1])), Some([255; 3]));
        assert_eq!(png_key(&png(0, 16, &[], &[1, 0])), Some([256; 3]));
        assert_eq!(png_key(&png(2, 8, &[], &[0, 1, 0, 2, 0, 3])), Some([1, 2, 3]));
        assert_eq!(png_key(&png(6, 8, &[], &[0, 1, 0, 2, 0, 3])), None, "RGBA ignores tRNS");
        assert_eq!(png_key(&png(2, 8, &[], &[])), None);
    }

    #[test]
    fn only_exact_key_pixels_turn_white() {
        let mut img = RgbImage::from_raw(3, 1, vec![1, 2, 3, 1, 2, 4, 0, 0, 0]).unwrap();
        whiten_key(&mut img, [1, 2, 3]);
        assert_eq!(img.into_raw(), vec![255, 255, 255, 1, 2, 4, 0, 0, 0]);
    }
}
