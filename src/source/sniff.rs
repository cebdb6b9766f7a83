//! What a byte stream is, from its first bytes: so a source that receives something other
//! than what its kind expects (an HTML login page, a PNG, an H.264 stream) can say what it got
//! and what to use instead, rather than failing frame after frame.
//!
//! Signatures: JPEG SOI + marker (ITU T.81 B.1), PNG (RFC 2083 §3.1), GIF87a/89a, RIFF WEBP,
//! BMP `BM`, H.264/H.265 Annex B start codes, ISO BMFF `ftyp`, Matroska EBML, MPEG-TS sync
//! bytes every 188, RIFF AVI, multipart bodies (RFC 2046 §5.1), HTML and other text.

/// The kind of content found at the start of a stream (or a whole body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Jpeg,
    Png,
    Gif,
    Webp,
    Bmp,
    Html,
    HttpResponse,
    /// H.264/H.265 elementary stream (Annex B start codes).
    H26x,
    Mp4,
    Matroska,
    MpegTs,
    Avi,
    /// A multipart body; the first part's Content-Type, if any.
    Multipart(Option<String>),
    Json,
    /// Other printable text: its first line (at most 60 characters).
    Text(String),
    Empty,
    Unknown,
}

impl Content {
    /// Sniffs `head` (the first bytes; 512 are plenty, fewer are fine).
    pub fn sniff(head: &[u8]) -> Content {
        let h = head;
        let lower: Vec<u8> = h.iter().take(1024).map(u8::to_ascii_lowercase).collect();
        let trimmed = trim_ascii_start(&lower);
        match () {
            _ if h.is_empty() => Content::Empty,
            _ if h.starts_with(&[0xFF, 0xD8, 0xFF]) => Content::Jpeg,
            _ if h.starts_with(b"\x89PNG\r\n\x1a\n") => Content::Png,
            _ if h.starts_with(b"GIF87a") || h.starts_with(b"GIF89a") => Content::Gif,
            _ if h.starts_with(b"RIFF") && h.get(8..12) == Some(b"WEBP") => Content::Webp,
            _ if h.starts_with(b"RIFF") && h.get(8..12) == Some(b"AVI ") => Content::Avi,
            _ if h.get(4..8) == Some(b"ftyp") => Content::Mp4,
            _ if h.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) => Content::Matroska,
            _ if h.len() > 188 && h[0] == 0x47 && h[188] == 0x47 => Content::MpegTs,
            _ if h.starts_with(&[0, 0, 0, 1]) || h.starts_with(&[0, 0, 1]) => Content::H26x,
            _ if h.starts_with(b"HTTP/1.") || h.starts_with(b"HTTP/2") => Content::HttpResponse,
            _ if trimmed.starts_with(b"<!doctype html") || contains(&lower, b"<html") => Content::Html,
            _ if trimmed.starts_with(b"--") && contains(&lower, b"content-type:") => Content::Multipart(part_type(h)),
            _ if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") => Content::Json,
            _ if is_bmp(h) => Content::Bmp,
            _ if is_text(h) => Content::Text(first_line(h)),
            _ => Content::Unknown,
        }
    }

    /// Whether `siglipd` decodes this as one image (the formats of `model::preprocess`).
    pub fn is_image(&self) -> bool {
        matches!(self, Content::Jpeg | Content::Png | Content::Gif | Content::Webp | Content::Bmp)
    }

    /// A lowercase phrase for messages: "an HTML page", "an H.264/H.265 video stream", ….
    pub fn describe(&self) -> String {
        match self {
            Content::Jpeg => "a JPEG image".into(),
            Content::Png => "a PNG image".into(),
            Content::Gif => "a GIF image".into(),
            Content::Webp => "a WebP image".into(),
            Content::Bmp => "a BMP image".into(),
            Content::Html => "an HTML page".into(),
            Content::HttpResponse => "a raw HTTP response".into(),
            Content::H26x => "an H.264/H.265 video stream".into(),
            Content::Mp4 => "an MP4/MOV video".into(),
            Content::Matroska => "a Matroska/WebM video".into(),
            Content::MpegTs => "an MPEG transport stream".into(),
            Content::Avi => "an AVI video".into(),
            Content::Multipart(Some(t)) => format!("a multipart stream of {t} parts"),
            Content::Multipart(None) => "a multipart stream without content types".into(),
            Content::Json => "JSON text".into(),
            Content::Text(line) => format!("text ({line:?})"),
            Content::Empty => "nothing (0 bytes)".into(),
            Content::Unknown => "binary data with no JPEG frame in it".into(),
        }
    }
}

/// `BM` and a DIB header size a BMP reader knows (core, info, v2–v5).
fn is_bmp(h: &[u8]) -> bool {
    let dib = h.get(14..18).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    h.starts_with(b"BM") && matches!(dib, Some(12 | 40 | 52 | 56 | 108 | 124))
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The first `Content-Type:` value in a multipart head, lowercased.
fn part_type(h: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&h[..h.len().min(1024)]).to_ascii_lowercase();
    let line = text.lines().find_map(|l| l.trim().strip_prefix("content-type:"))?;
    Some(line.trim().chars().take(60).collect())
}

fn is_text(h: &[u8]) -> bool {
    let sample = &h[..h.len().min(512)];
    sample.iter().all(|&c| c.is_ascii_graphic() || c.is_ascii_whitespace() || c >= 0x80)
        && std::str::from_utf8(sample).is_ok_and(|s| !s.trim().is_empty())
}

fn first_line(h: &[u8]) -> String {
    let text = String::from_utf8_lossy(&h[..h.len().min(512)]);
    text.trim().lines().next().unwrap_or_default().chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_what_cameras_and_tools_send() {
        let mut ts = vec![0u8; 400];
        ts[0] = 0x47;
        ts[188] = 0x47;
        let cases: Vec<(Vec<u8>, Content)> = vec![
            (b"\xff\xd8\xff\xe0\x00\x10JFIF".to_vec(), Content::Jpeg),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), Content::Png),
            (b"GIF89a\x10\x00".to_vec(), Content::Gif),
            (b"RIFF\0\0\0\0WEBPVP8 ".to_vec(), Content::Webp),
            (b"BM\0\0\0\0\0\0\0\0\0\0\0\0\x28\0\0\0".to_vec(), Content::Bmp),
            (b"BMW is a car".to_vec(), Content::Text("BMW is a car".into())),
            (b"\0\0\0\x01\x67\x42\x00\x1f".to_vec(), Content::H26x),
            (b"\0\0\0\x20ftypisom".to_vec(), Content::Mp4),
            (b"\x1a\x45\xdf\xa3\x01".to_vec(), Content::Matroska),
            (ts, Content::MpegTs),
            (b"\n<!DOCTYPE html>\n<html><body>login".to_vec(), Content::Html),
            (b"<HTML><HEAD>".to_vec(), Content::Html),
            (b"HTTP/1.1 200 OK\r\n".to_vec(), Content::HttpResponse),
            (b"--frame\r\nContent-Type: image/png\r\n\r\n\x89PNG".to_vec(), Content::Multipart(Some("image/png".into()))),
            (b"{\"error\": \"unauthorized\"}".to_vec(), Content::Json),
            (b"401 Unauthorized\nplease log in".to_vec(), Content::Text("401 Unauthorized".into())),
            (vec![], Content::Empty),
            (vec![0x13, 0x00, 0xfe, 0x01], Content::Unknown),
        ];
        for (bytes, expect) in cases {
            assert_eq!(Content::sniff(&bytes), expect, "{:?}", String::from_utf8_lossy(&bytes));
        }
        assert!(Content::Png.is_image() && !Content::Html.is_image());
        assert_eq!(Content::H26x.describe(), "an H.264/H.265 video stream");
    }
}
