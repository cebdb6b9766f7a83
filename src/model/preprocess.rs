//! Image bytes → the `[3, S, S]` float tensor SigLIP expects, equal to transformers'
//! `load_image` + `SiglipImageProcessor` (PIL backend): EXIF transpose, `convert("RGB")`,
//! bicubic resize to S×S without crop, rescale 1/255, normalize with the manifest's mean/std.
//!
//! Invariants: decoding is bounded (pixel count and allocation) before any pixel is decoded;
//! the resize reproduces Pillow's fixed-point arithmetic bit for bit, so pixel tensors match
//! the reference exactly, not approximately.
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use thiserror::Error;

use super::bundle::Manifest;

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

/// Decodes an image and converts it to 8-bit RGB the way PIL's `convert("RGB")` does after
/// `ImageOps.exif_transpose`.
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
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (width, height) = decoder.dimensions();
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(ImageError::TooLarge { what: what.into(), width, height, pixels, max: max_pixels });
    }
    // A broken EXIF block must not cost the picture: PIL also ignores unreadable orientation.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let is_jpeg = format == image::ImageFormat::Jpeg;
    let mut img = match is_jpeg.then(|| decode_jpeg_turbo(bytes, what)).flatten() {
        Some(rgb) => DynamicImage::ImageRgb8(rgb?),
        None => DynamicImage::from_decoder(decoder).map_err(decode_err)?,
    };
    img.apply_orientation(orientation);
    Ok(to_rgb_like_pil(img))
}

/// JPEG through libjpeg-turbo (accurate integer IDCT, fancy upsampling: PIL's defaults), so
/// JPEG pixels equal the reference instead of differing by a few 1/255 steps. `None` for
/// CMYK/YCCK JPEGs, which TurboJPEG cannot turn into RGB; those go through the image crate.
fn decode_jpeg_turbo(bytes: &[u8], what: &str) -> Option<Result<RgbImage, ImageError>> {
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};
    let err = |e: turbojpeg::Error| ImageError::Decode { what: what.into(), reason: e.to_string() };
    let run = || -> Result<Option<RgbImage>, ImageError> {
        let mut d = Decompressor::new().map_err(err)?;
        let header = d.read_header(bytes).map_err(err)?;
        if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
            return Ok(None);
        }
        let (w, h) = (header.width, header.height);
        let mut pixels = vec![0u8; w * h * 3];
        let out = Image { pixels: &mut pixels[..], width: w, pitch: w * 3, height: h, format: PixelFormat::RGB };
        // TurboJPEG reports corrupt data (e.g. a truncated file) as an error, like PIL does.
        d.decompress(bytes, out).map_err(err)?;
        Ok(Some(RgbImage::from_vec(w as u32, h as u32, pixels).expect("sized from the header")))
    };
    run().transpose()
}

pub fn decode_file(path: &Path, max_pixels: u64) -> Result<RgbImage, ImageError> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ImageError::Read { path: what.clone(), cause: e })?;
    decode(&bytes, &what, max_pixels)
}

/// PIL's mode conversions to RGB: alpha is dropped (not composited), 16-bit RGB keeps the high
/// byte, and 16-bit grayscale ("I;16") is clipped to 255 rather than scaled — surprising, but it
/// is what the reference does, and parity is the contract.
fn to_rgb_like_pil(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma16(g) => {
            gray_to_rgb(g.width(), g.height(), g.pixels().map(|p| p.0[0].min(255) as u8))
        }
        DynamicImage::ImageLumaA16(g) => {
            gray_to_rgb(g.width(), g.height(), g.pixels().map(|p| p.0[0].min(255) as u8))
        }
        DynamicImage::ImageRgb16(c) => {
            let (w, h) = c.dimensions();
            RgbImage::from_vec(w, h, c.into_raw().iter().map(|v| (v >> 8) as u8).collect()).expect("same size")
        }
        DynamicImage::ImageRgba16(c) => {
            let (w, h) = c.dimensions();
            let raw: Vec<u8> = c.pixels().flat_map(|p| [p.0[0], p.0[1], p.0[2]]).map(|v| (v >> 8) as u8).collect();
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
        Self {
            size: m.image_size,
            mean: m.image_mean,
            std: m.image_std,
            rescale: m.rescale_factor,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
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
        for (i, px) in resized.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                // transformers rescales in float64 and then casts to float32 before normalizing.
                let v = (px[c] as f64 * self.rescale) as f32;
                out[c * plane + i] = (v - self.mean[c]) / self.std[c];
            }
        }
    }

    pub fn pixels(&self, img: &RgbImage) -> Vec<f32> {
        let mut out = vec![0.0; self.tensor_len()];
        self.pixels_into(img, &mut out);
        out
    }

    pub fn load_file(&self, path: &Path) -> Result<Vec<f32>, ImageError> {
        Ok(self.pixels(&decode_file(path, self.max_pixels)?))
    }

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

/// Bicubic resize equal to `PIL.Image.resize(size, Image.BICUBIC)` on an RGB image:
/// horizontal pass first into an 8-bit intermediate (only the rows the vertical pass reads),
/// then the vertical pass; both round and clip like Pillow.
pub fn resize_bicubic_pil(src: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (ow, oh) = (out_w as usize, out_h as usize);
    if (in_w, in_h) == (ow, oh) {
        return src.clone();
    }
    let vert = coeffs(in_h, oh);
    let first_row = vert.bounds[0].0;
    let last_row = vert.bounds[oh - 1].0 + vert.bounds[oh - 1].1;
    let half = 1i32 << (PRECISION_BITS - 1);
    let raw = src.as_raw();

    // Horizontal pass (skipped by Pillow when the width does not change).
    let (tmp, tmp_w, row_off): (std::borrow::Cow<[u8]>, usize, usize) = if in_w != ow {
        let hor = coeffs(in_w, ow);
        let rows = last_row - first_row;
        let mut tmp = vec![0u8; rows * ow * 3];
        for y in 0..rows {
            let line = &raw[(y + first_row) * in_w * 3..][..in_w * 3];
            for xx in 0..ow {
                let (xmin, n) = hor.bounds[xx];
                let k = &hor.weights[xx * hor.ksize..][..n];
                let (mut s0, mut s1, mut s2) = (half, half, half);
                for (x, &w) in k.iter().enumerate() {
                    let p = &line[(xmin + x) * 3..][..3];
                    s0 += p[0] as i32 * w;
                    s1 += p[1] as i32 * w;
                    s2 += p[2] as i32 * w;
                }
                let o = &mut tmp[(y * ow + xx) * 3..][..3];
                o.copy_from_slice(&[clip8(s0), clip8(s1), clip8(s2)]);
            }
        }
        (std::borrow::Cow::Owned(tmp), ow, first_row)
    } else {
        (std::borrow::Cow::Borrowed(raw.as_slice()), in_w, 0)
    };

    if in_h == oh {
        return RgbImage::from_vec(out_w, out_h, tmp.into_owned()).expect("sized above");
    }
    let mut out = vec![0u8; ow * oh * 3];
    for yy in 0..oh {
        let (ymin, n) = vert.bounds[yy];
        let k = &vert.weights[yy * vert.ksize..][..n];
        for xx in 0..ow {
            let (mut s0, mut s1, mut s2) = (half, half, half);
            for (y, &w) in k.iter().enumerate() {
                let p = &tmp[((ymin - row_off + y) * tmp_w + xx) * 3..][..3];
                s0 += p[0] as i32 * w;
                s1 += p[1] as i32 * w;
                s2 += p[2] as i32 * w;
            }
            out[(yy * ow + xx) * 3..][..3].copy_from_slice(&[clip8(s0), clip8(s1), clip8(s2)]);
        }
    }
    RgbImage::from_vec(out_w, out_h, out).expect("sized above")
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
    fn pixel_bound_is_checked_before_decoding() {
        let mut png = Vec::new();
        RgbImage::new(100, 100)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert!(matches!(decode(&png, "x", 9_999), Err(ImageError::TooLarge { pixels: 10_000, .. })));
        assert_eq!(decode(&png, "x", 10_000).unwrap().dimensions(), (100, 100));
    }
}
