"""Reading DICOM films safely: pydicom with the pylibjpeg decoders, and the DICOM rules a chest
classifier needs.

Display pipeline (PS3.14 order): stored values -> Modality LUT (Rescale Slope/Intercept) -> VOI
(Window Center/Width, or a VOI LUT) -> 0..255, then inverted for MONOCHROME1 or Presentation LUT
Shape INVERSE so that bone is white as in the training films. The Modality LUT output is kept
(``LoadedImage.raw``) so a viewer can window it again (:mod:`windowing`).

Header rules: lateral, oblique and decubitus views are refused (the models saw frontal films
only); a Modality other than CR/DX or a body part other than chest is noted and still scored;
multi-frame files give their first frame. Only pixels and the non-identifying facts in
``LoadedImage.dicom`` leave this module: patient, institution and other header values are never
copied into notes, errors or metadata, and pydicom never reports invalid values (its validation warnings
and log lines quote them, e.g. a name in a UID): :func:`quiet_pydicom`, process-wide, before any file is read.
"""
from __future__ import annotations

import io
import re
import struct
import warnings
import zlib

import numpy as np

from pneumo_core.errors import ImageError, first_line
from pneumo_core.imaging.codestream import EXPORT_ADVICE, check_pixel_data
from pneumo_core.imaging.core import LoadedImage, check_size, deblock, jpeg_quality, to_uint8
from pneumo_core.imaging.windowing import VOI_FUNCTIONS, apply_window, keep_raw

DEFLATED_TS = "1.2.840.10008.1.2.1.99"
RLE_TS = "1.2.840.10008.1.2.5"
#: A deflated data set is inflated here at most to this size (a 40-megapixel 16-bit film is 80 MB):
#: 64 MB of deflate can hold 60 GB of zeros.
MAX_INFLATED_BYTES = 128 * 1024 * 1024
_EXPECTED = "PNG, JPEG, BMP, TIFF, WebP or DICOM expected"

#: Every transfer syntax read here and what decodes it (pydicom 3 plugins; tested in tests/integration/test_dicom.py).
TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "pydicom (uncompressed)",
    "1.2.840.10008.1.2.1": "pydicom (uncompressed)",
    "1.2.840.10008.1.2.2": "pydicom (uncompressed, retired big endian)",
    DEFLATED_TS: "zlib here, size-capped, then pydicom",
    RLE_TS: "pylibjpeg-rle (pydicom's own decoder if it is missing)",
    "1.2.840.10008.1.2.4.50": "Pillow, else pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg (12-bit), Pillow (8-bit)",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.90": "Pillow, else pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "Pillow, else pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",
}
#: View positions of films the models never saw, with what they are (PS3.3 C.8.11.5 defined terms,
#: and the LATERAL many CR systems write).
NON_FRONTAL_VIEWS = {
    "LATERAL": "a lateral film", "LAT": "a lateral film", "LL": "a left lateral film", "RL": "a right lateral film",
    "LLD": "a left lateral decubitus film (patient lying on one side)",
    "RLD": "a right lateral decubitus film (patient lying on one side)",
    "LLO": "an oblique film", "RLO": "an oblique film", "LAO": "an oblique film", "RAO": "an oblique film",
    "LPO": "an oblique film", "RPO": "an oblique film",
}
RADIOGRAPHY_MODALITIES = ("CR", "DX", "DR", "RG")
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG", "")


def is_dicom(data: bytes) -> bool:
    """A DICOM Part 10 file: 128-byte preamble, then ``DICM``."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def _first(value):
    """First value of a possibly multi-valued DICOM element."""
    try:
        return value[0] if not isinstance(value, (str, bytes)) and len(value) > 0 else value
    except TypeError:
        return value


def _code(value, length: int = 16) -> str:
    """A DICOM code string as safe plain text (upper case, letters, digits, space, _ and -)."""
    return re.sub(r"[^A-Z0-9 _-]", "", str(_first(value) or "").strip().upper())[:length]


def _values(value) -> list:
    """A DICOM element value as a list (one item for a single value)."""
    if value is None:
        return []
    return [value] if isinstance(value, (str, bytes, int, float)) or not hasattr(value, "__len__") else list(value)


def _numbers(value, count: int) -> list[float] | None:
    """The first ``count`` values as finite floats, else ``None``."""
    try:
        values = [float(v) for v in _values(value)][:count]
    except (TypeError, ValueError):
        return None
    return values if len(values) == count and all(np.isfinite(values)) else None


# ---------------------------------------------------------------- deflate
def _meta_end(data: bytes) -> int:
    """Offset just past the File Meta group (0002), read element by element (explicit VR little endian)."""
    pos = 132
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 2:
        if data[pos + 4:pos + 6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"):
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return pos


def _inflate(data: bytes, notes: list) -> bytes:
    """A Deflated Explicit VR Little Endian file -> the same file uncompressed, or ``data`` unchanged
    when it is not deflated. Inflates at most ``MAX_INFLATED_BYTES`` (pydicom itself has no cap)."""
    if not is_dicom(data):
        return data
    end = _meta_end(data)
    if DEFLATED_TS.encode() not in data[132:end]:
        return data
    from pydicom.dataset import FileMetaDataset
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as PS3.5 A.5 and pydicom
    try:
        body = inflater.decompress(data[end:], MAX_INFLATED_BYTES + 1)
    except zlib.error:
        raise ImageError("deflate-compressed DICOM is corrupt (its deflate stream cannot be inflated)") from None
    if len(body) > MAX_INFLATED_BYTES:
        raise ImageError(f"deflate-compressed DICOM inflates to over {MAX_INFLATED_BYTES // 2**20} MB "
                         "(a possible decompression bomb); refused")
    if not inflater.eof:
        raise ImageError("deflate-compressed DICOM is cut short (its deflate stream ends early)")
    meta = FileMetaDataset(read_dataset(io.BytesIO(data[132:end]), is_implicit_VR=False, is_little_endian=True))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    out.write(data[:132])
    write_file_meta_info(out, meta, enforce_standard=True)
    out.write(body)
    notes.append(f"deflate-compressed DICOM inflated ({len(data) / 2**20:.1f} MB -> {len(body) / 2**20:.1f} MB)")
    return out.getvalue()


# ---------------------------------------------------------------- messages
def _plugin_reason(exc: Exception) -> str:
    """The decoder's own reason, one short line: pydicom lists one line per plugin; libjpeg/openjpeg first."""
    text = str(exc)
    reasons = dict(re.findall(r"^\s+([\w-]+): (.+)$", text, flags=re.M))
    reason = reasons.get("pylibjpeg") or next(iter(reasons.values()), "") or first_line(exc, 1000)
    reason = reason.encode("ascii", "replace").decode("ascii").strip().rstrip(".:")
    return reason[:140] or type(exc).__name__


def decode_error_message(ds, exc: Exception) -> str:
    """Why this DICOM's pixels cannot be decoded, in the reader's terms first (export the film
    again), the packages a developer could add second. Specific for every syntax: the decoder's own
    reason is quoted where one is installed."""
    from pydicom.pixels import get_decoder

    ts = ds.file_meta.TransferSyntaxUID
    ts_name = ts.name
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return (f"cannot decode this DICOM: its pixel data is compressed as {ts_name}, which this workbench does "
                f"not read (see docs/robustness.md for the syntaxes it reads). {EXPORT_ADVICE}.")[:400]
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        return (f"cannot decode this DICOM: it is compressed as {ts_name} and no decoder for it is installed "
                f"here. {EXPORT_ADVICE} (or a developer can install one of: {needs})")[:400]
    if not ts.is_compressed:
        # pydicom 3: "... less than expected (8130 vs 8192 bytes) ..."; older: "(8130 bytes) ... (8192 bytes)"
        sizes = re.search(r"\((\d+) vs (\d+) bytes\)|\((\d+) bytes\).*?\((\d+) bytes\)", str(exc), re.S)
        if sizes:
            held, declared = (g for g in sizes.groups() if g is not None)
            return (f"DICOM pixel data holds {held} bytes but its header (Rows, Columns, Bits Allocated) "
                    f"declares {declared}: the file is cut short or corrupt. {EXPORT_ADVICE}.")
        return f"cannot read this DICOM's {ts_name} pixel data ({_plugin_reason(exc)}). {EXPORT_ADVICE}."[:400]
    return (f"cannot decode this DICOM's {ts_name} pixel data: the decoder reports \"{_plugin_reason(exc)}\"; "
            f"the file may be corrupt or cut short, or not follow the standard. {EXPORT_ADVICE}.")[:400]


# ---------------------------------------------------------------- header rules and facts
def _refuse_non_frontal(ds) -> None:
    view = _code(ds.get("ViewPosition"))
    if view in NON_FRONTAL_VIEWS:
        raise ImageError(f"refused: View Position {view} means {NON_FRONTAL_VIEWS[view]}; the models were trained "
                         "on frontal (PA/AP) chest films only, so their score would mean nothing here")


def _header_notes(ds, notes: list) -> None:
    modality, body = _code(ds.get("Modality")), _code(ds.get("BodyPartExamined"))
    if modality and modality not in RADIOGRAPHY_MODALITIES:
        notes.append(f"Modality {modality} is not radiography (CR/DX): the models saw chest radiographs only; "
                     "scored anyway")
    if body not in CHEST_BODY_PARTS:
        notes.append(f"Body Part Examined is {body}, not CHEST: the models saw chest films only; scored anyway")


def _window_facts(ds) -> list:
    """The file's VOI windows as (centre, width) pairs. Their explanations are free text and are not kept."""
    windows = []
    for center, width in zip(_values(ds.get("WindowCenter")), _values(ds.get("WindowWidth"))):
        try:
            c, w = float(center), float(width)
        except (TypeError, ValueError):
            continue
        if np.isfinite(c) and np.isfinite(w):
            windows.append((c, w))
    return windows


def header_facts(ds, transfer_syntax, n_frames: int, bits: int, photometric: str, inverted: bool) -> dict:
    """The non-identifying facts a page may show about a film (``LoadedImage.dicom``)."""
    spacing, spacing_source = None, None
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):  # patient plane first, detector plane second
        values = _numbers(ds.get(keyword), 2) if keyword in ds else None
        if values and min(values) > 0:
            spacing, spacing_source = [round(v, 6) for v in values], keyword
            break
    windows, function = _window_facts(ds), _code(ds.get("VOILUTFunction"))
    slope = _numbers(ds.get("RescaleSlope", 1.0), 1) or [1.0]
    intercept = _numbers(ds.get("RescaleIntercept", 0.0), 1) or [0.0]
    lossy = _code(ds.get("LossyImageCompression")) == "01" or transfer_syntax in (
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91")
    return {
        "modality": _code(ds.get("Modality")) or None,
        "view_position": _code(ds.get("ViewPosition")) or None,
        "body_part": _code(ds.get("BodyPartExamined")) or None,
        "pixel_spacing_mm": spacing,
        "pixel_spacing_source": spacing_source,
        "transfer_syntax": transfer_syntax.name,
        "transfer_syntax_uid": str(transfer_syntax),
        "lossy_compression": bool(lossy),
        "bits_stored": bits,
        "photometric": photometric,
        "presentation_lut_shape": _code(ds.get("PresentationLUTShape")) or None,
        "inverted_for_display": inverted,
        "frames": n_frames,
        "rescale_slope": slope[0], "rescale_intercept": intercept[0],
        "rescale_type": _code(ds.get("RescaleType")) or None,
        "window": windows,
        "voi_function": function if function in VOI_FUNCTIONS else "LINEAR",
        "has_voi_lut": "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0,
    }


# ---------------------------------------------------------------- pixels
def _voi_to_uint8(arr: np.ndarray, ds, notes: list, bits: int) -> np.ndarray:
    """Modality-LUT output -> 0..255 through the file's first VOI window (or VOI LUT). Without
    one (or when the window would leave no visible contrast): 8-bit data as stored, deeper data
    min..max."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        from pydicom.pixels import apply_voi_lut

        item = ds.VOILUTSequence[0]
        out_bits = int(item.LUTDescriptor[2])
        px = to_uint8(apply_voi_lut(arr, ds, index=0, prefer_lut=True), lo=0.0, hi=float(2**out_bits - 1))
        if px.std() >= 2.0:
            notes.append("VOI LUT applied")
            return px
        notes.append("VOI LUT ignored (it leaves no visible contrast)")
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            center, width = float(_first(ds.WindowCenter)), float(_first(ds.WindowWidth))
        except (TypeError, ValueError):
            center, width = 0.0, 0.0
        func = _code(ds.get("VOILUTFunction")) or "LINEAR"
        if np.isfinite(center) and (width > 1.0 or (width > 0 and func != "LINEAR")):
            try:
                px = apply_window(arr, center, width, func)
            except ValueError:  # an unknown VOI LUT Function: the standard's default
                px = apply_window(arr, center, width, "LINEAR")
            if px.std() >= 2.0:
                notes.append("VOI window applied")
                return px
            notes.append("VOI window ignored (it leaves no visible contrast)")
        else:
            notes.append("VOI window ignored (invalid width)")
    if bits <= 8 and arr.min() >= 0 and arr.max() <= 255:
        return to_uint8(arr, 8)  # plain 8-bit data: as stored, like an 8-bit PNG
    return to_uint8(arr)  # no usable window: the full range of this image, as viewers do


def _dicom_jpeg_quality(ds, n_frames: int) -> float | None:
    """Estimated IJG quality of a JPEG Baseline/Extended encapsulated first frame, else ``None``."""
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    if ts not in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"):
        return None
    try:
        from PIL import Image
        from pydicom.encaps import get_frame

        frame = get_frame(ds.PixelData, 0, number_of_frames=n_frames)
        return jpeg_quality(Image.open(io.BytesIO(frame)))
    except Exception:  # no estimate: no smoothing
        return None


def _decode_first_frame(ds, n_frames: int, notes: list) -> np.ndarray:
    from pydicom.pixels import get_decoder

    options = {}
    if n_frames > 1:  # decode the first frame only
        options["index"] = 0
        notes.append(f"first frame of a {n_frames}-frame DICOM")
    if ds.file_meta.TransferSyntaxUID == RLE_TS and "pylibjpeg" in get_decoder(RLE_TS).available_plugins:
        options["decoding_plugin"] = "pylibjpeg"  # pylibjpeg-rle: 10-50x faster than pydicom's own (2000 px films)
    try:
        ds.pixel_array_options(**options)
        arr = ds.pixel_array  # YBR colour spaces come back as RGB already (pydicom >= 3)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(decode_error_message(ds, exc)) from None
    return arr[0] if arr.ndim == 4 else arr  # an older pydicom ignoring the frame index


def _to_display(ds, arr: np.ndarray, photometric: str, bits: int, notes: list):
    """Decoded pixels -> (8-bit display pixels, values kept for windowing or None, inverted?)."""
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        from pydicom.pixels import apply_modality_lut

        if arr.ndim != 2:
            raise ImageError(f"DICOM pixel data has an unexpected shape {arr.shape} for {photometric}")
        values = apply_modality_lut(arr, ds)
        px = _voi_to_uint8(values, ds, notes, bits)
        shape = _code(ds.get("PresentationLUTShape"))
        # PS3.3 C.7.6.1.1.6 / C.8.11.6.1.2: INVERSE is what MONOCHROME1 films carry; the two name one
        # inversion, not two. INVERSE on MONOCHROME2 inverts; IDENTITY on MONOCHROME1 contradicts it.
        inverted = photometric == "MONOCHROME1" or shape == "INVERSE"
        if photometric == "MONOCHROME1":  # stored with white = air: invert so bones are white
            notes.append("MONOCHROME1 inverted" + (" (its Presentation LUT Shape IDENTITY contradicts MONOCHROME1 "
                                                   "and was not followed)" if shape == "IDENTITY" else ""))
        elif inverted:
            notes.append("Presentation LUT Shape INVERSE: inverted")
        return (255 - px if inverted else px), keep_raw(values), inverted
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            rgb = apply_color_lut(arr, ds)
        except Exception as exc:
            raise ImageError(f"DICOM palette colour lookup table is unusable ({type(exc).__name__})") from None
        return (rgb if rgb.dtype == np.uint8 else to_uint8(rgb, 16 if rgb.max() > 255 else 8)), None, False
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"):
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ImageError(f"DICOM pixel data has an unexpected shape {arr.shape} for {photometric}")
        return (arr if arr.dtype == np.uint8 else to_uint8(arr, bits)), None, False
    raise ImageError(f"unsupported DICOM photometric interpretation {_code(photometric, 32)}")


def quiet_pydicom() -> None:
    """Stop pydicom from reporting header values anywhere (stderr, logging), for the whole process: value
    validation off when reading and writing (its warnings quote the offending value), and its logger, which
    repeats them, switched off. Idempotent; called wherever DICOM is read or written."""
    import logging

    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    logging.getLogger("pydicom").disabled = True


def load_dicom(data: bytes) -> LoadedImage:
    """Decode one DICOM file (Part 10, or a bare data set) into a :class:`LoadedImage`; raises
    :class:`ImageError` with a one-line reason. Rows/Columns, and the first frame's own size, component
    count and decoded bytes (:func:`codestream.check_pixel_data`), are checked before any pixel is decoded."""
    import pydicom

    quiet_pydicom()
    notes = []
    with warnings.catch_warnings():
        # pydicom's validation warnings can quote element values (names, IDs): never surface them.
        warnings.simplefilter("ignore")
        original_ts = None
        if is_dicom(data):
            inflated = _inflate(data, notes)
            if inflated is not data:
                original_ts, data = pydicom.uid.UID(DEFLATED_TS), inflated
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
        except Exception as exc:
            raise ImageError(f"not a readable DICOM file ({type(exc).__name__})") from None
        if not has_pixels:
            if not is_dicom(data) and len(ds) == 0:
                raise ImageError(f"not a readable DICOM file ({_EXPECTED})")
            raise ImageError("DICOM file has no pixel data (a report or structured document, not an image)")
        try:
            rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError):
            raise ImageError("DICOM file has an unreadable image size (Rows/Columns)") from None
        if rows == 0 or cols == 0:
            raise ImageError("DICOM file has pixel data but no image size (Rows/Columns missing)")
        check_size(cols, rows)  # before any pixel is decoded
        _refuse_non_frontal(ds)
        if getattr(ds, "file_meta", None) is None or "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian  # the DICOM default
        # what the decoder will allocate, from the compressed frame's own header (codestream.py)
        notes += check_pixel_data(ds, rows, cols, n_frames)
        _header_notes(ds, notes)
        arr = _decode_first_frame(ds, n_frames, notes)
        photometric = _code(ds.get("PhotometricInterpretation"), 32) or "MONOCHROME2"
        bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
        px, raw, inverted = _to_display(ds, arr, photometric, bits, notes)
        px = deblock(np.ascontiguousarray(px), _dicom_jpeg_quality(ds, n_frames), notes)
        facts = header_facts(ds, original_ts or ds.file_meta.TransferSyntaxUID, n_frames, bits, photometric, inverted)
    return LoadedImage(np.ascontiguousarray(px), "DICOM", (rows, cols), bits, notes, facts, raw, inverted)
