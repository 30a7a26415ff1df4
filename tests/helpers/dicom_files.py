"""Films and the DICOM files the tests build from them (pydicom), compressed by Debian's own tools
(DCMTK, GDCM): the real encoders PACS exports come from. Every DICOM carries patient identifiers
so that leaks can be checked."""
from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np

PATIENT_NAME = "DOE^JANE^SECRETNAME"
PATIENT_ID = "PID-31337-XYZ"
#: Every identifying value the builders write; none may appear in any output.
SECRETS = ("DOE", "JANE", "SECRETNAME", PATIENT_ID, "31337", "19700101", "SECRET HOSPITAL", "ACC-4242-SECRET",
           "DR^WHO^REFERRER")

#: name -> (command before "IN OUT", transfer syntax UID it writes, lossless?)
TOOLS = {
    "jpeg-lossless-sv1": (["dcmcjpeg", "--encode-lossless-sv1"], "1.2.840.10008.1.2.4.70", True),
    "jpeg-lossless-p14": (["dcmcjpeg", "--encode-lossless"], "1.2.840.10008.1.2.4.57", True),
    "jpeg-extended-12bit": (["dcmcjpeg", "--encode-extended"], "1.2.840.10008.1.2.4.51", False),
    "jpeg-ls-lossless": (["dcmcjpls", "--encode-lossless"], "1.2.840.10008.1.2.4.80", True),
    "jpeg-ls-near-lossless": (["dcmcjpls", "--encode-nearlossless"], "1.2.840.10008.1.2.4.81", False),
    "rle": (["dcmcrle"], "1.2.840.10008.1.2.5", True),
    "jpeg2000-lossless": (["gdcmconv", "--j2k"], "1.2.840.10008.1.2.4.90", True),
    "deflate": (["dcmconv", "+td"], "1.2.840.10008.1.2.1.99", True),
}
#: More encoders, for tests/integration/test_dicom_bombs.py: name -> as in ``TOOLS`` (8-bit input for Baseline).
MORE_TOOLS = {
    "jpeg-baseline-8bit": (["dcmcjpeg", "--encode-baseline"], "1.2.840.10008.1.2.4.50", False),
    "jpeg2000-lossy": (["gdcmconv", "--j2k", "--lossy", "-r", "10"], "1.2.840.10008.1.2.4.91", False),
}


def grey(path) -> np.ndarray:
    """A film (any image file) as 8-bit greyscale."""
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"))


def missing_tools() -> list[str]:
    """The Debian tools of ``TOOLS`` not on PATH."""
    return sorted({cmd[0] for cmd, _, _ in TOOLS.values() if shutil.which(cmd[0]) is None})


def compress(src: Path, tool: str, out: Path) -> Path:
    """``src`` re-encoded by ``TOOLS[tool]`` (or ``MORE_TOOLS[tool]``) into ``out``."""
    cmd = {**TOOLS, **MORE_TOOLS}[tool][0]
    done = subprocess.run([*cmd, str(src), str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and out.is_file(), f"{' '.join(cmd)} failed: {done.stderr[-500:]}"
    return out


def make_dicom(stored, *, photometric="MONOCHROME2", bits_stored=8, signed=False, slope=None, intercept=None,
               window=None, voi_function=None, transfer_syntax=None, fragments=None, pixels=True,
               frames=1, preamble=True, rows_cols=None, **attributes) -> bytes:
    """A DX DICOM file (with patient identifiers, so leaks can be checked) holding ``stored``.
    ``attributes`` set (or, with ``None``, delete) any further element by keyword."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image, for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT_NAME, PATIENT_ID, "19700101"
    ds.InstitutionName, ds.Modality, ds.BodyPartExamined = "ST SECRET HOSPITAL", "DX", "CHEST"
    if pixels:
        stored = np.asarray(stored)
        colour = not photometric.startswith("MONO")
        shape = stored.shape[1:] if frames > 1 else stored.shape
        ds.Rows, ds.Columns = rows_cols or shape[:2]
        ds.SamplesPerPixel = 3 if colour else 1
        if colour:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 8 if bits_stored <= 8 else 16
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
        if frames > 1:
            ds.NumberOfFrames = frames
        if slope is not None:
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        if voi_function:
            ds.VOILUTFunction = voi_function
        if fragments is not None:
            ds.PixelData = encapsulate(fragments)
            ds["PixelData"].VR = "OB"
        else:
            dtype = {(8, 0): np.uint8, (8, 1): np.int8, (16, 0): np.uint16, (16, 1): np.int16}
            ds.PixelData = stored.astype(dtype[ds.BitsAllocated, int(signed)]).tobytes()
    for keyword, value in attributes.items():
        if value is None:
            ds.pop(keyword, None)
        else:
            setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return data if preamble else data[132:]


def to_12bit(grey: np.ndarray) -> np.ndarray:
    """An 8-bit film spread over 12 bits (0..4095), as a DX detector's output would fill them."""
    g = grey.astype(np.uint16)
    return g * 16 + g // 16


def dx_film(grey: np.ndarray, photometric: str = "MONOCHROME2", **attributes) -> bytes:
    """A 12-bit DX film from an 8-bit one, with a full-range VOI window (so the display is the
    original film again). MONOCHROME1 stores white = air, as CR readers do."""
    stored = to_12bit(grey)
    if photometric == "MONOCHROME1":
        stored = 4095 - stored
    header = {"ViewPosition": "PA", "PixelSpacing": [0.139, 0.139], "AccessionNumber": "ACC-4242-SECRET",
              "ReferringPhysicianName": "DR^WHO^REFERRER", **attributes}
    return make_dicom(stored, photometric=photometric, bits_stored=12, window=(2048.0, 4096.0), **header)


# ---------------------------------------------------------------- hostile files (decompression bombs)


def frame_header_offset(frame: bytes) -> int:
    """Offset of the SOFn (or JPEG-LS SOF55) marker of a JPEG codestream (markers before the first scan)."""
    import struct

    pos = 2  # after SOI
    while pos + 4 <= len(frame):
        marker = frame[pos + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) or marker == 0xF7:
            return pos
        pos += 2 + struct.unpack_from(">H", frame, pos + 2)[0]
    raise AssertionError("no SOF marker before the first scan")


def first_frame(data: bytes) -> bytes:
    """The first frame's compressed bytes of an encapsulated DICOM."""
    import pydicom
    from pydicom.encaps import get_frame

    ds = pydicom.dcmread(io.BytesIO(data))
    return get_frame(ds.PixelData, 0, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1))


def with_frame(data: bytes, frame: bytes, **attributes) -> bytes:
    """An encapsulated DICOM with its (single) frame replaced by ``frame`` and header elements set
    by keyword; everything else as it was."""
    import pydicom
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelData = encapsulate([frame + b"\0" * (len(frame) % 2)])
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def with_frame_size(data: bytes, width: int, height: int) -> bytes:
    """A compressed DICOM whose frame's codestream claims ``width`` x ``height`` (JPEG SOF, JPEG-LS
    SOF55 or JPEG 2000 SIZ, as one tile, patched in place); the DICOM header unchanged."""
    import struct

    frame = bytearray(first_frame(data))
    if frame[:4] == b"\xff\x4f\xff\x51":  # Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz
        struct.pack_into(">8I", frame, 8, width, height, 0, 0, width, height, 0, 0)
    else:
        struct.pack_into(">HH", frame, frame_header_offset(frame) + 5, height, width)
    return with_frame(data, bytes(frame))


def with_header(data: bytes, **attributes) -> bytes:
    """``data`` with DICOM header elements changed (by keyword), the pixel data left as it is."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
