"""Input hardening (issue 4): every way a chest film can reach the workbench, and every way a
file can be unusable.

Files are built here, from test-split films where a real film is needed: pydicom-written
DICOMs (MONOCHROME1/2, 8/12/16-bit, Rescale Slope/Intercept, VOI windows, JPEG/RLE/JPEG 2000
encapsulated), 16-bit and RGBA PNGs, EXIF-rotated JPEGs, truncated files, a 20000x20000
decompression bomb of a few dozen KB, random bytes, HTML. "Same label" cases run the shipped
fine-tuned model on the re-encoded film and compare with the clean JPEG.
"""
from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumo_core.errors import ImageError
from pneumo_core.imaging import decode as images
from pneumo_core.imaging.decode import load_image, load_path
from tests.helpers.dicom_files import PATIENT_ID, grey, make_dicom
from tests.helpers.support import require

# ---------------------------------------------------------------- builders

def encode(img: np.ndarray | Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, fmt, **kw)
    return buf.getvalue()


def png_bomb(width=20000, height=20000) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` zero pixels, streamed through zlib so
    neither building nor holding it costs memory: ~50 KB on disk, 400 megapixels decoded."""
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\x00" * ((width + 7) // 8 + 1)  # filter byte + packed bits
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its SOF header rewritten to claim ``width`` x ``height`` (a JPEG bomb header)."""
    data = bytearray(jpeg)
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def exif_rotated_jpeg(g: np.ndarray, orientation: int) -> bytes:
    """The film stored sideways with the EXIF Orientation tag a phone camera writes, so that a
    viewer honouring EXIF shows it upright. 6: display = stored rotated 90 deg clockwise."""
    stored = np.rot90(g, 1) if orientation == 6 else np.rot90(g, -1)  # 8: display = stored rotated 90 ccw
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(np.ascontiguousarray(stored), "JPEG", quality=95, exif=exif.tobytes())


def assert_refused(data: bytes, *fragments: str, name: str = "") -> str:
    with pytest.raises(ImageError) as info:
        load_image(data, name)
    msg = str(info.value)
    assert msg and "\n" not in msg and len(msg) < 400, msg
    low = msg.lower()
    assert any(f.lower() in low for f in fragments), f"{msg!r} mentions none of {fragments}"
    return msg


@pytest.fixture(scope="module")
def normal_grey(test_normal) -> np.ndarray:
    return grey(test_normal)


# ---------------------------------------------------------------- DICOM: pixel pipeline
def test_dicom_monochrome2_8bit_is_exact(normal_grey):
    out = load_image(make_dicom(normal_grey))
    assert out.source_format == "DICOM" and out.bit_depth == 8
    np.testing.assert_array_equal(out.pixels, normal_grey)


def test_dicom_monochrome1_is_inverted(normal_grey):
    out = load_image(make_dicom(255 - normal_grey, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(out.pixels, normal_grey)
    assert "MONOCHROME1 inverted" in out.notes


def test_dicom_12bit_rescale_and_window(normal_grey):
    # stored s = 16 g (12-bit); modality m = 2 s - 1024; the window maps m = -1024..7136 to 0..255,
    # so the display equals the original film only if slope, intercept and window are all used.
    g = normal_grey.astype(np.int64)
    data = make_dicom(g * 16, bits_stored=12, slope=2.0, intercept=-1024.0, window=(3056.5, 8161))
    out = load_image(data)
    assert out.bit_depth == 12 and "VOI window applied" in out.notes
    np.testing.assert_array_equal(out.pixels, normal_grey)


def test_dicom_16bit_signed_monochrome1_rescale_window(normal_grey):
    g = normal_grey.astype(np.int64)
    stored = (65535 - g * 257) - 32768  # signed 16-bit, white = air
    data = make_dicom(stored, photometric="MONOCHROME1", bits_stored=16, signed=True, slope=1.0,
                      intercept=32768.0, window=(32768.0, 65536))
    out = load_image(data)
    assert out.bit_depth == 16
    np.testing.assert_array_equal(out.pixels, normal_grey)


def test_dicom_narrow_window_follows_the_standard(normal_grey):
    """A window narrower than the data saturates outside it (PS3.3 C.11.2.1.2.1), rather than
    being stretched back to the full range."""
    g = normal_grey.astype(np.float64)
    c, w = 100.0, 81.0
    out = load_image(make_dicom(normal_grey.astype(np.int64) * 16, bits_stored=12, slope=1 / 16, intercept=0.0,
                                window=(c, w)))
    want = np.clip(np.round(((g - (c - 0.5)) / (w - 1) + 0.5) * 255), 0, 255)
    np.testing.assert_array_equal(out.pixels, want.astype(np.uint8))
    assert (out.pixels == 0).mean() > 0.05 and (out.pixels == 255).mean() > 0.05


def test_dicom_sigmoid_window(normal_grey):
    out = load_image(make_dicom(normal_grey, window=(128.0, 200.0), voi_function="SIGMOID"))
    want = 255 / (1 + np.exp(-4 * (normal_grey.astype(np.float64) - 128) / 200))
    assert np.abs(out.pixels.astype(np.float64) - want).max() <= 1.0


def test_dicom_window_hiding_everything_is_ignored(normal_grey):
    out = load_image(make_dicom(normal_grey.astype(np.int64) * 16, bits_stored=12, window=(60000.0, 10.0)))
    assert any("window ignored" in n for n in out.notes)
    assert out.pixels.min() == 0 and out.pixels.max() == 255  # min..max fallback


def test_dicom_12bit_without_window_uses_full_range(normal_grey):
    out = load_image(make_dicom(normal_grey.astype(np.int64) * 16, bits_stored=12))
    g = normal_grey.astype(np.float64)
    want = np.round((g - g.min()) / (g.max() - g.min()) * 255)
    assert np.abs(out.pixels - want).max() <= 1


def test_dicom_palette_colour(normal_grey):
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(make_dicom(normal_grey, photometric="PALETTE COLOR")))
    del ds.PlanarConfiguration
    ds.SamplesPerPixel = 1
    lut = (np.arange(256) * 257).astype("<u2").tobytes()  # a grey 16-bit palette
    for c in ("Red", "Green", "Blue"):
        setattr(ds, f"{c}PaletteColorLookupTableDescriptor", [256, 0, 16])
        ds[f"{c}PaletteColorLookupTableDescriptor"].VR = "US"
        setattr(ds, f"{c}PaletteColorLookupTableData", lut)
    buf = io.BytesIO()
    ds.save_as(buf)
    out = load_image(buf.getvalue())
    np.testing.assert_array_equal(out.rgb()[..., 0], normal_grey)


def test_dicom_multiframe_uses_first_frame(normal_grey):
    out = load_image(make_dicom(np.stack([normal_grey, 255 - normal_grey, normal_grey]), frames=3))
    np.testing.assert_array_equal(out.pixels, normal_grey)
    assert any("first frame" in n for n in out.notes)


def test_dicom_without_preamble_named_dcm(normal_grey):
    out = load_image(make_dicom(normal_grey, preamble=False), "film.dcm")
    np.testing.assert_array_equal(out.pixels, normal_grey)


def test_png_named_dcm_is_read_as_png(normal_grey):
    out = load_image(encode(normal_grey, "PNG"), "film.dcm")
    assert out.source_format == "PNG"


# ---------------------------------------------------------------- DICOM: compressed
def test_dicom_jpeg_baseline(normal_grey):
    from pydicom.uid import JPEGBaseline8Bit

    data = make_dicom(normal_grey, transfer_syntax=JPEGBaseline8Bit,
                      fragments=[encode(normal_grey, "JPEG", quality=95)])
    out = load_image(data)
    assert np.abs(out.pixels.astype(int) - normal_grey).mean() < 1.5


def test_dicom_rle_lossless(normal_grey):
    import pydicom
    from pydicom.uid import RLELossless

    ds = pydicom.dcmread(io.BytesIO(make_dicom(normal_grey)))
    ds.compress(RLELossless)  # pydicom's own encoder
    buf = io.BytesIO()
    ds.save_as(buf)
    np.testing.assert_array_equal(load_image(buf.getvalue()).pixels, normal_grey)


def test_dicom_jpeg2000_lossless(normal_grey):
    from PIL import features
    from pydicom.uid import JPEG2000Lossless

    require(features.check("jpg_2000"), "this Pillow has no OpenJPEG (JPEG 2000 decoding)")
    j2k = encode(normal_grey, "JPEG2000", irreversible=False, no_jp2=True)
    out = load_image(make_dicom(normal_grey, transfer_syntax=JPEG2000Lossless, fragments=[j2k]))
    np.testing.assert_array_equal(out.pixels, normal_grey)


def test_dicom_colour_jpeg_is_not_converted_twice():
    """pydicom >= 3 already returns YBR_FULL_422 JPEG data as RGB; converting again would
    shift every colour."""
    import skimage.data
    from pydicom.uid import JPEGBaseline8Bit

    rgb = skimage.data.astronaut()
    data = make_dicom(rgb, photometric="YBR_FULL_422", transfer_syntax=JPEGBaseline8Bit,
                      fragments=[encode(rgb, "JPEG", quality=95)])
    out = load_image(data)
    assert out.pixels.shape == rgb.shape
    assert np.abs(out.pixels.astype(int) - rgb).mean() < 4


def test_dicom_missing_codec_is_named(normal_grey):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    data = make_dicom(normal_grey, transfer_syntax=JPEGLSLossless, fragments=[b"\xff\xd8\xff\xf7" + bytes(64)])
    if get_decoder(JPEGLSLossless).is_available:
        with pytest.raises(ImageError, match="JPEG-LS"):  # installed, but these bytes are garbage
            load_image(data)
    else:
        msg = assert_refused(data, "no decoder for it is installed")
        assert "JPEG-LS" in msg and "uncompressed DICOM or as PNG" in msg and ("pylibjpeg" in msg or "gdcm" in msg)


def test_dicom_with_corrupt_compressed_pixels_says_what_to_do(normal_grey):
    """JPEG 2000 has a decoder here (Pillow), but these bytes are not a codestream."""
    from pydicom.uid import JPEG2000Lossless

    msg = assert_refused(make_dicom(normal_grey, transfer_syntax=JPEG2000Lossless,
                                    fragments=[b"\xff\x4f\xff\x51" + bytes(64)]), "corrupt or cut short")
    assert "JPEG 2000" in msg and "uncompressed DICOM or as PNG" in msg and not msg.rstrip().endswith(":")


def test_dicom_without_pixel_data():
    assert_refused(make_dicom(None, pixels=False), "no pixel data")


def test_dicom_huge_header_is_refused_before_decoding():
    data = make_dicom(np.zeros((64, 64), np.uint8), rows_cols=(20000, 20000))
    assert_refused(data, "megapixel limit")


def test_dicom_headers_are_never_echoed(normal_grey, caplog, capfd):
    """Patient identifiers stay in the file: not in notes, errors or logs, for good and bad files."""
    from pydicom.uid import JPEGLSLossless

    caplog.set_level(logging.DEBUG)
    cases = [
        make_dicom(normal_grey, window=(128.0, 256.0)),
        make_dicom(255 - normal_grey, photometric="MONOCHROME1"),
        make_dicom(None, pixels=False),
        make_dicom(normal_grey, transfer_syntax=JPEGLSLossless, fragments=[bytes(64)]),
        make_dicom(normal_grey, rows_cols=(10, 10)),
        make_dicom(normal_grey)[:2000],
    ]
    seen = []
    for data in cases:
        try:
            seen.append(" ".join(load_image(data).notes))
        except ImageError as exc:
            seen.append(str(exc))
    out, err = capfd.readouterr()
    text = " ".join(seen) + out + err + caplog.text
    for secret in ("DOE", "JANE", "SECRETNAME", PATIENT_ID, "31337", "19700101", "SECRET HOSPITAL"):
        assert secret not in text


# ---------------------------------------------------------------- rasters that must load
def test_png_16bit_maps_back_exactly(normal_grey):
    out = load_image(encode(normal_grey.astype(np.uint16) * 257, "PNG"))
    assert out.bit_depth == 16
    np.testing.assert_array_equal(out.pixels, normal_grey)


def test_png_12bit_in_16bit_container(normal_grey):
    out = load_image(encode(normal_grey.astype(np.uint16) * 16, "PNG"))
    assert np.abs(out.pixels.astype(int) - normal_grey).max() <= 1


def test_png_rgba_opaque_and_translucent(normal_grey):
    rgba = np.dstack([normal_grey] * 3 + [np.full_like(normal_grey, 255)])
    out = load_image(encode(rgba, "PNG"))
    np.testing.assert_array_equal(out.rgb()[..., 0], normal_grey)
    rgba[..., 3] = 128
    out = load_image(encode(rgba, "PNG"))
    assert "transparency flattened onto black" in out.notes
    assert np.abs(out.rgb()[..., 0].astype(int) - normal_grey // 2).max() <= 1


def test_palette_png_stays_greyscale(normal_grey):
    out = load_image(encode(Image.fromarray(normal_grey).convert("P"), "PNG"))
    assert out.pixels.ndim == 2
    np.testing.assert_array_equal(out.pixels, normal_grey)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_applied(normal_grey, orientation):
    out = load_image(exif_rotated_jpeg(normal_grey, orientation))
    assert "EXIF orientation applied" in out.notes
    assert out.pixels.shape[:2] == normal_grey.shape
    assert np.abs(out.rgb()[..., 0].astype(int) - normal_grey).mean() < 2.0


@pytest.mark.parametrize("quality", [10, 25, 50, 75, 95])
def test_jpeg_quality_estimate(normal_grey, quality):
    est = images.jpeg_quality(Image.open(io.BytesIO(encode(normal_grey, "JPEG", quality=quality))))
    assert abs(est - quality) <= (6 if quality <= 10 else 1)


def test_heavy_jpeg_compression_is_deblocked_and_training_quality_is_not(test_normal, normal_grey):
    from pydicom.uid import JPEGBaseline8Bit

    assert load_path(test_normal).notes == []  # the dataset's own quality-75 films: untouched
    assert load_image(encode(normal_grey, "JPEG", quality=75)).notes == []
    heavy = load_image(encode(normal_grey, "JPEG", quality=25))
    assert any("block edges smoothed" in n for n in heavy.notes)
    dicom = load_image(make_dicom(normal_grey, transfer_syntax=JPEGBaseline8Bit,
                                  fragments=[encode(normal_grey, "JPEG", quality=25)]))
    assert any("block edges smoothed" in n for n in dicom.notes)


def test_large_image_loads(normal_grey):
    big = np.asarray(Image.fromarray(normal_grey).resize((3000, 3000), Image.BICUBIC))
    payload = encode(big, "JPEG", quality=90)  # built before the clock starts: only loading is timed
    t0 = time.perf_counter()
    out = load_image(payload)
    assert out.pixels.shape == (3000, 3000) and time.perf_counter() - t0 < 5


# ---------------------------------------------------------------- files that must be refused
def test_empty_file():
    assert_refused(b"", "empty")


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.95, -2])
def test_truncated_jpeg(test_normal, fraction):
    raw = test_normal.read_bytes()
    cut = len(raw) + fraction if fraction < 0 else int(len(raw) * fraction)
    assert_refused(raw[: int(cut)], "truncated", "corrupt", "cannot read image header", "not a recognised")


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9])
def test_truncated_png(normal_grey, fraction):
    raw = encode(normal_grey, "PNG")
    assert_refused(raw[: int(len(raw) * fraction)], "truncated", "corrupt", "cannot read image header")


def test_corrupt_jpeg_body(test_normal):
    raw = bytearray(test_normal.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 400] = np.random.default_rng(0).bytes(400)
    assert_refused(bytes(raw), "truncated or corrupt")


def test_random_bytes():
    for seed in range(5):
        assert_refused(np.random.default_rng(seed).bytes(10_000), "not a recognised image format")


@pytest.mark.parametrize("name, data, reason", [
    ("xray.jpeg", b"<!DOCTYPE html>\n<html><head><title>Login</title></head><body>x</body></html>", "HTML"),
    ("xray.png", b"  <html><body><img src='a.png'></body></html>", "HTML"),
    ("xray.png", b"patient,label\n1,PNEUMONIA\n" * 20, "plain text"),
    ("xray.dcm", b"this is not a dicom file\n" * 20, "plain text"),
    ("xray.jpeg", "Röntgenbild des Thorax, Befund unauffällig\n".encode() * 5, "plain text"),
    ("xray.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF"),
    ("xray.jpeg", b"PK\x03\x04" + bytes(100), "ZIP"),
    ("xray.png", b"\x1f\x8b\x08\x00" + bytes(100), "gzip"),
    ("xray.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "HTML/XML"),
])
def test_text_and_documents_with_image_names(name, data, reason):
    assert_refused(data, reason, name=name)


def test_unsupported_formats(normal_grey):
    assert_refused(encode(normal_grey, "GIF"), "not supported")
    assert_refused(encode(Image.fromarray(normal_grey).resize((128, 128)), "ICO"), "not supported")


@pytest.mark.parametrize("size", [(32, 32), (40, 500), (500, 63)])
def test_tiny_images(size):
    assert_refused(encode(np.full(size[::-1], 100, np.uint8), "PNG"), f"at least {images.MIN_SIDE} px")


def _no_decoding(monkeypatch):
    from PIL import ImageFile

    def boom(self, *a, **k):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)


def test_png_decompression_bomb_refused_before_decoding(monkeypatch):
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 100_000
    _no_decoding(monkeypatch)
    t0 = time.perf_counter()
    msg = assert_refused(bomb, "decompression bomb")
    assert "20000x20000" in msg and time.perf_counter() - t0 < 0.5


def test_bomb_refused_even_without_pillows_own_limit(monkeypatch):
    """Our header check does not rely on Pillow's MAX_IMAGE_PIXELS (an app may switch it off)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    bombs = [png_bomb(20000, 20000), png_bomb(12000, 12000), png_bomb(8000, 8000)]  # 12000: Pillow's warning-only zone
    _no_decoding(monkeypatch)
    t0 = time.perf_counter()  # building the bombs is not timed: only refusing them
    for bomb in bombs:
        assert_refused(bomb, "megapixel limit")
    assert time.perf_counter() - t0 < 0.5


def test_jpeg_bomb_headers(monkeypatch, normal_grey):
    small = encode(normal_grey, "JPEG", quality=80)
    _no_decoding(monkeypatch)
    assert_refused(jpeg_with_declared_size(small, 60000, 60000), "megapixel limit")  # Pillow's guard fires
    assert_refused(jpeg_with_declared_size(small, 8000, 7000), "megapixel limit")  # ours does


def test_oversized_file(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    assert_refused(bytes(2000), "MB limit")
    p = tmp_path / "big.png"
    p.write_bytes(bytes(2000))
    with pytest.raises(ImageError, match="MB limit"):
        load_path(p)


def test_missing_path_folder_and_special_files(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_path(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_path(tmp_path)
    # A FIFO would block a plain read forever and /dev/zero would stream until memory runs out.
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for special in (fifo, Path("/dev/zero")):
        with pytest.raises(ImageError, match="not a regular file"):
            load_path(special)


# ---------------------------------------------------------------- same label as the clean film
def _resized(g, w, h):
    return np.asarray(Image.fromarray(g).resize((w, h), Image.BICUBIC))


def _dicom_12bit(g):
    return make_dicom(g.astype(np.int64) * 16, bits_stored=12, slope=2.0, intercept=-1024.0, window=(3056.5, 8161))


def _dicom_16bit_mono1(g):
    stored = (65535 - g.astype(np.int64) * 257) - 32768
    return make_dicom(stored, photometric="MONOCHROME1", bits_stored=16, signed=True, slope=1.0,
                      intercept=32768.0, window=(32768.0, 65536))


def _dicom_jpeg(g):
    from pydicom.uid import JPEGBaseline8Bit

    return make_dicom(g, transfer_syntax=JPEGBaseline8Bit, fragments=[encode(g, "JPEG", quality=90)])


# name -> (builder from the clean greyscale film, tolerance on p_pneumonia). Lossless re-encodings
# must give the clean film's p; lossy ones its label, with p free to move further for a film whose
# p is mid-range (the PNEUMONIA fixture's is ~0.74; JPEG re-compression at 224 px moves it most,
# see docs/robustness.md).
REENCODINGS = {
    "dicom_mono2_8bit": (lambda g: make_dicom(g), 0.01),
    "dicom_mono1_8bit": (lambda g: make_dicom(255 - g, photometric="MONOCHROME1"), 0.01),
    "dicom_12bit_slope_window": (_dicom_12bit, 0.01),
    "dicom_16bit_mono1_slope_window": (_dicom_16bit_mono1, 0.01),
    "dicom_12bit_no_window": (lambda g: make_dicom(g.astype(np.int64) * 16, bits_stored=12), 0.10),
    "dicom_jpeg_baseline": (_dicom_jpeg, 0.05),
    "png_8bit": (lambda g: encode(g, "PNG"), 0.01),
    "png_16bit": (lambda g: encode(g.astype(np.uint16) * 257, "PNG"), 0.01),
    "png_rgb": (lambda g: encode(np.dstack([g] * 3), "PNG"), 0.01),
    "png_rgba": (lambda g: encode(np.dstack([g] * 3 + [np.full_like(g, 255)]), "PNG"), 0.01),
    "png_palette": (lambda g: encode(Image.fromarray(g).convert("P"), "PNG"), 0.01),
    "tiff_16bit": (lambda g: encode(g.astype(np.uint16) * 257, "TIFF"), 0.01),
    "webp_lossless": (lambda g: encode(np.dstack([g] * 3), "WEBP", lossless=True), 0.01),
    "bmp": (lambda g: encode(g, "BMP"), 0.01),
    "jpeg_q95": (lambda g: encode(g, "JPEG", quality=95), 0.05),
    "jpeg_q50": (lambda g: encode(g, "JPEG", quality=50), 0.25),
    "jpeg_q25": (lambda g: encode(g, "JPEG", quality=25), 0.25),
    "jpeg_exif_orientation_6": (lambda g: exif_rotated_jpeg(g, 6), 0.05),
    "jpeg_exif_orientation_8": (lambda g: exif_rotated_jpeg(g, 8), 0.05),
    "png_16bit_3000px": (lambda g: encode(_resized(g, 3000, 3000).astype(np.uint16) * 257, "PNG",
                                          compress_level=1), 0.05),
    "jpeg_3000px": (lambda g: encode(_resized(g, 3000, 3000), "JPEG", quality=90), 0.05),
    "portrait_600x900": (lambda g: encode(_resized(g, 600, 900), "PNG"), 0.10),
    "landscape_900x600": (lambda g: encode(_resized(g, 900, 600), "PNG"), 0.10),
}


@pytest.fixture(scope="module")
def predictor(request):
    from pneumo_core.config import MODELS_DIR

    require((MODELS_DIR / "finetuned.keras").is_file(), "shipped model models/finetuned.keras not found")
    return request.getfixturevalue("shipped_predictor")


@pytest.fixture(scope="module")
def clean_films(predictor, test_normal, test_pneumonia):
    out = {}
    for path in (test_normal, test_pneumonia):
        ref = predictor.predict(path)
        assert ref.error is None, ref.error
        out[path.parent.name] = (grey(path), ref)
    return out


@pytest.mark.parametrize("cls", ["NORMAL", "PNEUMONIA"])
@pytest.mark.parametrize("name", list(REENCODINGS))
def test_reencoded_film_keeps_its_label(predictor, clean_films, cls, name):
    build, tol = REENCODINGS[name]
    g, ref = clean_films[cls]
    pred = predictor.predict(build(g), name=f"{name}.file")
    assert pred.error is None, f"{name}: {pred.error}"
    assert pred.is_chest_xray
    assert pred.label == ref.label, f"{name}: {pred.label} p={pred.p_pneumonia:.3f} vs clean {ref.p_pneumonia:.3f}"
    assert abs(pred.p_pneumonia - ref.p_pneumonia) <= tol, (name, pred.p_pneumonia, ref.p_pneumonia)


@pytest.mark.parametrize("quality", [1, 5, 10])
def test_jpeg_of_any_quality_is_handled(predictor, clean_films, quality):
    """A 224-px film crushed to 8x8 blocks is either scored or refused by the chest-X-ray check
    with its reason; never an exception, never a silent wrong format."""
    g, ref = clean_films["PNEUMONIA"]
    pred = predictor.predict(encode(g, "JPEG", quality=quality), name="crushed.jpeg")
    assert (pred.error is None and pred.p_pneumonia is not None) or "chest X-ray" in pred.error, pred.error


@pytest.mark.parametrize("quality", [10, 25])
@pytest.mark.parametrize("cls", ["NORMAL", "PNEUMONIA"])
def test_low_quality_jpeg_of_a_full_size_film(predictor, clean_films, cls, quality):
    """Phones and PACS exports send full-size films; at 1500 px even quality 10 keeps the label,
    because the 8x8 blocks shrink to under 2 px at the model's 224 px."""
    g, ref = clean_films[cls]
    pred = predictor.predict(encode(_resized(g, 1500, 1500), "JPEG", quality=quality), name="phone.jpeg")
    assert pred.error is None, pred.error
    assert pred.label == ref.label and abs(pred.p_pneumonia - ref.p_pneumonia) <= 0.25


def test_prediction_of_a_dicom_leaks_no_identifiers(predictor, normal_grey, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    good = predictor.predict(make_dicom(normal_grey), name="upload.dcm")
    bad = predictor.predict(make_dicom(None, pixels=False), name="upload.dcm")
    assert good.error is None and bad.error
    out, err = capfd.readouterr()
    text = json.dumps([good.to_json(), bad.to_json(), good.notes]) + out + err + caplog.text
    for secret in ("DOE", "JANE", PATIENT_ID, "19700101", "SECRET HOSPITAL"):
        assert secret not in text


@pytest.mark.parametrize("make", [lambda: b"", lambda: b"<html></html>", lambda: png_bomb(20000, 20000)],
                         ids=["empty", "html", "bomb"])
def test_predictor_reports_refusals_without_raising(predictor, make):
    pred = predictor.predict(make(), name="upload.png")
    assert pred.error and pred.label is None and pred.p_pneumonia is None


# ---------------------------------------------------------------- OpenCV left the runtime: the same pixels in numpy

def _opencv():
    require(importlib.util.find_spec("cv2") is not None,
            "OpenCV (the reference) is not installed: pip install -r requirements-dev.txt")
    import cv2

    return cv2


def _films(data_root, step: int = 60) -> list[Path]:
    return sorted((data_root / "test").glob("*/*.jpeg"))[::step]  # both classes, many sizes


def test_the_deblocking_kernel_is_opencvs():
    """OpenCV's 8-bit kernels for the two DEBLOCK sigmas (its bit-exact path), recorded from OpenCV 5."""
    from pneumo_core.imaging.resample import _gaussian_taps, gaussian_blur

    assert _gaussian_taps(1.0) == (1, 14, 62, 102, 62, 14, 1)
    assert _gaussian_taps(0.8) == (0, 6, 58, 128, 58, 6, 0)
    flat = np.full((70, 90), 137, np.uint8)
    assert (gaussian_blur(flat, 1.0) == 137).all()
    with pytest.raises(ValueError, match="8-bit"):
        gaussian_blur(flat.astype(np.float32), 1.0)


def test_deblocking_equals_opencvs_gaussian_blur(data_root):
    cv2 = _opencv()
    from pneumo_core.imaging.core import DEBLOCK
    from pneumo_core.imaging.resample import gaussian_blur

    rng = np.random.default_rng(4)
    cases = [grey(p) for p in _films(data_root)] + [rng.integers(0, 256, s, dtype=np.uint8)
                                                   for s in ((64, 65), (97, 64, 3), (200, 131, 3))]
    for px in cases:
        for _, sigma in DEBLOCK:
            np.testing.assert_array_equal(gaussian_blur(px, sigma), cv2.GaussianBlur(px, (0, 0), sigma))
    film = grey(_films(data_root)[0])
    heavy = encode(film, "JPEG", quality=25)
    undeblocked = np.asarray(Image.open(io.BytesIO(heavy)).convert("L"))
    np.testing.assert_array_equal(load_image(heavy).pixels, cv2.GaussianBlur(undeblocked, (0, 0), 0.8))  # q 21-60


def test_shrinking_equals_opencvs_area_resize(data_root):
    cv2 = _opencv()
    from pneumo_core.imaging.resample import shrink

    for path in _films(data_root, 120):
        film = grey(path)
        for side in (1024, 700, 333, film.shape[0] // 2):
            if side >= max(film.shape):
                continue
            scale = side / max(film.shape)
            shape = (max(1, round(film.shape[0] * scale)), max(1, round(film.shape[1] * scale)))
            for values in (film, np.dstack([film, film // 2, 255 - film]), film.astype(np.uint16) * 257):
                ours = shrink(values, shape).astype(int)
                ref = cv2.resize(values, shape[::-1], interpolation=cv2.INTER_AREA).astype(int)
                assert ours.shape == ref.shape and np.abs(ours - ref).max() <= 1, (path.name, shape)
                assert (ours != ref).mean() < 1e-3, (path.name, shape)  # float32 sums rounding the other way
            raw = film.astype(np.float32) * 16.5 - 40
            ref = cv2.resize(raw, shape[::-1], interpolation=cv2.INTER_AREA)
            np.testing.assert_allclose(shrink(raw, shape), ref, rtol=0, atol=2e-3)
    with pytest.raises(ValueError, match="cannot shrink"):
        shrink(np.zeros((10, 10)), (20, 5))


def test_overlays_are_opencvs_pixels(data_root):
    """The colour map, the blend and a whole overlay against OpenCV's applyColorMap and addWeighted."""
    cv2 = _opencv()
    from pneumo_core.inference.gradcam import VIRIDIS, blend, colour_scale, normalise_heatmap, overlay

    ramp = np.arange(256, dtype=np.uint8)[None]
    np.testing.assert_array_equal(VIRIDIS[None], cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_VIRIDIS),
                                                               cv2.COLOR_BGR2RGB))
    assert colour_scale(256, thickness=2)[0].tolist() == VIRIDIS.tolist()
    a = np.repeat(np.arange(256, dtype=np.uint8), 256).reshape(256, 256)
    for alpha in (0.05, 0.1, 0.3, 0.35, 0.4, 0.45, 0.5, 0.65, 0.9, 0.37):
        np.testing.assert_array_equal(blend(a, a.T, alpha), cv2.addWeighted(a, 1.0 - alpha, a.T, alpha, 0.0))

    def opencv_overlay(img, heat, alpha):
        if heat.shape != img.shape[:2]:
            heat = cv2.resize(heat, img.shape[1::-1], interpolation=cv2.INTER_CUBIC)
        colour = cv2.cvtColor(cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_VIRIDIS),
                              cv2.COLOR_BGR2RGB)
        return cv2.addWeighted(img, 1.0 - alpha, colour, alpha, 0.0)

    rng = np.random.default_rng(5)
    for path in _films(data_root, 150):
        img = np.dstack([grey(path)] * 3)
        cam = rng.random((7, 7)).astype(np.float32)
        heat = normalise_heatmap(cam, img.shape[:2])
        np.testing.assert_array_equal(overlay(img, heat, 0.4), opencv_overlay(img, heat, 0.4))
        small = normalise_heatmap(cam, (img.shape[0] // 3, img.shape[1] // 3))  # resized to the film here
        ours, ref = overlay(img, small, 0.5).astype(int), opencv_overlay(img, small, 0.5).astype(int)
        assert np.abs(ours - ref).max() <= 2 and np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.9999


def test_grey_copies_and_the_blank_check_are_exact(data_root):
    from pneumo_core.imaging.core import grey_to_rgb
    from pneumo_core.inference.preprocess import pixel_std

    for path in _films(data_root, 150):
        film = grey(path)
        np.testing.assert_array_equal(grey_to_rgb(film), np.repeat(film[..., None], 3, axis=2))
        f32 = film.astype(np.float32) / 127.5 - 1
        np.testing.assert_array_equal(grey_to_rgb(f32[..., None]), np.repeat(f32[..., None], 3, axis=2))
        assert pixel_std(film) == pytest.approx(float(film.std()), rel=1e-12)
        rgb = np.dstack([film, film[::-1], 255 - film])
        assert pixel_std(rgb) == pytest.approx(float(rgb.std()), rel=1e-12)
    assert pixel_std(np.full((80, 80), 9, np.uint8)) == 0.0


def test_the_runtime_path_needs_neither_opencv_nor_scikit_learn(tmp_path):
    """With cv2, sklearn and scipy unimportable, a bundled film is read, scored with its heatmap (a large copy
    too, so the display copy is shrunk), overlaid, put in a report PNG and a Secondary Capture picture, and the
    metrics and reader statistics computed."""
    import subprocess
    import sys

    script = '''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cv2", "sklearn", "scipy"):
            raise ImportError(f"{name} is not in the runtime")
sys.meta_path.insert(0, Block())
import io, numpy as np
from PIL import Image
from pneumo_core import Predictor
from pneumo_core.evaluation.metrics import full_report, roc_points
from pneumo_core.imaging.decode import load_image
from pneumo_core.inference.gradcam import overlay
from pneumo_core.quiz.reader_study import reader_stats
from pneumo_core.review.report_image import study_report_png
film = open("assets/examples/ex01.jpeg", "rb").read()
big = Image.open(io.BytesIO(film)).resize((1500, 1300))
buf = io.BytesIO(); big.save(buf, "JPEG", quality=20)
predictor = Predictor("finetuned", kind="litert")
for data in (film, buf.getvalue()):
    pred = predictor.predict(data, explain=True)
    assert pred.error is None and pred.heatmap is not None, pred.error
    assert overlay(pred.image, pred.heatmap).shape[:2] == pred.image.shape[:2]
assert any("block edges smoothed" in n for n in pred.notes), pred.notes
png = study_report_png(pred.image, pred.heatmap, file_name="x", p_pneumonia=pred.p_pneumonia, label=pred.label,
                       threshold=pred.threshold, model_name=pred.model)
assert png[:4] == b"\\x89PNG"
y = np.r_[np.zeros(20, int), np.ones(20, int)]
p = np.r_[np.linspace(0, 0.6, 20), np.linspace(0.4, 1, 20)]
assert full_report(y, p, 0.5, n_boot=20)["at_threshold"]["auc"] > 0.9 and len(roc_points(y, p)) > 2
stats = reader_stats(["NORMAL", "PNEUMONIA"] * 3, ["NORMAL", "PNEUMONIA"] * 2 + ["PNEUMONIA"] * 2, [3] * 6,
                     ["NORMAL", "PNEUMONIA"] * 3)
assert 0 < stats["kappa"] < 1 and stats["auc"] > 0.5
assert not [m for m in sys.modules if m.split(".")[0] in ("cv2", "sklearn", "scipy")]
print("ok")
'''
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "PNEUMO_BACKEND"}
    out = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
