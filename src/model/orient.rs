//! The orientation `ImageOps.exif_transpose` applies, found where Pillow 13.0.0 finds it.
//!
//! Pillow (`Image.getexif`) reads the EXIF block from `info["exif"]`, else from the PNG text
//! "Raw profile type exif"; only when that block has no Orientation tag does it take
//! `tiff:Orientation` (attribute `="6"` or element `>6<` form, the first match) from the XMP in
//! `info["XML:com.adobe.xmp"]`, else `info["xmp"]`. Where each format's plugin puts them:
//! - JPEG (`JpegImagePlugin.APP`, segments before SOS): APP1 `Exif\0\0` (later EXIF APP1s are
//!   appended to the first), APP1 `http://ns.adobe.com/xap/1.0/\0` → `xmp` (the last wins);
//! - PNG (`PngImagePlugin`, every chunk up to IEND, as `exif_transpose` loads the image first):
//!   `eXIf` → `exif`; `tEXt` keyword `exif` → `exif` as is; `tEXt`/`zTXt`/`iTXt`
//!   "Raw profile type exif" (hex after three lines); `iTXt` "XML:com.adobe.xmp" → `xmp` and
//!   the text key, `tEXt`/`zTXt` "XML:com.adobe.xmp" → the text key; later chunks win;
//! - WebP (`WebPImagePlugin`, libwebp demux): the first `EXIF` / `XMP ` chunk of an extended
//!   (VP8X) file whose header flags announce it;
//! - GIF, BMP: none.
//!
//! The EXIF block is a TIFF header + IFD0 (`Image.Exif.load`, `TiffImagePlugin`): an optional
//! `Exif\0\0` prefix, the first entry of a tag wins, a count of 1 gives a number, other counts a
//! tuple (present, but no transpose). Orientation values 2–8 transpose; anything else does not.
use std::io::Read;

/// Pillow's `ImageFile.SAFEBLOCK`: the most a compressed PNG text chunk may inflate to.
const MAX_TEXT_CHUNK: u64 = 1 << 20;

/// Where the metadata of one file points: Pillow's `info["exif"]`, the PNG raw-profile text,
/// `info["XML:com.adobe.xmp"]` and `info["xmp"]`.
#[derive(Debug, Default)]
struct Meta {
    exif: Option<Vec<u8>>,
    raw_profile: Option<Vec<u8>>,
    xmp_text: Option<Vec<u8>>,
    xmp: Option<Vec<u8>>,
}

/// The EXIF orientation (1–8 meaningful) Pillow 13's `exif_transpose` would apply to this
/// file, or `None` when it would leave the pixels as they are. Never fails: unreadable
/// metadata counts as none.
pub fn orientation(bytes: &[u8]) -> Option<u16> {
    let meta = if bytes.starts_with(&[0xFF, 0xD8]) {
        jpeg_meta(bytes)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png_meta(bytes)
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        webp_meta(bytes)
    } else {
        return None;
    };
    let exif = meta.exif.or_else(|| meta.raw_profile.as_deref().and_then(raw_profile_bytes));
    let value = match exif.as_deref().and_then(exif_orientation) {
        Some(tag) => tag,
        None => meta.xmp_text.filter(|x| !x.is_empty()).or(meta.xmp).and_then(|x| xmp_orientation(&x)),
    };
    value.filter(|v| (2..=8).contains(v))
}

/// JPEG header segments up to SOS.
fn jpeg_meta(b: &[u8]) -> Meta {
    let mut meta = Meta::default();
    let mut pos = 2;
    while pos + 4 <= b.len() {
        if b[pos] != 0xFF {
            break;
        }
        let code = b[pos + 1];
        if code == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        if code == 0xDA || code == 0xD9 {
            break;
        }
        if code == 0x01 || (0xD0..=0xD7).contains(&code) {
            pos += 2;
            continue;
        }
        let len = u16::from_be_bytes([b[pos + 2], b[pos + 3]]) as usize;
        let Some(s) = b.get(pos + 4..pos + 2 + len.max(2)) else {
            break;
        };
        if code == 0xE1 && s.starts_with(b"Exif\0\0") {
            match &mut meta.exif {
                Some(exif) => exif.extend_from_slice(&s[6..]),
                None => meta.exif = Some(s.to_vec()),
            }
        } else if code == 0xE1 && s.starts_with(b"http://ns.adobe.com/xap/1.0/\0") {
            meta.xmp = Some(s[29..].to_vec());
        }
        pos += 2 + len;
    }
    meta
}

/// PNG chunks in file order, the later chunk winning.
fn png_meta(b: &[u8]) -> Meta {
    let mut meta = Meta::default();
    let mut pos = 8;
    while let Some(head) = b.get(pos..pos + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        let Some(data) = b.get(pos + 8..(pos + 8).saturating_add(len)) else {
            break;
        };
        match kind {
            b"IEND" => break,
            b"eXIf" => meta.exif = Some([b"Exif\0\0".as_slice(), data].concat()),
            b"tEXt" | b"zTXt" | b"iTXt" => png_text(kind, data, &mut meta),
            _ => {}
        }
        pos += 12 + len;
    }
    meta
}

/// One PNG text chunk (`PngImagePlugin.chunk_tEXt/zTXt/iTXt`).
fn png_text(kind: &[u8], data: &[u8], meta: &mut Meta) {
    let (key, rest) = match data.iter().position(|&c| c == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let value = match kind {
        b"tEXt" => rest.to_vec(),
        b"zTXt" => match rest.split_first() {
            Some((0, z)) => inflate(z).unwrap_or_default(),
            Some(_) => return,
            None => Vec::new(),
        },
        _ => {
            let Some(v) = itxt_value(rest) else { return };
            if key == b"XML:com.adobe.xmp" {
                meta.xmp = Some(v.clone());
            }
            if std::str::from_utf8(&v).is_err() {
                return;
            }
            v
        }
    };
    match key {
        b"exif" if kind == b"tEXt" => meta.exif = Some(value),
        b"Raw profile type exif" => meta.raw_profile = Some(value),
        b"XML:com.adobe.xmp" => meta.xmp_text = Some(value),
        _ => {}
    }
}

/// An iTXt chunk's text after its keyword: flag, method, language, translated keyword, text.
fn itxt_value(rest: &[u8]) -> Option<Vec<u8>> {
    let (&flag, rest) = rest.split_first()?;
    let (&method, rest) = rest.split_first()?;
    let mut parts = rest.splitn(3, |&c| c == 0);
    let (_lang, _translated, text) = (parts.next()?, parts.next()?, parts.next()?);
    match (flag, method) {
        (0, _) => Some(text.to_vec()),
        (_, 0) => inflate(text),
        _ => None,
    }
}

fn inflate(z: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(z).take(MAX_TEXT_CHUNK + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= MAX_TEXT_CHUNK).then_some(out)
}

/// ImageMagick's "Raw profile type exif" text: three header lines, then hex digits.
fn raw_profile_bytes(text: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let hex: String = text.split('\n').skip(3).collect::<String>().split_whitespace().collect();
    hex::decode(hex).ok()
}

/// WebP RIFF chunks: the first EXIF / XMP chunk, if the VP8X flags announce them.
fn webp_meta(b: &[u8]) -> Meta {
    const XMP_FLAG: u8 = 0x04;
    const EXIF_FLAG: u8 = 0x08;
    let mut meta = Meta::default();
    if b.get(12..16) != Some(b"VP8X") {
        return meta;
    }
    let flags = b.get(20).copied().unwrap_or(0);
    let mut pos = 12;
    while let Some(head) = b.get(pos..pos + 8) {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let Some(data) = b.get(pos + 8..(pos + 8).saturating_add(len)) else {
            break;
        };
        match &head[..4] {
            b"EXIF" if flags & EXIF_FLAG != 0 && meta.exif.is_none() => meta.exif = Some(data.to_vec()),
            b"XMP " if flags & XMP_FLAG != 0 && meta.xmp.is_none() => meta.xmp = Some(data.to_vec()),
            _ => {}
        }
        pos += 8 + len + (len & 1);
    }
    meta
}

/// The Orientation tag (0x0112) of IFD0: `None` if absent, `Some(None)` if present without a
/// single integer value (Pillow then skips the XMP and does not transpose).
fn exif_orientation(exif: &[u8]) -> Option<Option<u16>> {
    let mut t = exif;
    for _ in 0..2 {
        t = t.strip_prefix(b"Exif\0\0").unwrap_or(t);
    }
    let big = match t.get(..4)? {
        b"MM\0*" => true,
        b"II*\0" => false,
        _ => return None,
    };
    let u16_at = |o: usize| {
        t.get(o..o.saturating_add(2)).map(|s| if big { u16::from_be_bytes([s[0], s[1]]) } else { u16::from_le_bytes([s[0], s[1]]) })
    };
    let u32_at = |o: usize| {
        t.get(o..o.saturating_add(4)).map(|s| {
            let a = [s[0], s[1], s[2], s[3]];
            if big {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = u16_at(ifd)? as usize;
    for i in 0..count {
        let e = ifd.saturating_add(2 + 12 * i);
        let (Some(tag), Some(typ), Some(n)) = (u16_at(e), u16_at(e + 2), u32_at(e + 4)) else {
            break;
        };
        let Some(unit) = type_size(typ) else { continue };
        if tag != 0x0112 {
            continue;
        }
        // Pillow skips a tag whose data cannot be in the block (also: no overflow on 32-bit)
        let Some(size) = (n as usize).checked_mul(unit) else {
            continue;
        };
        let at = if size > 4 {
            u32_at(e + 8)? as usize // e + 8: the entry was read, so it is in the block
        } else {
            e + 8
        };
        if t.get(at..at.saturating_add(size)).is_none() {
            continue; // Pillow skips a tag whose data lies outside the block
        }
        // the first Orientation entry with readable data is the one Pillow keeps
        let value = match (n, typ) {
            (1, 1 | 6) => Some(t[at] as u16),
            (1, 3 | 8) => u16_at(at),
            (1, 4 | 9) => u32_at(at).and_then(|v| u16::try_from(v).ok()),
            // Pillow's IFDRational and floats compare equal to the integer they hold
            (1, 5 | 10) => u32_at(at).zip(u32_at(at + 4)).and_then(|(num, den)| whole(num as f64 / den as f64)),
            (1, 11) => u32_at(at).and_then(|v| whole(f32::from_bits(v) as f64)),
            (1, 12) => u32_at(at).zip(u32_at(at + 4)).and_then(|(a, b)| {
                let bits = if big { (a as u64) << 32 | b as u64 } else { (b as u64) << 32 | a as u64 };
                whole(f64::from_bits(bits))
            }),
            _ => None,
        };
        return Some(value);
    }
    None
}

/// Byte size of a TIFF field type that Pillow loads (`TiffImagePlugin._load_dispatch`).
fn type_size(typ: u16) -> Option<usize> {
    match typ {
        1 | 2 | 6 | 7 => Some(1),
        3 | 8 => Some(2),
        4 | 9 | 11 | 13 => Some(4),
        5 | 10 | 12 => Some(8),
        _ => None,
    }
}

fn whole(v: f64) -> Option<u16> {
    (v.fract() == 0.0 && (0.0..=65535.0).contains(&v)).then_some(v as u16)
}

/// `tiff:Orientation="6"` or `<tiff:Orientation>6<`: the first place either form matches
/// (Pillow's regex `tiff:Orientation(="|>)([0-9])`).
fn xmp_orientation(xmp: &[u8]) -> Option<u16> {
    const KEY: &[u8] = b"tiff:Orientation";
    let mut from = 0;
    while let Some(i) = xmp.get(from..)?.windows(KEY.len()).position(|w| w == KEY) {
        let rest = &xmp[from + i + KEY.len()..];
        let digit = if rest.starts_with(b"=\"") {
            rest.get(2)
        } else if rest.starts_with(b">") {
            rest.get(1)
        } else {
            None
        };
        if let Some(d) = digit.filter(|d| d.is_ascii_digit()) {
            return Some((d - b'0') as u16);
        }
        from += i + KEY.len();
    }
    None
}

#[cfg(test)]
mod tests;
