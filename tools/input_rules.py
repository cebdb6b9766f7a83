"""Fixture images, one per decoding/resizing rule of the reference (Pillow 13 + transformers).

Used by make_fixtures.py (`--rules-only` regenerates just these and their goldens). Each image is
built from random colour tiles: on such images the tiny random model sits near p ~ 0.45, where
one grey level on every pixel moves scores by ~0.01 (photos saturate it and hide errors).
Files the script cannot make with Pillow (offset GIF frames, low-bit-depth PNGs, metadata in
unusual places) are written byte by byte here, following the format specifications.

RULES maps each file name to the rule it pins down and whether its pixels must match exactly
(lossless formats: yes; lossy WebP: only the probabilities, since libwebp and image-webp may
round the YUV->RGB conversion differently).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np

RULES: dict[str, tuple[str, bool]] = {}


def rule(name: str, text: str, exact: bool = True) -> str:
    RULES[name] = (text, exact)
    return name


def tiles(w: int, h: int, n: int = 6, seed: int = 0) -> np.ndarray:
    """w x h RGB of n x n random colour tiles (uint8)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(n, n, 3), dtype=np.uint8)
    ys = np.minimum(np.arange(h) * n // h, n - 1)
    xs = np.minimum(np.arange(w) * n // w, n - 1)
    return colours[ys][:, xs]


# ---- PNG by hand ------------------------------------------------------------------------------

def chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def pack_rows(samples: np.ndarray, bits: int) -> list[bytes]:
    """Rows of integer samples (h x w*channels) packed MSB first at `bits` per sample."""
    rows = []
    for row in samples:
        if bits == 16:
            rows.append(row.astype(">u2").tobytes())
        elif bits == 8:
            rows.append(row.astype(np.uint8).tobytes())
        else:
            per = 8 // bits
            padded = np.concatenate([row, np.zeros((-len(row)) % per, dtype=row.dtype)]).astype(np.uint8)
            groups = padded.reshape(-1, per)
            shifts = (8 - bits * (np.arange(per) + 1)).astype(np.uint8)
            rows.append((groups << shifts).sum(axis=1).astype(np.uint8).tobytes())
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(w: int, h: int, bits: int, ctype: int, samples: np.ndarray, before: list[bytes] = (), after: list[bytes] = (),
              interlace: bool = False) -> bytes:
    if interlace:  # Adam7: seven sub-images, each with its own filtered rows (8-bit samples only)
        px = samples.reshape(h, w, -1)
        raw = b"".join(b"\x00" + r for x0, y0, dx, dy in ADAM7 if px[y0::dy, x0::dx].size
                       for r in pack_rows(px[y0::dy, x0::dx].reshape(len(range(y0, h, dy)), -1), bits))
    else:
        raw = b"".join(b"\x00" + r for r in pack_rows(samples, bits))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, ctype, 0, 0, int(interlace)))
    out += b"".join(before) + chunk(b"IDAT", zlib.compress(raw, 9)) + b"".join(after) + chunk(b"IEND", b"")
    return out


# ---- GIF by hand ------------------------------------------------------------------------------

def lzw_literal(indices: bytes, min_code: int) -> bytes:
    """GIF LZW data that only uses literal codes, with a clear code before the table would
    grow the code width: valid for every decoder, no compression needed."""
    clear, end = 1 << min_code, (1 << min_code) + 1
    width = min_code + 1
    run = (1 << min_code) - 3  # literals per clear, safely below the width change
    codes = []
    for i, v in enumerate(indices):
        if i % max(run, 1) == 0:
            codes.append(clear)
        codes.append(v)
    codes.append(end)
    acc, nbits, out = 0, 0, bytearray()
    for c in codes:
        acc |= c << nbits
        nbits += width
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    blocks = b"".join(bytes([len(out[i:i + 255])]) + bytes(out[i:i + 255]) for i in range(0, len(out), 255))
    return bytes([min_code]) + blocks + b"\x00"


def gif_bytes(screen, frame_box, indices: np.ndarray, global_pal: bytes | None, local_pal: bytes | None = None,
              trns: int | None = None, min_code: int = 8, background: int = 0, interlace: bool = False) -> bytes:
    """One-frame GIF: screen (w, h), frame at (x, y, w, h) with `indices` (h x w)."""
    def pal_bits(p):
        return max(1, int(np.ceil(np.log2(len(p) // 3))))
    sw, sh = screen
    flags = 0
    if global_pal:
        flags = 0x80 | ((pal_bits(global_pal) - 1) << 4) | (pal_bits(global_pal) - 1)
    out = b"GIF89a" + struct.pack("<HHBBB", sw, sh, flags, background, 0) + (global_pal or b"")
    if trns is not None:
        out += b"\x21\xf9\x04" + bytes([1]) + b"\x00\x00" + bytes([trns]) + b"\x00"
    x, y, w, h = frame_box
    lflags = ((0x80 | (pal_bits(local_pal) - 1)) if local_pal else 0) | (0x40 if interlace else 0)
    out += b"\x2c" + struct.pack("<HHHHB", x, y, w, h, lflags) + (local_pal or b"")
    if interlace:  # rows stored in the four interlace passes
        order = [r for start, step in ((0, 8), (4, 8), (2, 4), (1, 2)) for r in range(start, h, step)]
        indices = indices[order]
    out += lzw_literal(indices.astype(np.uint8).tobytes(), min_code) + b"\x3b"
    return out


def palette_of(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=n * 3, dtype=np.uint8).tobytes()


def tile_indices(w: int, h: int, n_colours: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, n_colours, size=(6, 6))
    ys = np.minimum(np.arange(h) * 6 // h, 5)
    xs = np.minimum(np.arange(w) * 6 // w, 5)
    return grid[ys][:, xs]


# ---- EXIF / XMP ----------------------------------------------------------------------------------

def exif_tiff(orientation: int | None, big: bool = False) -> bytes:
    """A TIFF header + IFD0 with ImageWidth and, if given, Orientation (SHORT)."""
    e = ">" if big else "<"
    entries = [(0x0100, 3, 1, 5)] + ([(0x0112, 3, 1, orientation)] if orientation is not None else [])
    out = (b"MM\x00*" if big else b"II*\x00") + struct.pack(e + "I", 8) + struct.pack(e + "H", len(entries))
    for tag, typ, n, v in entries:
        out += struct.pack(e + "HHIHH", tag, typ, n, v, 0)
    return out + struct.pack(e + "I", 0)


def xmp(value: int, element: bool) -> bytes:
    body = (f"<tiff:Orientation>{value}</tiff:Orientation>" if element else "")
    attr = "" if element else f' tiff:Orientation="{value}"'
    return (f'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            f'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
            f' xmlns:tiff="http://ns.adobe.com/tiff/1.0/"{attr}>{body}</rdf:Description></rdf:RDF></x:xmpmeta>'
            f'<?xpacket end="w"?>').encode()


def jpeg_with_segments(img, segments: list[tuple[int, bytes]]) -> bytes:
    """A JPEG (quality 92, no metadata) with APPn segments inserted right after SOI."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    data = buf.getvalue()
    segs = b"".join(bytes([0xFF, m]) + struct.pack(">H", len(p) + 2) + p for m, p in segments)
    return data[:2] + segs + data[2:]


def raw_profile(exif: bytes) -> bytes:
    h = exif.hex()
    return f"\nexif\n{len(exif):8}\n".encode() + b"\n".join(h[i:i + 72].encode() for i in range(0, len(h), 72)) + b"\n"


# ---- BMP by hand ---------------------------------------------------------------------------------

def bmp16(rgb: np.ndarray, green_bits: int) -> bytes:
    """A bottom-up 16-bit BMP: 5-5-5 with BI_RGB, or 5-6-5 with BI_BITFIELDS masks."""
    h, w, _ = rgb.shape
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    if green_bits == 6:
        px = (r >> 3) << 11 | (g >> 2) << 5 | (b >> 3)
        masks, compression = struct.pack("<III", 0xF800, 0x7E0, 0x1F), 3
    else:
        px = (r >> 3) << 10 | (g >> 3) << 5 | (b >> 3)
        masks, compression = b"", 0
    stride = (w * 2 + 3) // 4 * 4
    rows = b"".join(px[y].astype("<u2").tobytes().ljust(stride, b"\0") for y in range(h - 1, -1, -1))
    offset = 14 + 40 + len(masks)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 16, compression, len(rows), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + masks + rows


def bmp_palette(w: int, h: int, bpp: int, palette: bytes, data: bytes, compression: int = 0) -> bytes:
    """A bottom-up palette BMP (BITMAPINFOHEADER, BGRX palette from RGB triples)."""
    pal = b"".join(bytes([palette[i + 2], palette[i + 1], palette[i], 0]) for i in range(0, len(palette), 3))
    offset = 14 + 40 + len(pal)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bpp, compression, len(data), 2835, 2835, len(pal) // 4, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + pal + data


def bmp_4bit(idx: np.ndarray) -> bytes:
    h, w = idx.shape
    stride = ((w + 1) // 2 + 3) // 4 * 4
    rows = b"".join(pack_rows(idx[y:y + 1], 4)[0].ljust(stride, b"\0") for y in range(h - 1, -1, -1))
    return rows


def rle8_rows(idx: np.ndarray) -> bytes:
    """RLE8 (bottom-up): runs, an absolute run, a delta skip and an early end of line (skipped
    pixels are index 0 in Pillow's decoder). An end of bitmap before the last row is not used:
    Pillow refuses such files ("not enough image data")."""
    h, w = idx.shape
    out = bytearray()
    for n, y in enumerate(range(h - 1, -1, -1)):
        row = idx[y]
        if n % 5 == 1:
            out += bytes([20, row[0]])  # a run, then end of line: the rest of the row is index 0
            out += b"\x00\x00"
            continue
        x = 0
        if n % 5 == 2:
            out += bytes([0, 5]) + bytes(row[:5].tolist()) + b"\x00"  # absolute mode, padded to a word
            x = 5
            out += b"\x00\x02" + bytes([7, 0])  # delta: skip 7 pixels right
            x += 7
        while x < w:
            run = 1
            while x + run < w and row[x + run] == row[x] and run < 255:
                run += 1
            out += bytes([run, row[x]])
            x += run
        out += b"\x00\x00"
    return bytes(out) + b"\x00\x01"


def rle4_rows(idx: np.ndarray) -> bytes:
    """RLE4 (bottom-up): runs of alternating index pairs, end of line per row."""
    h, w = idx.shape
    out = bytearray()
    for y in range(h - 1, -1, -1):
        x = 0
        while x < w:
            run = min(16, w - x)
            out += bytes([run, (idx[y, x] << 4) | idx[y, min(x + 1, w - 1)]])
            x += run
        out += b"\x00\x00"
    return bytes(out) + b"\x00\x01"


# ---- the fixtures ----------------------------------------------------------------------------------

def make(dst: Path) -> list[str]:
    """Writes every rule's image into dst (other files there are left alone)."""
    from PIL import Image

    dst.mkdir(parents=True, exist_ok=True)
    names: list[str] = []

    def put(name: str, text: str, data: bytes | None = None, img=None, bit_exact: bool = True, **kw):
        rule(name, text, bit_exact)
        if data is not None:
            (dst / name).write_bytes(data)
        else:
            img.save(dst / name, **kw)
        names.append(name)

    # resize pass order (Pillow 13: vertical first iff dh > 0 and dh > 2*dw)
    for (w, h), why in {
        (384, 1080): "tall: vertical pass first",
        (324, 425): "dh = 2*dw + 1: vertical first",
        (324, 424): "dh = 2*dw: horizontal first",
        (400, 500): "both shrink, dh < 2*dw: horizontal first",
        (100, 1000): "width grows, height shrinks: vertical first",
        (224, 700): "only the height changes",
        (700, 224): "only the width changes",
        (90, 150): "both grow",
        (1500, 1000): "both shrink a lot: horizontal first",
    }.items():
        put(f"resize_{w}x{h}.png", f"resize {w}x{h} -> 224x224: {why}", img=Image.fromarray(tiles(w, h, seed=w + h)))

    # GIF first frame on its canvas (GifImagePlugin)
    pal16 = palette_of(16, 1)
    ind = tile_indices(80, 53, 16, 2)
    put("gif_offset.gif", "first frame smaller than the screen: canvas = palette index 0",
        gif_bytes((160, 106), (40, 30, 80, 53), ind, pal16))
    put("gif_offset_trns.gif", "offset frame with a transparency index: canvas = that colour",
        gif_bytes((160, 106), (40, 30, 80, 53), ind, pal16, trns=5))
    put("gif_background_index.gif", "a background colour index is not used for frame 0: canvas = index 0",
        gif_bytes((160, 106), (40, 30, 80, 53), ind, pal16, background=7))
    put("gif_trns_inside.gif", "transparent pixels inside the frame keep their palette colour",
        gif_bytes((120, 90), (0, 0, 120, 90), tile_indices(120, 90, 16, 3), pal16, trns=int(tile_indices(120, 90, 16, 3)[0, 0])))
    put("gif_beyond_screen.gif", "frame reaching past the logical screen grows the canvas",
        gif_bytes((100, 80), (60, 40, 80, 70), tile_indices(80, 70, 16, 4), pal16))
    put("gif_local_palette.gif", "local palette wins over the global one",
        gif_bytes((120, 90), (10, 10, 100, 70), tile_indices(100, 70, 16, 5), pal16, local_pal=palette_of(16, 6)))
    put("gif_no_global.gif", "only a local palette; canvas index 0 of it",
        gif_bytes((120, 90), (20, 0, 100, 90), tile_indices(100, 90, 16, 7), None, local_pal=palette_of(16, 8)))
    grey_ramp = bytes(v for i in range(16) for v in (i, i, i))
    put("gif_grey_ramp.gif", "identity grey palette: mode L, indices are grey levels",
        gif_bytes((120, 90), (0, 0, 120, 90), tile_indices(120, 90, 200, 9), grey_ramp))
    put("gif_grey_ramp_trns.gif", "identity grey palette with a transparency index: key (t, t, t)",
        gif_bytes((120, 90), (10, 10, 100, 70), tile_indices(100, 70, 16, 12), grey_ramp, trns=int(tile_indices(100, 70, 16, 12)[5, 5])))
    put("gif_interlaced.gif", "interlaced frame", gif_bytes((120, 90), (0, 5, 120, 83), tile_indices(120, 83, 16, 13), pal16, interlace=True))
    put("gif_short_palette.gif", "indices past a 4-colour palette: black",
        gif_bytes((120, 90), (0, 0, 120, 90), tile_indices(120, 90, 12, 10), palette_of(4, 11)))

    # orientation: everywhere exif_transpose looks (Image.getexif + plugins)
    base = Image.fromarray(tiles(180, 120, seed=21))
    for o in range(1, 9):
        put(f"orient_exif_{o}.jpg", f"JPEG EXIF orientation {o}", jpeg_with_segments(base, [(0xE1, b"Exif\0\0" + exif_tiff(o))]))
    put("orient_exif_mm.jpg", "JPEG EXIF big-endian, orientation 6", jpeg_with_segments(base, [(0xE1, b"Exif\0\0" + exif_tiff(6, big=True))]))
    xmp_app = lambda v, el: (0xE1, b"http://ns.adobe.com/xap/1.0/\0" + xmp(v, el))  # noqa: E731
    put("orient_xmp_attr.jpg", "JPEG XMP only, attribute form", jpeg_with_segments(base, [xmp_app(6, False)]))
    put("orient_xmp_elem.jpg", "JPEG XMP only, element form", jpeg_with_segments(base, [xmp_app(8, True)]))
    put("orient_exif_notag_xmp.jpg", "EXIF without orientation: XMP decides",
        jpeg_with_segments(base, [(0xE1, b"Exif\0\0" + exif_tiff(None)), xmp_app(3, False)]))
    put("orient_exif1_xmp6.jpg", "EXIF orientation 1 beats XMP 6", jpeg_with_segments(base, [(0xE1, b"Exif\0\0" + exif_tiff(1)), xmp_app(6, False)]))
    put("orient_two_exif.jpg", "two EXIF APP1 segments: the second is appended, the first's tag wins",
        jpeg_with_segments(base, [(0xE1, b"Exif\0\0" + exif_tiff(7)), (0xE1, b"Exif\0\0" + exif_tiff(2))]))
    dup = b"II*\x00" + struct.pack("<IH", 8, 2) + struct.pack("<HHIHH", 0x112, 3, 1, 5, 0) + struct.pack("<HHIHH", 0x112, 3, 1, 2, 0) + bytes(4)
    put("orient_dup_tag.jpg", "Orientation listed twice in IFD0: the first entry wins", jpeg_with_segments(base, [(0xE1, b"Exif\0\0" + dup)]))
    rational = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIII", 0x112, 5, 1, 26, 0) + struct.pack("<II", 12, 2)
    put("orient_rational.jpg", "Orientation as RATIONAL 12/2: equal to 6, so it rotates", jpeg_with_segments(base, [(0xE1, b"Exif\0\0" + rational)]))
    put("orient_two_xmp.jpg", "the last XMP segment wins", jpeg_with_segments(base, [xmp_app(3, False), xmp_app(5, True)]))
    rgb = np.array(base)
    h, w = rgb.shape[:2]
    png = lambda before=(), after=(): png_bytes(w, h, 8, 2, rgb.reshape(h, -1), list(before), list(after))  # noqa: E731
    put("orient_png_exif.png", "PNG eXIf chunk", png([chunk(b"eXIf", exif_tiff(6))]))
    put("orient_png_exif_after_idat.png", "PNG eXIf after IDAT", png(after=[chunk(b"eXIf", exif_tiff(8))]))
    put("orient_png_raw_text.png", "PNG tEXt Raw profile type exif", png([chunk(b"tEXt", b"Raw profile type exif\0" + raw_profile(b"Exif\0\0" + exif_tiff(3)))]))
    put("orient_png_raw_ztxt.png", "PNG zTXt Raw profile type exif",
        png([chunk(b"zTXt", b"Raw profile type exif\0\0" + zlib.compress(raw_profile(b"Exif\0\0" + exif_tiff(5))))]))
    put("orient_png_itxt_xmp.png", "PNG iTXt XML:com.adobe.xmp", png([chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp(6, False))]))
    put("orient_png_itxt_xmp_z.png", "PNG compressed iTXt XMP, element form",
        png([chunk(b"iTXt", b"XML:com.adobe.xmp\0\x01\0\0\0" + zlib.compress(xmp(7, True)))]))
    put("orient_png_text_xmp.png", "PNG tEXt XML:com.adobe.xmp", png([chunk(b"tEXt", b"XML:com.adobe.xmp\0" + xmp(2, False))]))
    exif6 = Image.Exif()
    exif6[0x0112] = 6
    put("orient_webp_exif.webp", "WebP EXIF chunk", img=base, lossless=True, exif=exif6.tobytes())
    put("orient_webp_xmp.webp", "WebP XMP chunk", img=base, lossless=True, xmp=xmp(8, False))

    # PNG colour types and bit depths (PngImagePlugin._MODES + convert("RGB"))
    g = tiles(96, 64, seed=31)[..., 0].astype(np.int64)
    for bits in (1, 2, 4):
        put(f"png_gray{bits}.png", f"grey {bits}-bit: scaled to 0..255", png_bytes(96, 64, bits, 0, g >> (8 - bits)))
    for bits in (1, 2, 4, 8):
        n = 1 << bits
        idx = tile_indices(96, 64, n, 32 + bits)
        put(f"png_palette{bits}.png", f"palette {bits}-bit", png_bytes(96, 64, bits, 3, idx, [chunk(b"PLTE", palette_of(n, bits))]))
    idx = tile_indices(96, 64, 8, 40)
    put("png_palette_trns.png", "palette with per-entry alpha (tRNS): alpha dropped",
        png_bytes(96, 64, 8, 3, idx, [chunk(b"PLTE", palette_of(8, 41)), chunk(b"tRNS", bytes([0, 128, 255, 7]))]))
    put("png_palette_trns_one.png", "palette tRNS with one transparent entry: a colour key, painted white by convert_to_rgb",
        png_bytes(96, 64, 8, 3, idx, [chunk(b"PLTE", palette_of(8, 41)), chunk(b"tRNS", bytes([255, 255, 0, 255]))]))
    put("png_gray1_trns.png", "1-bit grey with tRNS 0: black is the key, painted white",
        png_bytes(96, 64, 1, 0, g >> 7, [chunk(b"tRNS", struct.pack(">H", 0))]))
    put("png_gray2_trns.png", "2-bit grey with tRNS 3: the key is the raw value 3, which no scaled pixel equals",
        png_bytes(96, 64, 2, 0, g >> 6, [chunk(b"tRNS", struct.pack(">H", 3))]))
    put("png_palette_short.png", "indices past a short PLTE",
        png_bytes(96, 64, 8, 3, tile_indices(96, 64, 12, 42), [chunk(b"PLTE", palette_of(8, 43))]))
    c = tiles(96, 64, seed=44)
    put("png_rgb_trns.png", "RGB with a tRNS colour key: key ignored",
        png_bytes(96, 64, 8, 2, c.reshape(64, -1), [chunk(b"tRNS", struct.pack(">HHH", *c[0, 0]))]))
    put("png_gray_trns.png", "grey with a tRNS key", png_bytes(96, 64, 8, 0, g, [chunk(b"tRNS", struct.pack(">H", int(g[0, 0])))]))
    g16 = g * 257 // 3
    put("png_gray16_trns.png", "16-bit grey with tRNS: still I;16, clipped at 255",
        png_bytes(96, 64, 16, 0, g16, [chunk(b"tRNS", struct.pack(">H", int(g16[0, 0])))]))
    la16 = np.stack([g * 257 + np.arange(96)[None, :], 65535 - g * 200], -1).reshape(64, -1)
    key = np.array([c[0, 0, 0], c[0, 0, 1], c[0, 0, 2]], dtype=np.int64)
    rgb16 = c.astype(np.int64) * 256 + 77  # high bytes = the tile colours
    put("png_rgb16_trns.png", "16-bit RGB whose tRNS values equal some pixels' high bytes: those turn white, as in Pillow",
        png_bytes(96, 64, 16, 2, rgb16.reshape(64, -1), [chunk(b"tRNS", struct.pack(">HHH", *key))]))
    put("png_la16.png", "16-bit grey+alpha: RGBA via LA;16B, the high byte", png_bytes(96, 64, 16, 4, la16))
    rgba16 = np.concatenate([c.astype(np.int64) * 257 + 7, np.full((64, 96, 1), 30000)], -1).reshape(64, -1)
    put("png_rgba16.png", "16-bit RGBA: high byte, alpha dropped", png_bytes(96, 64, 16, 6, rgba16))
    rgba = np.concatenate([c, (np.arange(96)[None, :, None] * 2 + np.zeros((64, 1, 1))).astype(np.uint8)], -1)
    rgba[:20, :20, 3] = 0
    put("png_interlaced.png", "Adam7-interlaced RGB", png_bytes(99, 61, 8, 2, tiles(99, 61, seed=45).reshape(61, -1), interlace=True))
    put("png_rgba8.png", "8-bit RGBA with transparent pixels: alpha dropped, not composited", img=Image.fromarray(rgba, "RGBA"))

    # JPEG variants, all decoded by libjpeg-turbo as in Pillow
    jt = Image.fromarray(tiles(97, 65, seed=64))
    put("jpeg_progressive.jpg", "progressive JPEG", img=jt, quality=90, progressive=True)
    put("jpeg_444.jpg", "JPEG 4:4:4", img=jt, quality=90, subsampling=0)
    put("jpeg_422.jpg", "JPEG 4:2:2, odd size", img=jt, quality=90, subsampling=1)
    put("jpeg_gray.jpg", "greyscale JPEG", img=jt.convert("L"), quality=90)

    # JPEG with four channels: Pillow reads CMYK with Adobe polarity, then cmyk2rgb
    put("jpeg_cmyk.jpg", "CMYK JPEG (Adobe inverted, Convert.c cmyk2rgb)", img=Image.fromarray(tiles(96, 64, seed=61)).convert("CMYK"), quality=95)

    # colour management is not applied by Pillow's convert: ICC profiles and gAMA are ignored
    from PIL import ImageCms

    srgb = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    srgb[24:36] = struct.pack(">6H", 2026, 1, 1, 0, 0, 0)  # fixed creation date: reproducible files
    srgb[84:100] = bytes(16)  # profile ID 0 = "not computed" (ICC.1 7.2.18)
    srgb = bytes(srgb)
    icc_img = Image.fromarray(tiles(96, 64, seed=62))
    put("jpeg_icc.jpg", "JPEG with an ICC profile: not applied", img=icc_img, quality=92, icc_profile=srgb)
    put("png_icc_gama.png", "PNG with iCCP and gAMA: not applied",
        png_bytes(96, 64, 8, 2, tiles(96, 64, seed=63).reshape(64, -1),
                  [chunk(b"gAMA", struct.pack(">I", 100000)), chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(srgb))]))

    # BMP and WebP variants
    pal16b = palette_of(16, 54)
    put("bmp_4bit.bmp", "BMP 4-bit palette", bmp_palette(96, 64, 4, pal16b, bmp_4bit(tile_indices(96, 64, 16, 55))))
    put("bmp_rle8.bmp", "BMP RLE8: runs, absolute mode, delta and end-of-line skips (index 0)",
        bmp_palette(96, 64, 8, palette_of(32, 56), rle8_rows(tile_indices(96, 64, 32, 57)), compression=1))
    put("bmp_rle4.bmp", "BMP RLE4: alternating index pairs", bmp_palette(96, 64, 4, pal16b, rle4_rows(tile_indices(96, 64, 16, 58)), compression=2))
    put("bmp_16_555.bmp", "BMP 16-bit 5-5-5 (BI_RGB): v*255/31 truncated", bmp16(tiles(96, 64, seed=52), green_bits=5))
    put("bmp_16_565.bmp", "BMP 16-bit 5-6-5 (BITFIELDS): v*255/63 truncated", bmp16(tiles(96, 64, seed=53), green_bits=6))
    tile_img = Image.fromarray(tiles(96, 64, seed=51))
    put("bmp_palette8.bmp", "BMP 8-bit palette", img=tile_img.quantize(64, dither=Image.Dither.NONE))
    put("bmp_1bit.bmp", "BMP 1-bit", img=tile_img.convert("1", dither=Image.Dither.NONE))
    put("bmp_gray.bmp", "BMP from mode L (8-bit grey palette)", img=tile_img.convert("L"))
    put("bmp_rgba.bmp", "BMP 32-bit with alpha: alpha dropped", img=Image.fromarray(rgba, "RGBA"))
    put("webp_rgba_lossless.webp", "lossless WebP with alpha: alpha dropped", img=Image.fromarray(rgba, "RGBA"), lossless=True, exact=True)  # exact: keep RGB under alpha 0
    second = Image.fromarray(np.concatenate([tiles(96, 64, seed=71), np.full((64, 96, 1), 255, np.uint8)], -1), "RGBA")
    put("webp_animated.webp", "animated lossless WebP with alpha: the first frame (libwebp's key frame, not blended)",
        img=Image.fromarray(rgba, "RGBA"), save_all=True, append_images=[second], lossless=True, exact=True, duration=100)
    put("webp_lossy_alpha.webp", "lossy WebP with alpha (ALPH chunk): alpha dropped (probabilities only)",
        img=Image.fromarray(rgba, "RGBA"), quality=90, bit_exact=False)
    put("webp_lossy.webp", "lossy WebP (probabilities only)", img=tile_img, quality=90, bit_exact=False)
    return names
