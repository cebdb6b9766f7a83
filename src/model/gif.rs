//! A GIF's first frame as Pillow 13.0.0 opens it and `convert("RGB")` renders it
//! (`GifImagePlugin`: `_open`, `_seek(0)`, `load_prepare`; `Palette.c`).
//!
//! Rules:
//! - the canvas is the logical screen, grown to hold the frame if the frame reaches beyond it;
//! - it is filled with the frame's transparency index if its graphic control extension has
//!   one, else with index 0 (the background colour index is not used for frame 0);
//! - the frame's indices are pasted at its offset, transparent ones included (frame 0 keeps
//!   them; `convert("RGB")` drops transparency without compositing);
//! - colours come from the local palette, else the global one; a palette that is the identity
//!   grey ramp (entry i = (i, i, i)) is no palette (mode "L": index = grey level); indices past
//!   a palette's end are black (Pillow's palette is zero-filled to 256 entries).
use image::RgbImage;

/// Why a GIF could not be rendered; the caller adds the file name.
#[derive(Debug, thiserror::Error)]
pub enum GifError {
    #[error("{0}")]
    Decode(#[from] gif::DecodingError),
    #[error("the GIF has no image")]
    NoFrame,
    #[error("{width}x{height} = {pixels} pixels, over the limit of {max} pixels")]
    TooLarge { width: u32, height: u32, pixels: u64, max: u64 },
}

/// Decodes the first frame of `bytes` (a GIF) to RGB, `W×H` = the logical screen or larger,
/// with the colour of its transparency index if it has one (the key `convert("RGB")` keeps in
/// `info["transparency"]`, see `trns.rs`).
/// Errors: [`GifError`]; the canvas is checked against `max_pixels` before it is allocated.
pub fn first_frame_rgb(bytes: &[u8], max_pixels: u64) -> Result<(RgbImage, Option<[u8; 3]>), GifError> {
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    // one byte per pixel of the frame: the same bound as the canvas
    if let Some(limit) = std::num::NonZeroU64::new(max_pixels) {
        opts.set_memory_limit(gif::MemoryLimit::Bytes(limit));
    }
    let mut decoder = opts.read_info(bytes)?;
    let (screen_w, screen_h) = (decoder.width() as u32, decoder.height() as u32);
    let global = decoder.global_palette().map(<[u8]>::to_vec);
    let frame = decoder.read_next_frame()?.ok_or(GifError::NoFrame)?;
    let (left, top) = (frame.left as u32, frame.top as u32);
    let (fw, fh) = (frame.width as u32, frame.height as u32);
    let (width, height) = (screen_w.max(left + fw), screen_h.max(top + fh));
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(GifError::TooLarge { width, height, pixels, max: max_pixels });
    }
    let mut canvas = vec![frame.transparent.unwrap_or(0); pixels as usize];
    for (y, row) in frame.buffer.chunks_exact(fw.max(1) as usize).take(fh as usize).enumerate() {
        let start = (top as usize + y) * width as usize + left as usize;
        canvas[start..start + row.len()].copy_from_slice(row);
    }
    let palette = frame.palette.as_deref().or(global.as_deref()).filter(|p| !is_grey_ramp(p));
    let lut = colour_table(palette);
    let rgb = canvas.iter().flat_map(|&i| lut[i as usize]).collect();
    let key = frame.transparent.map(|t| lut[t as usize]);
    Ok((RgbImage::from_vec(width, height, rgb).expect("sized from the canvas"), key))
}

/// Pillow's `GifImageFile._is_palette_needed`, negated.
fn is_grey_ramp(p: &[u8]) -> bool {
    p.chunks(3).enumerate().all(|(i, c)| c.iter().all(|&v| v as usize == i))
}

/// 256 RGB entries: the palette, zero-filled; or the grey ramp when there is none.
fn colour_table(palette: Option<&[u8]>) -> [[u8; 3]; 256] {
    let mut lut = [[0u8; 3]; 256];
    for (i, entry) in lut.iter_mut().enumerate() {
        *entry = match palette {
            Some(p) => match p.get(i * 3..i * 3 + 3) {
                Some(c) => [c[0], c[1], c[2]],
                None => [0; 3],
            },
            None => [i as u8; 3],
        };
    }
    lut
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GIF with a `sw×sh` screen and one `w×h` frame at (x, y) whose pixels are all `index`.
    fn gif(screen: (u16, u16), at: (u16, u16), size: (u16, u16), palette: &[u8], trns: Option<u8>, index: u8) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = gif::Encoder::new(&mut out, screen.0, screen.1, palette).unwrap();
            let mut f = gif::Frame::default();
            (f.left, f.top, f.width, f.height, f.transparent) = (at.0, at.1, size.0, size.1, trns);
            f.buffer = std::borrow::Cow::Owned(vec![index; size.0 as usize * size.1 as usize]);
            enc.write_frame(&f).unwrap();
        }
        out
    }

    const PAL: [u8; 12] = [10, 20, 30, 200, 100, 50, 1, 2, 3, 4, 5, 6];

    #[test]
    fn the_uncovered_canvas_takes_index_0_or_the_transparency_colour() {
        let img = first_frame_rgb(&gif((6, 4), (2, 1), (3, 2), &PAL, None, 1), 1000).unwrap().0;
        assert_eq!(img.dimensions(), (6, 4));
        assert_eq!(img.get_pixel(0, 0).0, [10, 20, 30], "index 0 outside the frame");
        assert_eq!(img.get_pixel(3, 2).0, [200, 100, 50], "the frame's pixels");
        let img = first_frame_rgb(&gif((6, 4), (2, 1), (3, 2), &PAL, Some(3), 1), 1000).unwrap().0;
        assert_eq!(img.get_pixel(5, 3).0, [4, 5, 6], "the transparency index colour outside the frame");
    }

    #[test]
    fn transparent_pixels_keep_their_palette_colour() {
        let img = first_frame_rgb(&gif((2, 2), (0, 0), (2, 2), &PAL, Some(2), 2), 1000).unwrap();
        assert!(img.0.pixels().all(|p| p.0 == [1, 2, 3]));
        assert_eq!(img.1, Some([1, 2, 3]), "the key is the transparency index colour");
    }

    #[test]
    fn a_frame_past_the_screen_grows_the_canvas() {
        let img = first_frame_rgb(&gif((4, 4), (3, 2), (3, 3), &PAL, None, 1), 1000).unwrap().0;
        assert_eq!(img.dimensions(), (6, 5));
        assert_eq!(img.get_pixel(5, 4).0, [200, 100, 50]);
        assert!(matches!(
            first_frame_rgb(&gif((4, 4), (3, 2), (3, 3), &PAL, None, 1), 29),
            Err(GifError::TooLarge { pixels: 30, .. })
        ));
    }

    #[test]
    fn grey_ramp_palettes_and_short_palettes() {
        let ramp: Vec<u8> = (0..4u8).flat_map(|i| [i, i, i]).collect();
        assert!(is_grey_ramp(&ramp) && !is_grey_ramp(&PAL));
        assert_eq!(colour_table(None)[200], [200; 3]);
        assert_eq!(colour_table(Some(&PAL))[4], [0; 3], "past the palette's end: black");
        assert_eq!(colour_table(Some(&PAL))[1], [200, 100, 50]);
    }
}
