//! Image bytes → the `[3, S, S]` float tensor SigLIP expects, equal to transformers 5.23's
//! `load_image` + `SiglipImageProcessorPil` on Pillow 13.0.0: `exif_transpose` (orientation
//! from EXIF/XMP wherever Pillow finds it: `orient.rs`), `convert("RGB")` (GIF first frame on
//! its canvas: `gif.rs`; BMP RLE and 16-bit: `bmp.rs`), `convert_to_rgb` (a surviving colour
//! key turns white: `trns.rs`), bicubic resize to S×S without crop, rescale 1/255, normalize
//! with the manifest's mean/std.
//!
//! Invariants: decoding is bounded (pixel count and allocation) before any pixel is decoded;
//! the resize reproduces Pillow's fixed-point arithmetic bit for bit, so pixel tensors match
//! the reference exactly, not approximately.
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use thiserror::Error;

use super::bundle::Manifest;
use super::{bmp, trns};

/// Default bound on decoded pixels: 64 Mpx (a 8000×8000 photo) — far above any camera, far
/// below what exhausts a Pi's memory.
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("cannot read image {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{what} is empty (0 bytes)")]
    Empty { what: String },
    #[error("{what} is not a supported image (JPEG, PNG, WebP, BMP or GIF)")]
    UnknownFormat { what: String },
    #[error("{what} is {width}x{height} = {pixels} pixels, over the limit of {max} pixels")]
    TooLarge { what: String, width: u32, height: u32, pixels: u64, max: u64 },
    #[error("cannot decode {what}: {reason}")]
    Decode { what: String, reason: String },
}

impl ImageError {
    /// The kind of failure, for "logged once per kind" (frames and uploads alike).
    pub fn kind(&self) -> &'static str {
        match self {
            ImageError::Read { .. } => "unreadable",
            ImageError::Empty { .. } => "empty",
            ImageError::UnknownFormat { .. } => "unknown format",
            ImageError::TooLarge { .. } => "too large",
            ImageError::Decode { .. } => "undecodable",
        }
    }
}

/// Decodes an image to 8-bit RGB (`W×H` after orientation) as the reference sees it before
/// resizing: `ImageOps.exif_transpose`, `convert("RGB")`, then transformers' `convert_to_rgb`.
/// Errors: [`ImageError`], naming `what`; the pixel count is checked before decoding.
pub fn decode(bytes: &[u8], what: &str, max_pixels: u64) -> Result<RgbImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty { what: what.into() });
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Decode { what: what.into(), reason: e.to_string() })?;
    let Some(format) = reader.format() else {
        return Err(ImageError::UnknownFormat { what: what.into() });
    };
    let mut limits = Limits::default();
    // Limits' default allocation cap (512 MiB) stays; the pixel bound below is the tighter one.
    limits.max_image_width = Some(65_535);
    limits.max_image_height = Some(65_535);
    reader.limits(limits);
    let decode_err = |e: image::ImageError| ImageError::Decode { what: what.into(), reason: e.to_string() };
    let decoder = reader.into_decoder().map_err(decode_err)?;
    let (width, height) = decoder.dimensions();
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(ImageError::TooLarge { what: what.into(), width, height, pixels, max: max_pixels });
    }
    if format == image::ImageFormat::Gif {
        let (mut rgb, key) = super::gif::first_frame_rgb(bytes, max_pixels).map_err(|e| gif_error(e, what))?;
        if let Some(k) = key {
            trns::whiten_key(&mut rgb, k.map(u16::from));
        }
        return Ok(rgb);
    }
    if format == image::ImageFormat::Bmp {
        if let Some(rgb) = bmp::decode_rle(bytes) {
            return rgb.map_err(|e| ImageError::Decode { what: what.into(), reason: e.to_string() });
        }
    }
    let is_jpeg = format == image::ImageFormat::Jpeg;
    let mut img = match is_jpeg.then(|| decode_jpeg_turbo(bytes, what)).flatten() {
        Some(rgb) => DynamicImage::ImageRgb8(rgb?),
        None => DynamicImage::from_decoder(decoder).map_err(decode_err)?,
    };
    // Pillow's exif_transpose; unreadable metadata counts as none, as a broken EXIF block must
    // not cost the picture.
    if let Some(o) = super::orient::orientation(bytes).and_then(|v| Orientation::from_exif(v as u8)) {
        img.apply_orientation(o);
    }
    let mut rgb = to_rgb_like_pil(img, png_colour_type(bytes));
    if format == image::ImageFormat::Bmp {
        bmp::bmp16_like_pil(bytes, &mut rgb);
    }
    if let Some(key) = trns::png_key(bytes) {
        trns::whiten_key(&mut rgb, key);
    }
    Ok(rgb)
}

fn gif_error(e: super::gif::GifError, what: &str) -> ImageError {
    match e {
        super::gif::GifError::TooLarge { width, height, pixels, max } => {
            ImageError::TooLarge { what: what.into(), width, height, pixels, max }
        }
        e => ImageError::Decode { what: what.into(), reason: e.to_string() },
    }
}

/// A PNG's IHDR colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA), if a PNG.
fn png_colour_type(bytes: &[u8]) -> Option<u8> {
    (bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.get(12..16) == Some(b"IHDR")).then(|| bytes.get(25).copied()).flatten()
}

/// JPEG through libjpeg-turbo (accurate integer IDCT, fancy upsampling: PIL's defaults), so
/// JPEG pixels equal the reference instead of differing by a few 1/255 steps. Four-channel
/// (CMYK/YCCK) JPEGs come out as CMYK and are converted as Pillow does: `JpegImagePlugin`
/// always reads them with Adobe polarity (`CMYK;I`, inverted), then `Convert.c` `cmyk2rgb`.
/// `None` when TurboJPEG cannot read the header; the image crate then tries.
fn decode_jpeg_turbo(bytes: &[u8], what: &str) -> Option<Result<RgbImage, ImageError>> {
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};
    let err = |e: turbojpeg::Error| ImageError::Decode { what: what.into(), reason: e.to_string() };
    let mut d = Decompressor::new().ok()?;
    let header = d.read_header(bytes).ok()?;
    let cmyk = matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK);
    let (w, h) = (header.width, header.height);
    let (format, channels) = if cmyk { (PixelFormat::CMYK, 4) } else { (PixelFormat::RGB, 3) };
    let mut pixels = vec![0u8; w * h * channels];
    let out = Image { pixels: &mut pixels[..], width: w, pitch: w * channels, height: h, format };
    // TurboJPEG reports corrupt data (e.g. a truncated file) as an error, like PIL does.
    if let Err(e) = d.decompress(bytes, out) {
        return Some(Err(err(e)));
    }
    let rgb = if cmyk { pixels.chunks_exact(4).flat_map(inverted_cmyk_to_rgb).collect() } else { pixels };
    Some(Ok(RgbImage::from_vec(w as u32, h as u32, rgb).expect("sized from the header")))
}

/// Pillow's `cmyk2rgb` on Adobe-inverted CMYK: `nk = 255 − k`, channel = `nk − nk·c/255`
/// (MULDIV255 rounding), with `c`, `k` the inverted stored values.
fn inverted_cmyk_to_rgb(stored: &[u8]) -> [u8; 3] {
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let nk = stored[3] as i32; // 255 − (255 − stored)
    let ch = |v: u8| (nk - muldiv255(255 - v as i32, nk)).clamp(0, 255) as u8;
    [ch(stored[0]), ch(stored[1]), ch(stored[2])]
}

/// The region `[x, y, w, h]` (fractions of the width and height, as `crop` in the config) of
/// `img`, rounded to whole pixels and kept inside the image (at least 1×1).
pub fn crop_region(img: &RgbImage, r: &[f64; 4]) -> RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let x = ((r[0] * w).round() as u32).min(img.width() - 1);
    let y = ((r[1] * h).round() as u32).min(img.height() - 1);
    let cw = ((r[2] * w).round() as u32).clamp(1, img.width() - x);
    let ch = ((r[3] * h).round() as u32).clamp(1, img.height() - y);
    image::imageops::crop_imm(img, x, y, cw, ch).to_image()
}

pub fn decode_file(path: &Path, max_pixels: u64) -> Result<RgbImage, ImageError> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ImageError::Read { path: what.clone(), cause: e })?;
    decode(&bytes, &what, max_pixels)
}

/// PIL's mode conversions to RGB (`Convert.c`, `PngImagePlugin._MODES`): alpha is dropped (not
/// composited); 16-bit RGB(A) and 16-bit grey+alpha keep the high byte (Pillow unpacks them
/// with `RGB;16B`, `RGBA;16B`, `LA;16B`); 16-bit grey ("I;16", PNG colour type 0, also with a
/// tRNS colour key, which the decoder below expands to an alpha channel) is clipped to 255
/// rather than scaled — surprising, but it is what the reference does, and parity is the contract.
fn to_rgb_like_pil(img: DynamicImage, png_colour_type: Option<u8>) -> RgbImage {
    let clip = |v: u16| v.min(255) as u8;
    let high = |v: u16| (v >> 8) as u8;
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma16(g) => gray_to_rgb(g.width(), g.height(), g.pixels().map(|p| clip(p.0[0]))),
        DynamicImage::ImageLumaA16(g) => {
            let conv = if png_colour_type == Some(4) { high } else { clip };
            gray_to_rgb(g.width(), g.height(), g.pixels().map(|p| conv(p.0[0])))
        }
        DynamicImage::ImageRgb16(c) => {
            let (w, h) = c.dimensions();
            RgbImage::from_vec(w, h, c.into_raw().into_iter().map(high).collect()).expect("same size")
        }
        DynamicImage::ImageRgba16(c) => {
            let (w, h) = c.dimensions();
            let raw: Vec<u8> = c.pixels().flat_map(|p| [p.0[0], p.0[1], p.0[2]]).map(high).collect();
            RgbImage::from_vec(w, h, raw).expect("same size")
        }
        // 8-bit gray, gray+alpha, RGBA: replicate / drop alpha, exactly as PIL.
        other => other.to_rgb8(),
    }
}

fn gray_to_rgb(w: u32, h: u32, values: impl Iterator<Item = u8>) -> RgbImage {
    RgbImage::from_vec(w, h, values.flat_map(|v| [v, v, v]).collect()).expect("same size")
}

/// Turns RGB images into normalized CHW tensors for one model.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    size: u32,
    mean: [f32; 3],
    std: [f32; 3],
    rescale: f64,
    pub max_pixels: u64,
}

impl Preprocessor {
    pub fn new(m: &Manifest) -> Self {
        Self { size: m.image_size, mean: m.image_mean, std: m.image_std, rescale: m.rescale_factor, max_pixels: DEFAULT_MAX_PIXELS }
    }

    pub fn tensor_len(&self) -> usize {
        3 * (self.size as usize).pow(2)
    }

    /// Writes the CHW tensor of `img` into `out` (`3·S·S` values).
    pub fn pixels_into(&self, img: &RgbImage, out: &mut [f32]) {
        let s = self.size as usize;
        assert_eq!(out.len(), 3 * s * s, "output buffer must hold 3·S·S values");
        let resized = resize_bicubic_pil(img, self.size, self.size);
        let plane = s * s;
        let table = self.normalized_values();
        for (i, px) in resized.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = table[c][px[c] as usize];
            }
        }
    }

    /// The normalized value of every 8-bit level, per channel: the same arithmetic as per
    /// pixel (transformers rescales in float64, casts to float32, then normalizes), done 768
    /// times instead of 3·S·S.
    fn normalized_values(&self) -> [[f32; 256]; 3] {
        let mut table = [[0f32; 256]; 3];
        for (c, row) in table.iter_mut().enumerate() {
            for (level, v) in row.iter_mut().enumerate() {
                let rescaled = (level as f64 * self.rescale) as f32;
                *v = (rescaled - self.mean[c]) / self.std[c];
            }
        }
        table
    }

    pub fn pixels(&self, img: &RgbImage) -> Vec<f32> {
        let mut out = vec![0.0; self.tensor_len()];
        self.pixels_into(img, &mut out);
        out
    }

    pub fn load_file(&self, path: &Path) -> Result<Vec<f32>, ImageError> {
        Ok(self.pixels(&decode_file(path, self.max_pixels)?))
    }

    /// Decoded and preprocessed in one step (`bench`'s parity check on the sample images).
    pub fn load_bytes(&self, bytes: &[u8], what: &str) -> Result<Vec<f32>, ImageError> {
        Ok(self.pixels(&decode(bytes, what, self.max_pixels)?))
    }
}

// ---- Pillow's resampling (libImaging/Resample.c), 8 bits per channel --------------------------

/// Pillow's fixed-point precision for 8-bit images: 32 - 8 - 2 bits.
const PRECISION_BITS: u32 = 22;
const BICUBIC_SUPPORT: f64 = 2.0;

/// Keys' cubic with a = -0.5, as Pillow's `bicubic_filter`.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: first source index, tap count, and `ksize` fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the full source range.
fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero, like Rust's `as`.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for x in 0..xmax {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 { (-0.5 + fixed) as i32 } else { (0.5 + fixed) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { ksize, bounds, weights }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Bicubic resize equal to Pillow 13.0.0's `Image.resize(size, BICUBIC)` on an RGB image
/// (`Resample.c`, `ImagingResampleInner`): two passes, each rounding and clipping to 8 bits
/// like Pillow; a pass whose size does not change is skipped. The vertical pass runs first
/// when the height shrinks by more than twice what the width shrinks by (Pillow PR 9549),
/// else the horizontal pass runs first, on the source rows the vertical pass will read.
pub fn resize_bicubic_pil(src: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (ow, oh) = (out_w as usize, out_h as usize);
    if (in_w, in_h) == (ow, oh) {
        return src.clone();
    }
    let raw = src.as_raw();
    let out = if vertical_first((in_w, in_h), (ow, oh)) {
        let tmp = pass_vertical(raw, in_w, &coeffs(in_h, oh), 0);
        if in_w != ow {
            pass_horizontal(&tmp, in_w, oh, &coeffs(in_w, ow), 0)
        } else {
            tmp
        }
    } else {
        let vert = coeffs(in_h, oh);
        let first = vert.bounds[0].0;
        let last = vert.bounds[oh - 1].0 + vert.bounds[oh - 1].1;
        if in_w == ow {
            pass_vertical(raw, ow, &vert, 0)
        } else {
            let tmp = pass_horizontal(raw, in_w, last - first, &coeffs(in_w, ow), first);
            if in_h != oh {
                pass_vertical(&tmp, ow, &vert, first)
            } else {
                tmp
            }
        }
    };
    RgbImage::from_vec(out_w, out_h, out).expect("sized by the passes")
}

/// Pillow 13's pass order rule: vertical first iff `Δh > 0 && Δh > 2·Δw` (Δ = in − out; Δw may
/// be negative when the width grows).
fn vertical_first((in_w, in_h): (usize, usize), (ow, oh): (usize, usize)) -> bool {
    let dh = in_h as i64 - oh as i64;
    let dw = in_w as i64 - ow as i64;
    dh > 0 && dh > dw * 2
}

/// Horizontal pass over `rows` rows of `src` (width `in_w`) starting at row `first`.
///
/// Pillow's fixed-point sums, computed per channel over contiguous planes so the compiler can
/// vectorize them: integer sums do not depend on their order, so the result is Pillow's bit for
/// bit whatever the vector width (`tests/fixtures/golden-rules`). Compiled twice on x86-64, the
/// AVX2 copy (widening loads, `vpmulld`) chosen at run time; NEON is baseline on aarch64.
fn pass_horizontal(src: &[u8], in_w: usize, rows: usize, c: &Coeffs, first: usize) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above
        return unsafe { pass_horizontal_avx2(src, in_w, rows, c, first) };
    }
    horizontal(src, in_w, rows, c, first)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pass_horizontal_avx2(src: &[u8], in_w: usize, rows: usize, c: &Coeffs, first: usize) -> Vec<u8> {
    horizontal(src, in_w, rows, c, first)
}

#[inline(always)]
fn horizontal(src: &[u8], in_w: usize, rows: usize, c: &Coeffs, first: usize) -> Vec<u8> {
    let ow = c.bounds.len();
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; rows * ow * 3];
    let mut planes = vec![0u8; 3 * in_w];
    for y in 0..rows {
        let line = &src[(y + first) * in_w * 3..][..in_w * 3];
        let (r, gb) = planes.split_at_mut(in_w);
        let (g, b) = gb.split_at_mut(in_w);
        for (x, p) in line.chunks_exact(3).enumerate() {
            (r[x], g[x], b[x]) = (p[0], p[1], p[2]);
        }
        let out_row = &mut out[y * ow * 3..][..ow * 3];
        for (xx, px) in out_row.chunks_exact_mut(3).enumerate() {
            let (xmin, n) = c.bounds[xx];
            let k = &c.weights[xx * c.ksize..][..n];
            for (ch, v) in px.iter_mut().enumerate() {
                *v = clip8(half + dot(&planes[ch * in_w + xmin..][..n], k));
            }
        }
    }
    out
}

/// Σ pixel·weight in i32, as Pillow sums (no overflow: |Σ| ≤ 255 · Σ|w| < 2³¹).
#[inline(always)]
fn dot(pixels: &[u8], weights: &[i32]) -> i32 {
    pixels.iter().zip(weights).map(|(&p, &w)| p as i32 * w).fold(0i32, i32::wrapping_add)
}

/// Vertical pass over `src` (width `w`), whose row 0 is source row `row_off`: one output row at
/// a time, each tap's source row added across the whole row (contiguous, vectorized; the same
/// integer sums as Pillow's per-pixel loop, see `pass_horizontal`).
fn pass_vertical(src: &[u8], w: usize, c: &Coeffs, row_off: usize) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above
        return unsafe { pass_vertical_avx2(src, w, c, row_off) };
    }
    vertical(src, w, c, row_off)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pass_vertical_avx2(src: &[u8], w: usize, c: &Coeffs, row_off: usize) -> Vec<u8> {
    vertical(src, w, c, row_off)
}

#[inline(always)]
fn vertical(src: &[u8], w: usize, c: &Coeffs, row_off: usize) -> Vec<u8> {
    let oh = c.bounds.len();
    let half = 1i32 << (PRECISION_BITS - 1);
    let row_len = w * 3;
    let mut out = vec![0u8; row_len * oh];
    let mut acc = vec![0i32; row_len];
    for (yy, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (ymin, n) = c.bounds[yy];
        acc.fill(half);
        for (y, &wt) in c.weights[yy * c.ksize..][..n].iter().enumerate() {
            let row = &src[(ymin - row_off + y) * row_len..][..row_len];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a = a.wrapping_add(p as i32 * wt);
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(1920, 224), (5, 224), (224, 224), (1000, 7)] {
            let c = coeffs(i, o);
            for (xx, (_, n)) in c.bounds.iter().enumerate() {
                let sum: i64 = c.weights[xx * c.ksize..][..*n].iter().map(|&w| w as i64).sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= *n as i64, "{i}->{o} px {xx}: {sum}");
            }
        }
    }

    #[test]
    fn flat_image_stays_flat() {
        let img = RgbImage::from_pixel(640, 480, image::Rgb([10, 128, 250]));
        let out = resize_bicubic_pil(&img, 224, 224);
        assert!(out.pixels().all(|p| p.0 == [10, 128, 250]));
    }

    #[test]
    fn pass_order_follows_pillow_13() {
        // (in, out) → vertical first?
        for (input, output, expect) in [
            ((384, 1080), (224, 224), true), // the tall-resize case: Δh 856 > 2·160
            ((640, 480), (224, 224), false),
            ((224, 1000), (224, 224), true),
            ((100, 1000), (224, 224), true), // width grows: Δw < 0
            ((300, 500), (224, 224), true),  // Δh 276 > 2·76
            ((400, 500), (224, 224), false), // Δh 276 < 2·176
            ((224, 100), (224, 224), false), // height grows
        ] {
            assert_eq!(vertical_first(input, output), expect, "{input:?} -> {output:?}");
        }
    }

    #[test]
    fn same_size_is_identity() {
        let img = RgbImage::from_fn(224, 224, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]));
        assert_eq!(resize_bicubic_pil(&img, 224, 224), img);
    }

    #[test]
    fn bad_bytes_are_clear_errors() {
        assert!(matches!(decode(b"", "x", 10), Err(ImageError::Empty { .. })));
        assert!(matches!(decode(b"hello world, not an image", "x", 10), Err(ImageError::UnknownFormat { .. })));
    }

    #[test]
    fn corrupt_files_of_every_rule_are_errors_not_panics() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/rules");
        let mut rng = fastrand::Rng::with_seed(9);
        for entry in std::fs::read_dir(dir).unwrap() {
            let original = std::fs::read(entry.unwrap().path()).unwrap();
            for _ in 0..25 {
                let mut b = original.clone();
                for _ in 0..rng.usize(1..8) {
                    let i = rng.usize(..b.len());
                    b[i] = rng.u8(..);
                }
                b.truncate(rng.usize(1..=b.len()));
                let _ = decode(&b, "x", 1 << 22);
            }
        }
    }

    #[test]
    fn pixel_bound_is_checked_before_decoding() {
        let mut png = Vec::new();
        RgbImage::new(100, 100).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        assert!(matches!(decode(&png, "x", 9_999), Err(ImageError::TooLarge { pixels: 10_000, .. })));
        assert_eq!(decode(&png, "x", 10_000).unwrap().dimensions(), (100, 100));
    }
}
