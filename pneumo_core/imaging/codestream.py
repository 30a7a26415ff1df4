"""What a DICOM file's pixel data will cost to decode, read before any decoder runs.

A decoder allocates what the *compressed frame* says, not what the DICOM header says: 50-130 KB files
whose header said 256 x 256 but whose frame said 60000 x 60000 took ``predict`` to 21-22 GB before
the decoder gave up. So :func:`check_pixel_data` reads the first frame's own header, without
decoding, and refuses a frame whose size or component count differs from the header's Columns,
Rows and Samples per Pixel, or that is over the pixel limit:

* JPEG (baseline, extended, lossless) and JPEG-LS: every marker up to EOI is walked (entropy-coded
  data skipped as a decoder finds its markers) to the one frame header, SOF0-SOF15 or JPEG-LS SOF55:
  precision, height, width, components. A second frame header, a hierarchical DHP, a DNL, a height
  or width of 0 (left to a DNL or LSE marker), a JPEG-LS oversize-dimension LSE and more than
  ``MAX_JPEG_SCANS`` scans are refused.
* JPEG 2000 and HTJ2K, a bare codestream or a JP2 file: the SIZ marker (Xsiz - XOsiz, Ysiz - YOsiz,
  Csiz, precisions) and the tile count (openjpeg spends about 10 KB a tile before decoding); in a JP2
  file the ``ihdr`` box must agree with it.
* RLE: the 64-byte RLE header: one segment per sample byte, offsets inside the frame, and each
  segment long enough to fill Columns x Rows (PackBits gives at most 64 bytes a byte).
* Uncompressed: the Pixel Data length must be what the header declares; past it only zero bytes
  (padding, noted), never more image data.

Number of Frames is capped (``MAX_FRAMES``) and may not exceed the fragments present; fragments are
capped (``MAX_FRAGMENTS``); what will be decoded (the first frame only: Rows x Columns x Samples x
bytes a sample) is capped at ``MAX_DECODED_BYTES``. pylibjpeg-libjpeg's ``get_parameters`` is not
used: it allocates the image (it reached the 4 GB address-space cap on a 60000 x 60000 SOF).
Every refusal is an :class:`ImageError` of one line with sizes only, never another header value.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from pneumo_core.errors import ImageError
from pneumo_core.imaging.core import MAX_DECODED_BYTES, MAX_FRAMES, MAX_PIXELS

#: More scans in one JPEG frame is refused: each scan is a pass over the whole image (a "scan bomb");
#: DICOM's sequential and lossless frames have one a component at most, progressive JPEGs about 10.
MAX_JPEG_SCANS = 100
#: More markers in one JPEG frame is refused, so that reading them stays cheap (64 MB of empty COM
#: segments would be 16 million). A JPEG-LS film restarting every line has one a line and scan.
MAX_JPEG_MARKERS = 2**18
#: More JPEG 2000 tiles is refused: openjpeg allocates about 10 KB a tile before decoding (50 176
#: tiles of a 224 px film: 530 MB). A 40-megapixel film in 128 px tiles has 2442.
MAX_J2K_TILES = 4096
#: More fragments in the encapsulated pixel data is refused (pydicom lists every fragment's offset;
#: encoders write one a frame, or split a frame into pieces of some KB).
MAX_FRAGMENTS = 65536
_MAX_JP2_BOXES = 64  # boxes read in a JP2 file before its codestream box
EXPORT_ADVICE = "Export it from the viewer or PACS as uncompressed DICOM or as PNG"

JPEG_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                           "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
J2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                          "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"})
RLE_SYNTAX = "1.2.840.10008.1.2.5"

# JPEG markers (ITU T.81 B.1.1.3; T.87 for JPEG-LS)
_SOF = frozenset(set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}) | {0xF7}  # not DHT, JPG, DAC; F7 = SOF55
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7
_SOI, _EOI, _SOS, _DNL, _DHP, _LSE = 0xD8, 0xD9, 0xDA, 0xDC, 0xDE, 0xF8
# The next marker (past garbage and 0xFF fill bytes); the marker after a scan's entropy-coded data:
# JPEG stuffs 0x00 after a data 0xFF (RSTn belong to the scan), JPEG-LS a 0 bit (a byte under 0x80).
_MARKER = re.compile(rb"\xff([^\xff])")  # the last 0xFF of a run: linear, no backtracking
_NEXT_MARKER = {"JPEG": re.compile(rb"\xff[^\x00\xd0-\xd7\xff]"), "JPEG-LS": re.compile(rb"\xff[\x80-\xfe]")}


@dataclass(frozen=True)
class FrameHeader:
    """What a compressed frame's own header says the decoder will produce."""

    codec: str  # "JPEG", "JPEG-LS", "JPEG 2000"
    width: int
    height: int
    components: int
    precision: int  # bits a sample (the largest component's)
    tiles: int = 1  # JPEG 2000 tiles


def _refuse(what: str) -> ImageError:
    """A refusal by rule: a limit, or a frame that disagrees with the header."""
    return ImageError(f"{what}; refused before decoding")


def _corrupt(syntax: str, what: str) -> ImageError:
    """A frame whose header cannot be read, in :func:`dicom.decode_error_message`'s words."""
    return ImageError(f"cannot decode this DICOM's {syntax} pixel data: {what} (refused before decoding); the file "
                      f"may be corrupt or cut short, or not follow the standard. {EXPORT_ADVICE}."[:400])


# ---------------------------------------------------------------- JPEG and JPEG-LS
def _jpeg_sof(segment: bytes, marker: int, syntax: str) -> FrameHeader:
    codec = "JPEG-LS" if marker == 0xF7 else "JPEG"
    if len(segment) < 6 or len(segment) < 6 + 3 * segment[5]:
        raise _corrupt(syntax, f"its {codec} frame header (SOF) is cut short")
    precision, height, width, components = struct.unpack_from(">BHHB", segment)
    if height == 0 or width == 0:  # a height left to a DNL marker (width: a JPEG-LS LSE); no DICOM encoder does it
        raise _refuse(f"DICOM {codec} frame leaves its {'height' if height == 0 else 'width'} to a later marker "
                      "(DNL or LSE), so what the decoder would allocate cannot be checked")
    if not 1 <= precision <= 16 or components == 0:
        raise _corrupt(syntax, f"its {codec} frame header is invalid ({precision}-bit samples, "
                               f"{components} components)")
    return FrameHeader(codec, width, height, components, precision)


def jpeg_frame_header(frame: bytes, syntax: str = "JPEG") -> FrameHeader:
    """The one frame header of a JPEG or JPEG-LS codestream. Every marker up to EOI is read, so a
    second SOF, a DNL or a DHP further on cannot slip past; garbage between marker segments is
    skipped to the next 0xFF as libjpeg-turbo does."""
    if frame[:2] != b"\xff\xd8":
        raise _corrupt(syntax, "its frame does not start with a JPEG SOI marker")
    header, scans, pos, end = None, 0, 2, len(frame)
    for _ in range(MAX_JPEG_MARKERS):
        found = _MARKER.search(frame, pos)  # garbage and fill bytes skipped
        if found is None:
            break
        marker, pos = found[1][0], found.end()
        if marker == _EOI:
            break
        if marker == _SOI:
            raise _corrupt(syntax, "its frame holds a second SOI marker (a second image)")
        if marker in _STANDALONE or marker == 0:
            if scans:  # JPEG-LS finds its RSTn in the scan: the entropy-coded data goes on
                found = _NEXT_MARKER[header.codec].search(frame, pos)
                pos = found.start() if found else end
            continue
        if pos + 2 > end:
            break
        length = struct.unpack_from(">H", frame, pos)[0]
        if length < 2 or pos + length > end:
            raise _corrupt(syntax, f"a JPEG marker segment runs past the frame's end (byte {pos})")
        segment, pos = frame[pos + 2:pos + length], pos + length
        if marker in _SOF:
            if header is not None:
                raise _refuse("DICOM JPEG frame holds more than one frame header (SOF)")
            header = _jpeg_sof(segment, marker, syntax)
        elif marker == _DHP:
            raise _refuse("DICOM JPEG frame is hierarchical (DHP marker), which DICOM's JPEG syntaxes do not use")
        elif marker == _DNL:
            raise _refuse("DICOM JPEG frame sets its height after a scan (DNL marker), which is not read here")
        elif marker == _LSE and segment[:1] == b"\x04":
            raise _refuse("DICOM JPEG-LS frame sets an oversize image dimension (LSE marker), which is not read here")
        elif marker == _SOS:
            if header is None:
                raise _corrupt(syntax, "its frame has a scan before its frame header (SOF)")
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _refuse(f"DICOM JPEG frame has over {MAX_JPEG_SCANS} scans")
            found = _NEXT_MARKER[header.codec].search(frame, pos)
            pos = found.start() if found else end
    else:
        raise _refuse(f"DICOM JPEG frame has over {MAX_JPEG_MARKERS} markers")
    if header is None:
        raise _corrupt(syntax, "its frame has no JPEG frame header (SOF marker)")
    if not scans:
        raise _corrupt(syntax, "its frame ends before its first scan (SOS marker)")
    return header


# ---------------------------------------------------------------- JPEG 2000
def _j2k_siz(codestream: bytes, syntax: str) -> FrameHeader:
    """The SIZ marker segment, which must follow SOC (ISO 15444-1 A.5.1)."""
    if codestream[:4] != b"\xff\x4f\xff\x51":
        raise _corrupt(syntax, "its frame does not start with the JPEG 2000 SOC and SIZ markers")
    if len(codestream) < 42:
        raise _corrupt(syntax, "its JPEG 2000 image header (SIZ) is cut short")
    lsiz, _, xsiz, ysiz, xo, yo, xt, yt, xto, yto, csiz = struct.unpack_from(">HHIIIIIIIIH", codestream, 4)
    if csiz == 0 or lsiz != 38 + 3 * csiz or len(codestream) < 42 + 3 * csiz:
        raise _corrupt(syntax, "its JPEG 2000 image header (SIZ) is cut short or invalid")
    if xsiz <= xo or ysiz <= yo or xt == 0 or yt == 0 or xto > xo or yto > yo or xto + xt <= xo or yto + yt <= yo:
        raise _corrupt(syntax, "its JPEG 2000 image header (SIZ) is invalid (an empty image or tile grid)")
    precision = 0
    for i in range(csiz):
        ssiz, xr, yr = codestream[42 + 3 * i:45 + 3 * i]
        if xr == 0 or yr == 0 or (ssiz & 0x7F) + 1 > 38:
            raise _corrupt(syntax, "its JPEG 2000 image header (SIZ) is invalid (a component's sampling or precision)")
        precision = max(precision, (ssiz & 0x7F) + 1)
    tiles = math.ceil((xsiz - xto) / xt) * math.ceil((ysiz - yto) / yt)
    return FrameHeader("JPEG 2000", xsiz - xo, ysiz - yo, csiz, precision, tiles)


def _jp2_boxes(data: bytes, syntax: str):
    """(type, content) of each box of a JP2 file (ISO 15444-1 I.4), at most ``_MAX_JP2_BOXES``."""
    pos = 0
    for _ in range(_MAX_JP2_BOXES):
        if pos + 8 > len(data):
            return
        length, kind = struct.unpack_from(">I4s", data, pos)
        start = pos + 8
        if length == 1 and pos + 16 <= len(data):
            length, start = struct.unpack_from(">Q", data, pos + 8)[0], pos + 16
        elif length == 0:  # the last box runs to the end
            length = len(data) - pos
        if length < start - pos or pos + length > len(data):
            raise _corrupt(syntax, "a box of its JP2 file runs past the frame's end")
        yield kind, data[start:pos + length]
        pos += length
    raise _corrupt(syntax, f"its JP2 file has over {_MAX_JP2_BOXES} boxes before its codestream")


def j2k_frame_header(frame: bytes, syntax: str = "JPEG 2000") -> FrameHeader:
    """The SIZ of a JPEG 2000 codestream, bare or in a JP2 file (one codestream box; its ``ihdr``
    box, wherever it is, must agree)."""
    if frame[:8] != b"\x00\x00\x00\x0cjP  ":
        return _j2k_siz(frame, syntax)
    boxes = list(_jp2_boxes(frame, syntax))
    codestreams = [content for kind, content in boxes if kind == b"jp2c"]
    ihdrs = [c for kind, content in boxes if kind == b"jp2h" for k, c in _jp2_boxes(content, syntax) if k == b"ihdr"]
    if len(codestreams) != 1 or len(ihdrs) > 1:
        raise _corrupt(syntax, f"its JP2 file has {len(codestreams)} codestream boxes and {len(ihdrs)} image header "
                               "boxes (one each expected)")
    header = _j2k_siz(codestreams[0], syntax)
    if ihdrs:  # Pillow sizes its image from this box, openjpeg from the codestream: both must agree
        if len(ihdrs[0]) < 10:
            raise _corrupt(syntax, "its JP2 image header box (ihdr) is cut short")
        height, width, components = struct.unpack_from(">IIH", ihdrs[0])
        if (width, height, components) != (header.width, header.height, header.components):
            raise _refuse(f"DICOM JPEG 2000 file's image header box says {width} x {height} pixels of {components} "
                          f"components, its codestream {header.width} x {header.height} of {header.components}")
    return header


# ---------------------------------------------------------------- RLE
def check_rle_frame(frame: bytes, rows: int, cols: int, samples: int, bits_allocated: int,
                    syntax: str = "RLE Lossless") -> None:
    """The RLE header (PS3.5 G.4): one segment per sample byte, each inside the frame and long
    enough to fill Columns x Rows (a 2-byte PackBits run gives at most 128 bytes)."""
    if len(frame) < 64:
        raise _corrupt(syntax, "its frame is shorter than the 64-byte RLE header")
    count, *offsets = struct.unpack_from("<16I", frame)
    expected = samples * math.ceil(bits_allocated / 8)
    if count != expected:
        raise _refuse(f"DICOM RLE frame has {count} segments where its header (Samples per Pixel, Bits Allocated) "
                      f"declares {expected}")
    bounds = [*offsets[:count], len(frame)]
    if bounds[0] != 64 or any(b <= a for a, b in zip(bounds, bounds[1:])):
        raise _corrupt(syntax, "the RLE header's segment offsets are out of order or past the frame's end")
    shortest = min(b - a for a, b in zip(bounds, bounds[1:]))
    if shortest * 64 < rows * cols:
        raise _refuse(f"DICOM RLE frame has a {shortest}-byte segment, too short to fill the {cols} x {rows} pixels "
                      "its header declares (Columns x Rows): a corrupt file or a false header")


# ---------------------------------------------------------------- the whole pixel data
def _count_fragments(data: bytes, syntax: str) -> int:
    """Fragments after the Basic Offset Table item (PS3.5 A.4), read item by item, at most
    ``MAX_FRAGMENTS``."""
    pos, items = 0, 0
    while pos + 8 <= len(data):
        group, element, length = struct.unpack_from("<HHI", data, pos)
        if (group, element) == (0xFFFE, 0xE0DD):  # sequence delimiter
            break
        if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            raise _corrupt(syntax, f"its encapsulated pixel data has no fragment item at byte {pos}")
        pos, items = pos + 8 + length, items + 1
        if items > MAX_FRAGMENTS + 1:
            raise _refuse(f"DICOM compressed pixel data has over {MAX_FRAGMENTS} fragments")
    return max(items - 1, 0)


def _first_frame(ds, n_frames: int, syntax: str) -> bytes:
    """The first frame's encapsulated bytes, found as pydicom's decoder finds them (no decoding)."""
    from pydicom.encaps import get_frame

    data = ds.PixelData
    fragments = _count_fragments(data, syntax)
    if n_frames > fragments:  # every frame is one fragment or more
        raise _refuse(f"DICOM header declares {n_frames} frames but the pixel data holds only {fragments} "
                      f"fragment{'s' if fragments != 1 else ''}")
    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        return get_frame(data, 0, number_of_frames=n_frames, extended_offsets=offsets)
    except Exception as exc:
        raise _corrupt(syntax, f"its first frame cannot be found ({type(exc).__name__})") from None


def _check_native(ds, keyword: str, rows: int, cols: int, samples: int, bits: int, n_frames: int) -> list:
    """Uncompressed pixel data must hold what the header declares (pydicom's rule, YBR_FULL_422
    included); past it only zero bytes (padding: a note), never more image data."""
    declared = rows * cols * samples * n_frames
    declared = (declared + 7) // 8 if bits == 1 else declared * (bits // 8)
    if keyword == "PixelData" and str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        declared = declared // 3 * 2
    value = ds[keyword].value or b""
    held = len(value)
    if held < declared:
        raise ImageError(f"DICOM pixel data holds {held} bytes but its header (Rows, Columns, Samples per Pixel, "
                         f"Bits Allocated, Number of Frames) declares {declared}: the file is cut short or corrupt. "
                         f"{EXPORT_ADVICE}.")
    if held > declared + declared % 2:
        if value.count(0, declared) != held - declared:  # image data, not padding: the header understates it
            raise _refuse(f"DICOM pixel data holds {held} bytes, more than the {declared} its header (Rows, Columns, "
                          "Samples per Pixel, Bits Allocated, Number of Frames) declares: the header is false or "
                          "the file corrupt")
        return [f"pixel data ends in {held - declared} zero bytes past what the header declares (ignored)"]
    return []


def _check_frame(header: FrameHeader, rows: int, cols: int, samples: int) -> None:
    """The frame's own size, components and tiles against the pixel limit and the DICOM header."""
    over = header.width * header.height > MAX_PIXELS
    if over or (header.width, header.height) != (cols, rows):
        limit = f", over the {MAX_PIXELS // 1_000_000} megapixel limit," if over else ""
        raise _refuse(f"DICOM {header.codec} frame says {header.width} x {header.height} pixels{limit} but its "
                      f"header declares {cols} x {rows} (Columns x Rows): a possible decompression bomb or a "
                      "corrupt file")
    if header.components != samples:
        raise _refuse(f"DICOM {header.codec} frame has {header.components} components but its header declares "
                      f"{samples} samples per pixel")
    if header.tiles > MAX_J2K_TILES:
        raise _refuse(f"DICOM {header.codec} frame has {header.tiles} tiles, over the limit of {MAX_J2K_TILES}")


def check_pixel_data(ds, rows: int, cols: int, n_frames: int) -> list[str]:
    """Refuse, before any decoder runs, pixel data whose decoding would cost more than the header
    (Rows and Columns already checked) declares; see the module docstring. Returns notes for the user."""
    if not 1 <= n_frames <= MAX_FRAMES:
        raise _refuse(f"DICOM header declares {n_frames} frames; 1 to {MAX_FRAMES} are read")
    try:
        samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 8) or 8)
    except (TypeError, ValueError):
        raise ImageError("DICOM file has an unreadable Samples per Pixel or Bits Allocated") from None
    if not 1 <= samples <= 4 or bits not in (1, 8, 16, 32, 64):
        raise _refuse(f"DICOM header declares {samples} samples per pixel of {bits} bits, which no decoder here reads")
    keyword = next(k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds)
    ts = ds.file_meta.TransferSyntaxUID
    try:
        encapsulated = ts.is_encapsulated
    except ValueError:  # not a transfer syntax pydicom knows (a private one): no decoder for it
        encapsulated = True
    sample_bytes, notes = max(bits // 8, 1), []
    if keyword != "PixelData" or not encapsulated:
        notes = _check_native(ds, keyword, rows, cols, samples, bits, n_frames)
    elif ts in JPEG_SYNTAXES or ts in J2K_SYNTAXES:
        header = (jpeg_frame_header if ts in JPEG_SYNTAXES else j2k_frame_header)(_first_frame(ds, n_frames, ts.name),
                                                                                 ts.name)
        _check_frame(header, rows, cols, samples)
        sample_bytes = max(sample_bytes, 1 if header.precision <= 8 else 2 if header.precision <= 16 else 4)
    elif ts == RLE_SYNTAX:
        check_rle_frame(_first_frame(ds, n_frames, ts.name), rows, cols, samples, bits, ts.name)
    else:  # no frame header reader here: no decoder may run on it
        name = ts.name if ts.name != str(ts) else "an unknown transfer syntax"
        raise ImageError(f"cannot decode this DICOM: its pixel data is compressed as {name}, which this workbench "
                         f"does not read (see docs/robustness.md for the syntaxes it reads). {EXPORT_ADVICE}."[:400])
    decoded = rows * cols * samples * sample_bytes  # the first frame only is decoded
    if decoded > MAX_DECODED_BYTES:
        raise _refuse(f"DICOM first frame would decode to {decoded / 2**20:.0f} MB, over the "
                      f"{MAX_DECODED_BYTES // 2**20} MB limit")
    return notes
