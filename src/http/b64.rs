//! The `image` field of a JSON `/api/classify` body: base64 as common clients send it.
//!
//! Accepted (each seen from real clients): plain base64 (RFC 4648 §4), the URL-safe alphabet
//! (§5, not mixed with `+`/`/`), line breaks and other ASCII whitespace anywhere (GNU `base64`
//! and MIME wrap at 76 columns, some tools with CRLF), padding present, missing or repeated at
//! the end, and `data:` URLs (`data:image/jpeg;base64,...`, RFC 2397). Python's
//! `base64.decodebytes`, which transformers' `load_image` uses, skips line breaks too.
//! Refused, with a message naming the problem: an empty field, a `data:` URL that is not
//! base64, characters outside the alphabet (with their offset), `=` before the end, mixed
//! alphabets, and a length no base64 encoder can produce (a truncated body).
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use thiserror::Error;

/// Why an `image` field is not an image's bytes. Offsets count bytes of the field as sent.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum B64Error {
    #[error("image field is empty")]
    Empty,
    #[error("image field is a data URL without a ',' before its data")]
    DataUrlNoComma,
    #[error("image field is a data URL that is not base64 (its header {header:?} lacks ';base64'); send the bytes base64-encoded")]
    DataUrlNotBase64 { header: String },
    #[error("image field has {ch:?} at byte {offset}, which is not base64{hint}")]
    InvalidChar { ch: char, offset: usize, hint: &'static str },
    #[error("image field has padding '=' before the end of the data, at byte {offset} (two base64 strings joined?)")]
    PaddingInside { offset: usize },
    #[error("image field mixes the standard ('+', '/') and URL-safe ('-', '_') base64 alphabets")]
    MixedAlphabets,
    #[error("image field has {len} base64 characters; no encoder produces a length of 4k+1 (truncated?)")]
    BadLength { len: usize },
}

/// The most bytes a JSON string of base64 for `n` image bytes can take when wrapped at 60
/// columns or more with CRLF (PEM/openssl wrap at 64, MIME and GNU `base64` at 76), plus a
/// `data:` header: a bound for the request body.
pub fn max_field_len(n: usize) -> usize {
    let b64 = n.div_ceil(3) * 4;
    // JSON escapes CRLF as `\r\n`: 4 characters per line of at least 60
    b64 + b64.div_ceil(60) * 4 + 256
}

/// Decodes the `image` field into the image's bytes (shape: any length ≥ 1).
/// Errors: [`B64Error`], each naming what is wrong and where.
pub fn decode_image_field(field: &str) -> Result<Vec<u8>, B64Error> {
    let (data, start) = strip_data_url(field)?;
    let mut clean = Vec::with_capacity(data.len());
    let (mut std_chars, mut url_chars, mut pad_at) = (false, false, None);
    for (i, &b) in data.as_bytes().iter().enumerate() {
        if b.is_ascii_whitespace() || b == b'\x0b' {
            continue;
        }
        if b == b'=' {
            pad_at = pad_at.or(Some(start + i));
            continue;
        }
        if let Some(offset) = pad_at {
            return Err(B64Error::PaddingInside { offset });
        }
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => {}
            b'+' | b'/' => std_chars = true,
            b'-' | b'_' => url_chars = true,
            _ => return Err(invalid_char(field, start + i)),
        }
        clean.push(b);
    }
    if std_chars && url_chars {
        return Err(B64Error::MixedAlphabets);
    }
    if clean.is_empty() {
        return Err(B64Error::Empty);
    }
    if clean.len() % 4 == 1 {
        return Err(B64Error::BadLength { len: clean.len() });
    }
    // Padding was checked above; bits after the last full byte are ignored, as decodebytes does.
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireNone).with_decode_allow_trailing_bits(true);
    let engine = GeneralPurpose::new(if url_chars { &alphabet::URL_SAFE } else { &alphabet::STANDARD }, config);
    Ok(engine.decode(&clean).expect("alphabet, padding and length checked above"))
}

/// Splits a `data:[<type>][;params];base64,` header off (case-insensitive, RFC 2397).
/// Returns the data part and its byte offset in `field`.
fn strip_data_url(field: &str) -> Result<(&str, usize), B64Error> {
    let lead = field.len() - field.trim_start().len();
    let rest = &field[lead..];
    let is_data_url = rest.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:"));
    // `image/png;base64,...` without `data:` was accepted before; ';' is never base64.
    let bare_header = !is_data_url && rest.split_once(',').is_some_and(|(h, _)| h.contains(';'));
    if !is_data_url && !bare_header {
        return Ok((field, 0));
    }
    let (header, data) = rest.split_once(',').ok_or(B64Error::DataUrlNoComma)?;
    if !header.to_ascii_lowercase().ends_with(";base64") {
        return Err(B64Error::DataUrlNotBase64 { header: header.chars().take(80).collect() });
    }
    Ok((data, lead + header.len() + 1))
}

fn invalid_char(field: &str, offset: usize) -> B64Error {
    let ch = field[offset..].chars().next().unwrap_or('?');
    let hint = match ch {
        '%' => " (percent-encoded? put the base64 text in the JSON string as it is)",
        '\\' => " (escaped twice? the JSON string must hold the base64 text itself)",
        ',' | ';' | ':' => " (a data URL must start with 'data:' and have one ',' before the data)",
        _ => "",
    };
    B64Error::InvalidChar { ch, offset, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: &[u8] = b"\xff\xd8\xff\xe0 any bytes, 0..255 \x00\x01\xfe\xfd\xfc";

    fn std_b64() -> String {
        base64::engine::general_purpose::STANDARD.encode(BYTES)
    }

    fn wrap(s: &str, cols: usize, eol: &str) -> String {
        s.as_bytes().chunks(cols).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(eol) + eol
    }

    #[test]
    fn accepts_the_forms_clients_send() {
        let plain = std_b64();
        let unpadded = plain.trim_end_matches('=').to_string();
        let url = base64::engine::general_purpose::URL_SAFE.encode(BYTES);
        assert!(plain.ends_with('=') && url.contains(['-', '_']), "the test data must exercise padding and -_");
        for form in [
            plain.clone(),
            wrap(&plain, 76, "\n"),
            wrap(&plain, 76, "\r\n"),
            wrap(&plain, 64, "\n"),
            format!("  {plain}\n"),
            unpadded.clone(),
            format!("{plain}=="),
            url,
            format!("data:image/jpeg;base64,{plain}"),
            format!("DATA:image/jpeg;charset=binary;BASE64,{}", wrap(&plain, 76, "\r\n")),
            format!("data:;base64,{unpadded}"),
            format!("image/jpeg;base64,{plain}"),
        ] {
            assert_eq!(decode_image_field(&form).as_deref(), Ok(BYTES), "{form:?}");
        }
    }

    #[test]
    fn refuses_the_rest_naming_the_problem() {
        let plain = std_b64();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "is empty"),
            (" \r\n".into(), "is empty"),
            ("data:image/jpeg;base64,".into(), "is empty"),
            ("data:image/jpeg".into(), "without a ','"),
            ("data:text/plain,hello".into(), "not base64"),
            (format!("{}*{}", &plain[..8], &plain[8..]), "'*' at byte 8"),
            (format!("{}%2B", &plain[..8]), "percent-encoded"),
            (format!("{plain}{plain}"), "padding '=' before the end"),
            (format!("{}+-", &plain[..8]), "mixes"),
            (plain[..9].to_string(), "4k+1"),
            ("héllo".into(), "'é' at byte 1"),
        ];
        for (form, expect) in cases {
            let err = decode_image_field(&form).expect_err(&form).to_string();
            assert!(err.contains(expect), "{form:?}: {err}");
            assert!(err.starts_with("image field"), "the message names the field: {err}");
        }
    }

    #[test]
    fn the_wrapped_case_file_decodes_like_its_unwrapped_form() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/api/api_body_wrapped_base64.json");
        let body: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let wrapped = body["image"].as_str().unwrap();
        assert!(wrapped.contains('\n'), "the case file is wrapped");
        let unwrapped: String = wrapped.split_whitespace().collect();
        let bytes = decode_image_field(wrapped).unwrap();
        assert_eq!(bytes, base64::engine::general_purpose::STANDARD.decode(unwrapped).unwrap());
        assert_eq!(&bytes[..2], b"\xff\xd8", "a JPEG");
    }

    #[test]
    fn body_bound_covers_crlf_wrapping() {
        let n = 10_000;
        let plain = base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        for cols in [64, 76] {
            let json = serde_json::to_string(&format!("data:image/jpeg;base64,{}", wrap(&plain, cols, "\r\n"))).unwrap();
            assert!(json.len() <= max_field_len(n), "{cols} columns: {} > {}", json.len(), max_field_len(n));
        }
    }
}
