"""Decompression bombs in DICOM (security review): small files whose compressed frame claims far
more pixels than the DICOM header, or whose header claims more than the frame holds.

Every hostile file is made here, in tmp_path, from a real test-split film compressed by DCMTK/GDCM,
then patched: the frame's SOF/SIZ says 60000 x 60000 (header kept at the true size), the header says
4000 x 4000 (frame kept), Number of Frames 100000 or more frames than fragments, native pixel data
shorter or longer than declared, and the codestream tricks a header reader must not miss (a second
SOF after the scan, DNL, DHP, JPEG-LS LSE, a scan bomb, JPEG 2000 tiles, a JP2 box that disagrees).
Each must be refused by ``load_image`` with a one-line reason before any decoder runs, and the CLI
must stay within 512 MB of a normal film's peak memory (measured per child process; no timings).
"""
from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pneumo_core.errors import ImageError
from pneumo_core.imaging import codestream, dicom
from pneumo_core.imaging.codestream import (
    MAX_J2K_TILES,
    MAX_JPEG_MARKERS,
    MAX_JPEG_SCANS,
    j2k_frame_header,
    jpeg_frame_header,
)
from pneumo_core.imaging.core import MAX_DECODED_BYTES, MAX_FRAMES
from pneumo_core.imaging.decode import load_image
from tests.helpers.dicom_files import (
    MORE_TOOLS,
    SECRETS,
    TOOLS,
    compress,
    dx_film,
    first_frame,
    frame_header_offset,
    grey,
    make_dicom,
    missing_tools,
    with_frame,
    with_frame_size,
    with_header,
)
from tests.helpers.support import require

ROOT = Path(__file__).resolve().parents[2]
#: name -> (tool in TOOLS or MORE_TOOLS, 12-bit source?)
SYNTAXES = {
    "jpeg-baseline": ("jpeg-baseline-8bit", False),
    "jpeg-extended": ("jpeg-extended-12bit", True),
    "jpeg-lossless-sv1": ("jpeg-lossless-sv1", True),
    "jpeg-lossless-p14": ("jpeg-lossless-p14", True),
    "jpeg-ls-lossless": ("jpeg-ls-lossless", True),
    "jpeg-ls-near-lossless": ("jpeg-ls-near-lossless", True),
    "jpeg2000-lossless": ("jpeg2000-lossless", True),
    "jpeg2000-lossy": ("jpeg2000-lossy", True),
    "rle": ("rle", True),
}
FRAMED = [name for name in SYNTAXES if name != "rle"]  # a codestream with its own width and height
HUGE = 60000
MEMORY_MARGIN_MB = 512


def refused(data: bytes, *fragments: str) -> str:
    """``load_image`` refuses ``data`` with one line holding every fragment and no patient value."""
    with pytest.raises(ImageError) as info:
        load_image(data)
    msg = str(info.value)
    assert msg and "\n" not in msg and len(msg) <= 400, msg
    assert all(f.lower() in msg.lower() for f in fragments), f"{msg!r} lacks one of {fragments}"
    assert not any(secret in msg for secret in SECRETS), msg
    return msg


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel decoder is reached."""
    def decoder_called(*args, **kwargs):
        raise AssertionError("a decoder ran on a file that should have been refused before decoding")

    monkeypatch.setattr(dicom, "_decode_first_frame", decoder_called)


@pytest.fixture(scope="module")
def film(data_root) -> np.ndarray:
    return grey(sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[0])


@pytest.fixture(scope="module")
def files(film, tmp_path_factory) -> dict[str, bytes]:
    """The film as uncompressed 8-bit and 12-bit DX DICOMs, and compressed in every syntax."""
    missing = missing_tools()
    require(not missing, f"DICOM tools missing: {', '.join(missing)} (apt-get install dcmtk libgdcm-tools)")
    tmp = tmp_path_factory.mktemp("bombs")
    sources = {False: tmp / "film8.dcm", True: tmp / "film12.dcm"}
    sources[False].write_bytes(make_dicom(film, ViewPosition="PA"))
    sources[True].write_bytes(dx_film(film))
    out = {"uncompressed-8bit": sources[False].read_bytes(), "uncompressed-12bit": sources[True].read_bytes()}
    for name, (tool, deep) in SYNTAXES.items():
        out[name] = compress(sources[deep], tool, tmp / f"{name}.dcm").read_bytes()
    return out


@pytest.fixture(scope="module")
def rgb_files(film, tmp_path_factory) -> dict[str, bytes]:
    """An 8-bit RGB film compressed by three encoders (three components in the frame)."""
    require(not missing_tools(), "DICOM tools missing")
    tmp = tmp_path_factory.mktemp("rgb")
    src = tmp / "rgb.dcm"
    src.write_bytes(make_dicom(np.stack([film, film // 2, 255 - film], -1), photometric="RGB", ViewPosition="PA"))
    return {tool: compress(src, tool, tmp / f"{tool}.dcm").read_bytes()
            for tool in ("jpeg-lossless-sv1", "jpeg-ls-lossless", "jpeg2000-lossless")}


def size_text(film) -> str:
    return f"{film.shape[1]} x {film.shape[0]}"


# ---------------------------------------------------------------- normal films are untouched
def test_every_syntax_is_made_and_normal_films_decode_as_before(files, film, monkeypatch):
    """The checks change nothing for good files: same pixels with and without them."""
    import pydicom

    loaded = {name: load_image(data) for name, data in files.items()}
    for name, (tool, deep) in SYNTAXES.items():
        ts = pydicom.dcmread(io.BytesIO(files[name]), stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert ts == {**TOOLS, **MORE_TOOLS}[tool][1], name
        reference = loaded["uncompressed-12bit" if deep else "uncompressed-8bit"]
        if {**TOOLS, **MORE_TOOLS}[tool][2]:  # lossless
            np.testing.assert_array_equal(loaded[name].raw, reference.raw, err_msg=name)
            np.testing.assert_array_equal(loaded[name].pixels, reference.pixels, err_msg=name)
        else:
            shown = np.abs(loaded[name].pixels.astype(np.int64) - reference.pixels)
            assert shown.mean() < 2.0, (name, shown.mean())
    monkeypatch.setattr(dicom, "check_pixel_data", lambda *args: [])  # the loader as it was
    for name, data in files.items():
        before = load_image(data)
        np.testing.assert_array_equal(before.pixels, loaded[name].pixels, err_msg=name)
        assert before.notes == loaded[name].notes


def test_every_compressed_syntax_read_has_a_frame_header_reader():
    from pydicom.uid import UID

    from pneumo_core.imaging.dicom import TRANSFER_SYNTAXES

    compressed = {uid for uid in TRANSFER_SYNTAXES if UID(uid).is_encapsulated}
    assert compressed == codestream.JPEG_SYNTAXES | codestream.J2K_SYNTAXES | {codestream.RLE_SYNTAX}


def test_frame_headers_agree_with_the_codecs_own_readers(files, film):
    """The header reader here gives what openjpeg, pylibjpeg-libjpeg and pydicom read (on normal
    frames only: libjpeg's reader allocates the image)."""
    import libjpeg
    import openjpeg
    from pydicom.pixels.utils import _get_jpg_parameters

    for name in FRAMED:
        frame = first_frame(files[name])
        if name.startswith("jpeg2000"):
            ours, theirs = j2k_frame_header(frame), openjpeg.get_parameters(frame)
            components = theirs["samples_per_pixel"]
        else:
            ours, theirs = jpeg_frame_header(frame), libjpeg.get_parameters(frame)
            components = theirs["nr_components"]
            pyd = _get_jpg_parameters(frame)
            assert (pyd["height"], pyd["width"], pyd["components"]) == (ours.height, ours.width, ours.components)
        assert (theirs["rows"], theirs["columns"], components, theirs["precision"]) == (
            ours.height, ours.width, ours.components, ours.precision), name
        assert (ours.width, ours.height) == (film.shape[1], film.shape[0])


def test_a_jp2_wrapped_codestream_decodes_and_its_box_is_checked(files, no_decoding):
    frame = first_frame(files["jpeg2000-lossless"])
    header = j2k_frame_header(frame)
    jp2 = jp2_file(frame, header.width, header.height)
    assert j2k_frame_header(jp2) == header
    for header_last in (False, True):  # Pillow finds the header box after the codestream too
        refused(with_frame(files["jpeg2000-lossless"], jp2_file(frame, header.width, 4000, header_last)),
                "image header box says", "refused before decoding")
    two_codestreams = jp2_file(frame, header.width, header.height) + jp2_box(b"jp2c", frame)
    refused(with_frame(files["jpeg2000-lossless"], two_codestreams), "2 codestream boxes")
    huge = bytearray(frame)
    struct.pack_into(">8I", huge, 8, HUGE, HUGE, 0, 0, HUGE, HUGE, 0, 0)
    refused(with_frame(files["jpeg2000-lossless"], jp2_file(bytes(huge), HUGE, HUGE)), f"{HUGE} x {HUGE}")


def test_a_jp2_wrapped_film_decodes_like_the_bare_codestream(files):
    frame = first_frame(files["jpeg2000-lossless"])
    header = j2k_frame_header(frame)
    wrapped = load_image(with_frame(files["jpeg2000-lossless"], jp2_file(frame, header.width, header.height)))
    np.testing.assert_array_equal(wrapped.raw, load_image(files["jpeg2000-lossless"]).raw)


def jp2_box(kind: bytes, content: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(content), kind) + content


def jp2_file(codestream: bytes, width: int, height: int, header_last: bool = False) -> bytes:
    """A JP2 file (signature, file type, header with ihdr, codestream) around ``codestream``."""
    ihdr = jp2_box(b"ihdr", struct.pack(">IIHBBBB", height, width, 1, 15, 7, 0, 0))
    header = jp2_box(b"jp2h", ihdr + jp2_box(b"colr", struct.pack(">BBBI", 1, 0, 0, 17)))  # greyscale
    boxes = [jp2_box(b"jp2c", codestream), header] if header_last else [header, jp2_box(b"jp2c", codestream)]
    return jp2_box(b"jP  ", b"\r\n\x87\n") + jp2_box(b"ftyp", b"jp2 \0\0\0\0jp2 ") + b"".join(boxes)


# ---------------------------------------------------------------- the reported bombs, every syntax
@pytest.mark.parametrize("name", FRAMED)
def test_a_frame_claiming_60000_by_60000_is_refused_before_decoding(files, film, name, no_decoding):
    bomb = with_frame_size(files[name], HUGE, HUGE)
    assert len(bomb) < 200_000
    refused(bomb, f"frame says {HUGE} x {HUGE}", f"header declares {size_text(film)}", "megapixel limit",
            "refused before decoding")


@pytest.mark.parametrize("name", FRAMED)
def test_a_frame_smaller_than_the_header_says_is_refused(files, film, name, no_decoding):
    refused(with_header(files[name], Rows=4000, Columns=4000), f"frame says {size_text(film)}",
            "header declares 4000 x 4000", "refused before decoding")
    smaller = (film.shape[1], film.shape[0] - 8)  # a few rows short: under every limit, still refused
    refused(with_frame_size(files[name], *smaller), f"frame says {smaller[0]} x {smaller[1]}",
            f"header declares {size_text(film)}")


def test_an_rle_frame_too_short_for_its_header_is_refused(files, no_decoding):
    refused(with_header(files["rle"], Rows=4000, Columns=4000), "segment", "too short to fill the 4000 x 4000")
    rle = bytearray(first_frame(files["rle"]))
    rle[0] = 3  # three segments declared for one 16-bit sample (two)
    refused(with_frame(files["rle"], bytes(rle)), "3 segments", "declares 2", "refused before decoding")
    rle = bytearray(first_frame(files["rle"]))
    struct.pack_into("<I", rle, 8, len(rle) + 10)  # the second segment starts past the frame
    refused(with_frame(files["rle"], bytes(rle)), "RLE Lossless", "segment offsets", "corrupt or cut short")


@pytest.mark.parametrize("name", list(SYNTAXES))
def test_number_of_frames_is_capped_and_must_match_the_fragments(files, name, no_decoding):
    refused(with_header(files[name], NumberOfFrames=100000), "100000 frames", f"1 to {MAX_FRAMES}")
    refused(with_header(files[name], NumberOfFrames=5), "declares 5 frames", "holds only 1 fragment")


def test_native_pixel_data_must_hold_what_the_header_declares(files, film, no_decoding):
    import pydicom

    plain = files["uncompressed-12bit"]
    declared = film.size * 2
    refused(with_header(plain, NumberOfFrames=100000), "100000 frames")
    refused(with_header(plain, NumberOfFrames=3), f"holds {declared} bytes", f"declares {3 * declared}", "cut short")
    refused(with_header(plain, Rows=4000, Columns=4000), f"declares {4000 * 4000 * 2}", "cut short")
    ds = pydicom.dcmread(io.BytesIO(plain))
    refused(with_header(plain, PixelData=ds.PixelData[:-200]), f"holds {declared - 200} bytes", "cut short")
    refused(with_header(plain, Rows=film.shape[0] // 2), f"holds {declared} bytes",
            f"more than the {declared // film.shape[0] * (film.shape[0] // 2)}", "refused before decoding")
    refused(with_header(plain, PixelData=ds.PixelData + ds.PixelData[:1000]), "more than the", "header is false")


def test_native_pixel_data_with_zero_padding_still_decodes(files):
    import pydicom

    plain = files["uncompressed-12bit"]
    ds = pydicom.dcmread(io.BytesIO(plain))
    padded = load_image(with_header(plain, PixelData=ds.PixelData + bytes(128)))
    np.testing.assert_array_equal(padded.raw, load_image(plain).raw)
    assert any("128 zero bytes" in note for note in padded.notes), padded.notes


@pytest.mark.parametrize("tool", ["jpeg-lossless-sv1", "jpeg-ls-lossless", "jpeg2000-lossless"])
def test_component_count_must_match_samples_per_pixel(rgb_files, tool, no_decoding):
    refused(with_header(rgb_files[tool], SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2"),
            "3 components", "declares 1 samples per pixel", "refused before decoding")


def test_rgb_frames_decode(rgb_files):
    for tool, data in rgb_files.items():
        assert load_image(data).pixels.shape[-1] == 3, tool


def test_what_would_be_decoded_is_capped(rgb_files, no_decoding):
    """6000 x 6000 is under the pixel limit, but three 16-bit samples of it are 206 MB."""
    frame = bytearray(first_frame(rgb_files["jpeg2000-lossless"]))
    struct.pack_into(">8I", frame, 8, 6000, 6000, 0, 0, 6000, 6000, 0, 0)
    data = with_frame(rgb_files["jpeg2000-lossless"], bytes(frame), Rows=6000, Columns=6000, BitsAllocated=16,
                      BitsStored=16, HighBit=15)
    refused(data, "would decode to 206 MB", f"{MAX_DECODED_BYTES // 2**20} MB limit")


# ---------------------------------------------------------------- codestream tricks
def _insert_before_eoi(frame: bytes, segment: bytes) -> bytes:
    end = frame.rindex(b"\xff\xd9")
    return frame[:end] + segment + frame[end:]


def test_jpeg_tricks_past_the_first_frame_header_are_refused(files, no_decoding):
    data = files["jpeg-lossless-sv1"]
    frame = first_frame(data)
    sof = frame_header_offset(frame)
    sof_segment = frame[sof:sof + 2 + struct.unpack_from(">H", frame, sof + 2)[0]]
    second = bytearray(sof_segment)
    struct.pack_into(">HH", second, 5, HUGE, HUGE)
    refused(with_frame(data, _insert_before_eoi(frame, bytes(second))), "more than one frame header")
    refused(with_frame(data, _insert_before_eoi(frame, b"\xff\xdc\x00\x04\xea\x60")), "DNL")
    refused(with_frame(data, frame[:2] + b"\xff\xde" + bytes(second[2:]) + frame[2:]), "hierarchical")
    zero_height = bytearray(frame)
    struct.pack_into(">H", zero_height, sof + 5, 0)
    refused(with_frame(data, bytes(zero_height)), "leaves its height to a later marker")
    sos = frame.index(b"\xff\xda")
    scan = frame[sos:sos + 2 + struct.unpack_from(">H", frame, sos + 2)[0]] + b"\x00"
    refused(with_frame(data, _insert_before_eoi(frame, scan * MAX_JPEG_SCANS)), f"over {MAX_JPEG_SCANS} scans")
    # MAX_JPEG_SCANS scans in all is still read (and then fails in the decoder, with its reason)
    assert jpeg_frame_header(_insert_before_eoi(frame, scan * (MAX_JPEG_SCANS - 1)))
    comments = b"\xff\xfe\x00\x02" * MAX_JPEG_MARKERS  # reading markers stays cheap: they are counted
    refused(with_frame(data, frame[:2] + comments + frame[2:]), f"over {MAX_JPEG_MARKERS} markers")


def test_jpeg_ls_oversize_dimension_marker_is_refused(files, no_decoding):
    data = files["jpeg-ls-lossless"]
    frame = first_frame(data)
    lse = b"\xff\xf8\x00\x0c\x04\x04" + struct.pack(">II", HUGE, HUGE)[1:] + b"\x00"
    refused(with_frame(data, frame[:2] + lse + frame[2:]), "oversize image dimension")


def test_jpeg2000_tile_count_is_capped(files, film, no_decoding):
    frame = bytearray(first_frame(files["jpeg2000-lossless"]))
    struct.pack_into(">II", frame, 24, 2, 2)  # 2 x 2 px tiles
    tiles = -(-film.shape[0] // 2) * -(-film.shape[1] // 2)
    assert tiles > MAX_J2K_TILES
    refused(with_frame(files["jpeg2000-lossless"], bytes(frame)), f"{tiles} tiles", f"limit of {MAX_J2K_TILES}")


@pytest.mark.parametrize("name", list(SYNTAXES))
def test_cut_and_garbled_frames_get_one_line(files, name):
    """Cut anywhere in its header, or garbled, a frame is refused with one line (by the header
    reader, or by the decoder's own reason when the header is intact)."""
    frame = first_frame(files[name])
    scan = 64 if name == "rle" else frame.index(b"\xff\x90" if name.startswith("jpeg2000") else b"\xff\xda")
    for cut in sorted({0, 1, 2, 3, 5, 11, 20, scan // 2, scan - 1, scan} & set(range(scan + 1))):
        refused(with_frame(files[name], frame[:cut] or b"\0\0"))  # a scan without data decodes blank
    refused(with_frame(files[name], bytes(range(256)) * 8))
    try:  # cut in the middle of the scan: Pillow decodes what is there, libjpeg refuses
        load_image(with_frame(files[name], frame[:len(frame) // 2]))
    except ImageError as exc:
        assert "\n" not in str(exc) and len(str(exc)) <= 400


def test_unread_encapsulated_syntaxes_and_fragment_floods_are_refused(files, film, no_decoding):
    import pydicom
    from pydicom.encaps import encapsulate

    refused(make_dicom(film, transfer_syntax="1.2.840.10008.1.2.4.100", fragments=[b"\0" * 64]),
            "MPEG2", "does not read")
    plain = files["uncompressed-8bit"]
    at = plain.index(b"1.2.840.10008.1.2.1\0")  # a private transfer syntax UID of the same length
    refused(plain[:at] + b"1.2.840.113619.5.2\0\0" + plain[at + 20:], "unknown transfer syntax", "does not read")
    ds = pydicom.dcmread(io.BytesIO(files["jpeg-lossless-sv1"]))
    empty_item = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    ds.PixelData = encapsulate([first_frame(files["jpeg-lossless-sv1"])]) + empty_item * (codestream.MAX_FRAGMENTS + 1)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    refused(buf.getvalue(), f"over {codestream.MAX_FRAGMENTS} fragments")


# ---------------------------------------------------------------- the CLI, in a child process
def run_cli(path: Path) -> tuple[list[dict], float, str]:
    """``python -m pneumo_core predict --json PATH`` (a file or a folder) in a child process: (its
    records, its peak RSS in MB, its stderr). The child may map at most 4 GiB (a normal run needs
    under 1.5), so that a regression fails the memory assertion instead of taking the machine down."""
    def cap_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    env = {k: v for k, v in os.environ.items() if k != "PNEUMO_DEBUG"}
    out_path, err_path = path.parent / f"{path.name}.out", path.parent / f"{path.name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        child = subprocess.Popen([sys.executable, "-m", "pneumo_core", "predict", "--json", str(path)], cwd=ROOT,
                                 env=env, stdout=out, stderr=err, preexec_fn=cap_address_space)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest of every child's
        child.returncode = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text(errors="replace")
    assert child.returncode == 0, stderr[-2000:]
    return json.loads(out_path.read_text()), usage.ru_maxrss / 1024, stderr


@pytest.fixture(scope="module")
def normal_peak_mb(files, tmp_path_factory) -> float:
    """Peak memory of the CLI scoring one normal film (JPEG 2000, as compressed films go the costliest)."""
    path = tmp_path_factory.mktemp("cli") / "normal.dcm"
    path.write_bytes(files["jpeg2000-lossless"])
    (record,), peak, _ = run_cli(path)
    assert record["error"] is None and record["label"] in ("NORMAL", "PNEUMONIA"), record
    return peak


def hostile_files(files: dict, name: str) -> dict[str, bytes]:
    """Every hostile variant of the film compressed as ``name`` (or uncompressed)."""
    data = files[name]
    if name == "uncompressed-12bit":
        import pydicom

        pixels = pydicom.dcmread(io.BytesIO(data)).PixelData
        return {"short": with_header(data, PixelData=pixels[:-200]),
                "long": with_header(data, PixelData=pixels + pixels[:4000]),
                "header-4000": with_header(data, Rows=4000, Columns=4000),
                "frames-100000": with_header(data, NumberOfFrames=100000)}
    out = {"header-4000": with_header(data, Rows=4000, Columns=4000),
           "frames-100000": with_header(data, NumberOfFrames=100000),
           "frames-5": with_header(data, NumberOfFrames=5)}
    if name == "rle":  # an RLE frame has no size of its own: the header claims 6000 x 6000 (36 MP, 72 MB)
        out["header-6000"] = with_header(data, Rows=6000, Columns=6000)
    else:
        out[f"frame-{HUGE}"] = with_frame_size(data, HUGE, HUGE)
    return out


@pytest.mark.parametrize("name", [*SYNTAXES, "uncompressed-12bit"])
def test_cli_refuses_every_hostile_file_with_bounded_memory(files, name, normal_peak_mb, tmp_path):
    """One CLI run over a folder of the hostile variants of one syntax: each gets its one-line
    error in the JSON, no traceback, and the run's peak memory stays near a normal film's."""
    hostile = hostile_files(files, name)
    folder = tmp_path / name
    folder.mkdir()
    for variant, data in hostile.items():
        (folder / f"{variant}.dcm").write_bytes(data)
    records, peak, stderr = run_cli(folder)
    assert sorted(Path(r["file"]).stem for r in records) == sorted(hostile)
    for record in records:
        error = record["error"]
        assert error and "\n" not in error and len(error) <= 400, record
        assert "refused before decoding" in error or "cut short" in error, record
    assert "Traceback" not in stderr and not any(secret in stderr + json.dumps(records) for secret in SECRETS)
    print(f"\n{name}: {len(records)} hostile files refused, peak {peak:.0f} MB (normal film {normal_peak_mb:.0f} MB)")
    assert peak - normal_peak_mb < MEMORY_MARGIN_MB, (name, peak, normal_peak_mb)
