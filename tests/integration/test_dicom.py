"""Real DICOM in (issue 14): every common compressed transfer syntax, DICOM header rules, window/level.

The matrix: test-split films made into 12-bit DX DICOMs here (MONOCHROME2 and MONOCHROME1), then
compressed by Debian's DCMTK and GDCM tools, decoded by the loader and scored by the shipped
fine-tuned model. Lossless syntaxes must give the very same values as the uncompressed file;
every file must get the clean film's label (>= 95 % over the matrix). Every pydicom sample file
either decodes or gets a specific one-line reason.
"""
from __future__ import annotations

import io
import json
import logging
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from pneumo_core.errors import ImageError
from pneumo_core.imaging.decode import load_image
from pneumo_core.imaging.dicom import MAX_INFLATED_BYTES, TRANSFER_SYNTAXES
from pneumo_core.imaging.windowing import MAX_RAW_SIDE, WindowPreset, apply_window, window_presets, windowed
from tests.helpers.dicom_files import SECRETS, TOOLS, compress, dx_film, grey, make_dicom, missing_tools, to_12bit
from tests.helpers.support import require

POLARITIES = ("MONOCHROME2", "MONOCHROME1")



def refused(data: bytes, *fragments: str) -> str:
    with pytest.raises(ImageError) as info:
        load_image(data)
    msg = str(info.value)
    assert msg and "\n" not in msg and len(msg) <= 400, msg
    assert all(f.lower() in msg.lower() for f in fragments), f"{msg!r} lacks one of {fragments}"
    return msg


@pytest.fixture(scope="module")
def films(data_root) -> list[Path]:
    """Two NORMAL and two PNEUMONIA test films (fixed picks)."""
    picked = []
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((data_root / "test" / cls).glob("*.jpeg"))
        picked += [files[0], files[len(files) // 2]]
    return picked


@pytest.fixture(scope="module")
def film(films) -> np.ndarray:
    return grey(films[0])


def test_every_listed_syntax_has_its_decoder_installed():
    """pydicom 3 finds the pinned pylibjpeg plugins (requirements.txt) for the syntaxes Pillow cannot read."""
    from pydicom.pixels import get_decoder

    for uid in TRANSFER_SYNTAXES:
        assert get_decoder(uid).is_available, uid
    for uid in ("1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
                "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.5"):
        assert "pylibjpeg" in get_decoder(uid).available_plugins, uid


# ---------------------------------------------------------------- the compression matrix
@pytest.fixture(scope="module")
def matrix(films, shipped_predictor, tmp_path_factory):
    """Every film x polarity x syntax: decoded, compared with the uncompressed file, scored."""
    missing = missing_tools()
    require(not missing, f"DICOM tools missing: {', '.join(missing)} (apt-get install dcmtk libgdcm-tools)")
    tmp = tmp_path_factory.mktemp("matrix")
    rows, started = [], time.perf_counter()
    for i, path in enumerate(films):
        clean = shipped_predictor.predict(path)
        assert clean.error is None, clean.error
        for photometric in POLARITIES:
            src = tmp / f"film{i}-{photometric}.dcm"
            src.write_bytes(dx_film(grey(path), photometric))
            reference = load_image(src.read_bytes())
            for syntax in ("uncompressed", *TOOLS):
                out = src if syntax == "uncompressed" else compress(src, syntax, tmp / f"{src.stem}-{syntax}.dcm")
                data = out.read_bytes()
                loaded = load_image(data)
                pred = shipped_predictor.predict(loaded, name=out.name)
                rows.append({"film": path.name, "photometric": photometric, "syntax": syntax, "data": data,
                             "loaded": loaded, "reference": reference, "clean_label": clean.label,
                             "label": pred.label, "error": pred.error, "grey": grey(path)})
    print(f"\nmatrix: {len(rows)} files decoded and scored in {time.perf_counter() - started:.1f} s")
    return rows


def test_the_tools_wrote_the_syntax_they_claim(matrix):
    import pydicom

    for row in matrix:
        if row["syntax"] != "uncompressed":
            ts = pydicom.dcmread(io.BytesIO(row["data"]), stop_before_pixels=True).file_meta.TransferSyntaxUID
            assert ts == TOOLS[row["syntax"]][1] and ts in TRANSFER_SYNTAXES, (row["syntax"], ts.name)
            assert row["loaded"].dicom["transfer_syntax_uid"] == ts


def test_uncompressed_12bit_film_shows_the_original_film(matrix):
    for row in matrix:
        if row["syntax"] == "uncompressed":
            np.testing.assert_array_equal(row["loaded"].pixels, row["grey"])
            assert row["loaded"].bit_depth == 12
            np.testing.assert_array_equal(row["loaded"].raw, row["reference"].raw)


def test_lossless_syntaxes_are_pixel_identical(matrix):
    checked = set()
    for row in matrix:
        if row["syntax"] == "uncompressed" or not TOOLS[row["syntax"]][2]:
            continue
        loaded, reference = row["loaded"], row["reference"]
        np.testing.assert_array_equal(loaded.raw, reference.raw, err_msg=f"{row['syntax']} {row['photometric']}")
        np.testing.assert_array_equal(loaded.pixels, reference.pixels)
        assert loaded.raw_inverted == (row["photometric"] == "MONOCHROME1")
        checked.add(row["syntax"])
    assert checked == {name for name, (_, _, lossless) in TOOLS.items() if lossless}


def test_lossy_syntaxes_stay_close(matrix):
    for row in matrix:
        if row["syntax"] in ("jpeg-extended-12bit", "jpeg-ls-near-lossless"):
            if row["syntax"] == "jpeg-ls-near-lossless":
                error = np.abs(row["loaded"].raw.astype(np.int64) - row["reference"].raw.astype(np.int64))
                assert error.max() <= 2  # dcmcjpls' default maximum deviation
            # dcmcjpeg shifts MONOCHROME1 values to start at 0 and moves the window with them, so
            # compare what is shown
            shown = np.abs(row["loaded"].pixels.astype(np.int64) - row["reference"].pixels)
            assert shown.mean() < 0.5 and shown.max() <= 8, (row["syntax"], shown.mean(), shown.max())
            assert row["loaded"].dicom["lossy_compression"]


def test_every_file_keeps_the_clean_films_label(matrix):
    agree = [row["label"] == row["clean_label"] for row in matrix]
    by_syntax = {}
    for row, same in zip(matrix, agree):
        by_syntax.setdefault(row["syntax"], []).append(same)
    print("\nlabel agreement with the clean film: " + ", ".join(f"{k} {np.mean(v):.0%}" for k, v in by_syntax.items())
          + f"; overall {np.mean(agree):.1%} of {len(agree)}")
    assert all(row["error"] is None for row in matrix), [row["error"] for row in matrix if row["error"]]
    assert np.mean(agree) >= 0.95


# ---------------------------------------------------------------- pydicom's sample files
def sample_files() -> list[Path]:
    from pydicom.data import get_testdata_files

    return sorted(Path(f) for f in get_testdata_files() if Path(f).is_file())


# The decoder's own reason, the size rules, or what the file is: anything but a generic fallback.
SPECIFIC = ("the decoder reports", "declares", "megapixel", "px a side", "no pixel data", "no image size",
            "unreadable image size", "plain text", "gzip", "not a recognised image format",
            "refused before decoding")


def test_every_pydicom_sample_file_decodes_or_gets_a_specific_reason():
    files = sample_files()
    assert len(files) > 100
    decoded, n_refused, refused_for = 0, 0, {}
    for path in files:
        try:
            load_image(path.read_bytes(), path.name)
            decoded += 1
        except ImageError as exc:  # anything else fails the test: no unhandled exception
            msg = str(exc)
            assert "\n" not in msg and len(msg) <= 400 and not msg.rstrip().endswith(":"), (path.name, msg)
            assert "exceptions were raised" not in msg and any(s in msg for s in SPECIFIC), (path.name, msg)
            n_refused, refused_for[path.name] = n_refused + 1, msg
    print(f"\npydicom samples: {decoded} decoded, {n_refused} refused with a reason, of {len(files)}")
    assert decoded >= 45
    # A non-conformant JPEG (pydicom's README: GDCM reports invalid SOS parameters; JPGExtended.dcm is its
    # fixed copy) and a JPEG 2000 with four bytes overwritten: refused with the decoder's reason.
    assert "JPEG Extended" in refused_for["JPEG-lossy.dcm"] and "misplaced marker" in refused_for["JPEG-lossy.dcm"]
    assert "JPEG 2000" in refused_for["JPEG2000-embedded-sequence-delimiter.dcm"]
    assert "8130 bytes" in refused_for["MR_truncated.dcm"] and "cut short" in refused_for["MR_truncated.dcm"]


def _sample(name: str):
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file(name))
    return load_image(path.read_bytes(), path.name)


@pytest.mark.parametrize("name", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_lossless_pydicom_samples_equal_their_uncompressed_original(name):
    original, copy = _sample("MR_small.dcm"), _sample(name)
    np.testing.assert_array_equal(copy.raw, original.raw)
    np.testing.assert_array_equal(copy.pixels, original.pixels)


def test_named_pydicom_samples_decode():
    import pydicom
    from pydicom.data import get_testdata_file

    extended = _sample("JPGExtended.dcm")  # 12-bit JPEG Extended: Pillow cannot, pylibjpeg-libjpeg does
    assert extended.dicom["bits_stored"] == 12 and extended.raw.max() > 255
    ds = pydicom.dcmread(get_testdata_file("JPGExtended.dcm"))
    np.testing.assert_array_equal(extended.raw, ds.pixel_array)
    rgb = _sample("SC_rgb_jpeg_gdcm.dcm")
    assert rgb.pixels.shape == (100, 100, 3)
    np.testing.assert_array_equal(rgb.pixels, _sample("SC_rgb_rle.dcm").pixels)
    deflated = _sample("image_dfl.dcm")
    assert deflated.dicom["transfer_syntax"] == "Deflated Explicit VR Little Endian"
    assert any("inflated" in n for n in deflated.notes)


# ---------------------------------------------------------------- deflate
def test_deflated_film_decodes_like_the_uncompressed_one(film):
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    plain = load_image(dx_film(film))
    deflated = load_image(make_deflated(dx_film(film)))
    np.testing.assert_array_equal(deflated.raw, plain.raw)
    np.testing.assert_array_equal(deflated.pixels, film)
    assert deflated.dicom["transfer_syntax_uid"] == DeflatedExplicitVRLittleEndian


def make_deflated(data: bytes, body: bytes | None = None) -> bytes:
    """``data`` rewritten as Deflated Explicit VR Little Endian by pydicom; ``body`` replaces the
    deflated data set after the File Meta group."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    if body is None:
        return buf.getvalue()
    return buf.getvalue()[:meta_end(ds)] + body


def meta_end(ds) -> int:
    """Where the data set starts in a file of ``ds``: preamble, ``DICM`` and the File Meta group."""
    from pydicom.filewriter import write_file_meta_info

    meta = io.BytesIO()
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    return 132 + len(meta.getvalue())


def test_deflate_bomb_is_refused_with_memory_bounded(film):
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(2**20)
    body = b"".join(squeeze.compress(zeros) for _ in range(MAX_INFLATED_BYTES // 2**20 + 8)) + squeeze.flush()
    bomb = make_deflated(dx_film(film), body)
    assert len(bomb) < 1_000_000
    started = time.perf_counter()
    refused(bomb, "inflates to over", "decompression bomb")
    assert time.perf_counter() - started < 5


def test_corrupt_and_cut_deflate_streams_are_refused(film):
    import pydicom

    good = make_deflated(dx_film(film))
    end = meta_end(pydicom.dcmread(io.BytesIO(good), stop_before_pixels=True))
    refused(good[: end + (len(good) - end) // 2], "deflate", "cut short")
    refused(good[:end] + b"\xff" * 64 + good[end + 64:], "deflate", "corrupt")


# ---------------------------------------------------------------- header rules
@pytest.mark.parametrize("view", ["LATERAL", "LL", "RL", "LLD", "RLD", "RAO", "LPO"])
def test_non_frontal_views_are_refused(film, view):
    msg = refused(dx_film(film, ViewPosition=view), "frontal", view)
    assert not any(s in msg for s in SECRETS)


@pytest.mark.parametrize("view", ["PA", "AP", ""])
def test_frontal_views_load_without_a_note(film, view):
    loaded = load_image(dx_film(film, ViewPosition=view))
    assert loaded.dicom["view_position"] == (view or None)
    assert not any("View" in n for n in loaded.notes)


def test_other_modalities_and_body_parts_are_noted_and_still_scored(film, shipped_predictor):
    pred = shipped_predictor.predict(dx_film(film, Modality="CT", BodyPartExamined="ABDOMEN"))
    assert pred.label in ("NORMAL", "PNEUMONIA"), pred.error
    assert any("Modality CT" in n for n in pred.notes) and any("ABDOMEN" in n for n in pred.notes)
    for modality in ("CR", "DX"):
        assert not any("Modality" in n for n in load_image(dx_film(film, Modality=modality)).notes)


@pytest.mark.parametrize("photometric, shape, stored_inverted, note", [
    ("MONOCHROME2", "INVERSE", True, "Presentation LUT Shape INVERSE: inverted"),
    ("MONOCHROME1", "INVERSE", True, "MONOCHROME1 inverted"),  # the standard's pairing: one inversion, not two
    ("MONOCHROME1", "IDENTITY", True, "contradicts MONOCHROME1"),
    ("MONOCHROME2", "IDENTITY", False, None),
])
def test_presentation_lut_shape(film, photometric, shape, stored_inverted, note):
    stored = to_12bit(film)
    stored = 4095 - stored if stored_inverted else stored
    loaded = load_image(make_dicom(stored, photometric=photometric, bits_stored=12, window=(2048.0, 4096.0),
                                   PresentationLUTShape=shape))
    np.testing.assert_array_equal(loaded.pixels, film)  # bone white in every case
    assert loaded.raw_inverted == stored_inverted and loaded.dicom["presentation_lut_shape"] == shape
    if note is None:
        assert not any("invert" in n for n in loaded.notes), loaded.notes
    else:
        assert any(note in n for n in loaded.notes), loaded.notes


def test_pixel_spacing_is_reported_patient_plane_first(film):
    both = load_image(dx_film(film, PixelSpacing=[0.15, 0.16], ImagerPixelSpacing=[0.139, 0.139]))
    assert both.dicom["pixel_spacing_mm"] == [0.15, 0.16] and both.dicom["pixel_spacing_source"] == "PixelSpacing"
    detector = load_image(dx_film(film, PixelSpacing=None, ImagerPixelSpacing=[0.139, 0.139]))
    assert detector.dicom["pixel_spacing_mm"] == [0.139, 0.139]
    assert detector.dicom["pixel_spacing_source"] == "ImagerPixelSpacing"
    assert load_image(dx_film(film, PixelSpacing=None)).dicom["pixel_spacing_mm"] is None


def test_no_identifier_reaches_notes_errors_metadata_cli_or_logs(film, tmp_path, caplog, capfd):
    from pneumo_core.cli import main

    caplog.set_level(logging.DEBUG)
    cases = [dx_film(film), dx_film(film, "MONOCHROME1", WindowCenterWidthExplanation="DOE^JANE"),
             make_deflated(dx_film(film)), dx_film(film, ViewPosition="LATERAL"), dx_film(film, Modality="CT")]
    seen = []
    for i, data in enumerate(cases):
        (tmp_path / f"case{i}.dcm").write_bytes(data)
        try:
            loaded = load_image(data)
            seen += loaded.notes + [json.dumps(loaded.dicom), repr(loaded)]
        except ImageError as exc:
            seen.append(str(exc))
    capfd.readouterr()
    assert main(["predict", "--json", str(tmp_path)]) == 0  # the CLI in this process: no second TensorFlow start
    out, err = capfd.readouterr()
    assert len(json.loads(out)) == len(cases), err
    text = " ".join(seen) + out + err + caplog.text
    for secret in SECRETS:
        assert secret not in text, secret


# ---------------------------------------------------------------- window/level
def test_apply_window_follows_the_standard():
    x = np.arange(-100, 4200, dtype=np.float64)
    linear = apply_window(x, 2048, 4096)
    want = np.clip(np.round(((x - 2047.5) / 4095 + 0.5) * 255), 0, 255)
    np.testing.assert_array_equal(linear, want)
    exact = apply_window(x, 1000, 500, "LINEAR_EXACT")
    np.testing.assert_array_equal(exact, np.clip(np.round(((x - 1000) / 500 + 0.5) * 255), 0, 255))
    sigmoid = apply_window(x, 1000, 500, "sigmoid")
    assert np.abs(sigmoid - 255 / (1 + np.exp(-4 * (x - 1000) / 500))).max() <= 0.5
    np.testing.assert_array_equal(apply_window(x, 2048, 4096, invert=True), 255 - linear)
    np.testing.assert_array_equal(apply_window(x, 100, 1), np.where(x > 99.5, 255, 0))
    for bad in [dict(width=0.5), dict(width=0, function="SIGMOID"), dict(function="GAMMA"), dict(width=np.nan)]:
        with pytest.raises(ValueError):
            apply_window(x, **{"center": 100, "width": 10, **bad})


def test_raw_values_are_kept_exactly_and_capped_for_big_films(film):
    loaded = load_image(make_dicom(to_12bit(film), bits_stored=12, slope=2.0, intercept=-1024.0))
    np.testing.assert_array_equal(loaded.raw, to_12bit(film).astype(np.int64) * 2 - 1024)
    assert loaded.raw.dtype == np.int16
    big = np.tile(to_12bit(film), (14, 12))  # 3136 x 2688, a detector-sized film
    large = load_image(make_dicom(big, bits_stored=12, window=(2048.0, 4096.0)))
    assert max(large.raw.shape) == MAX_RAW_SIDE and large.raw.nbytes <= MAX_RAW_SIDE**2 * 4
    assert large.pixels.shape == big.shape
    assert load_image(make_dicom(film)).raw.dtype == np.uint8  # 8-bit DICOM: kept as is
    assert load_image(make_dicom(np.stack([film] * 3, -1), photometric="RGB")).raw is None


def test_presets_start_with_the_files_window_and_match_the_loaded_film(film):
    loaded = load_image(dx_film(film, WindowCenter=[2048.0, 1000.0], WindowWidth=[4096.0, 1200.0]))
    presets = window_presets(loaded)
    names = [p.name for p in presets]
    assert names[:2] == ["file window 1", "file window 2"] and presets[0].source == "file"
    assert {"full range (min-max)", "robust range (0.5-99.5 %)", "lung", "mediastinum / soft tissue",
            "bone"} <= set(names)
    np.testing.assert_array_equal(windowed(loaded, presets[0]), loaded.pixels)
    full = windowed(loaded, next(p for p in presets if p.name == "full range (min-max)"))
    assert full.min() == 0 and full.max() == 255


@pytest.mark.parametrize("photometric", POLARITIES)
def test_chest_presets_stretch_the_part_of_the_film_they_name(films, photometric):
    for path in films[:2]:
        g = grey(path)
        loaded = load_image(dx_film(g, photometric))
        by_name = {p.name: p for p in window_presets(loaded)}
        full = windowed(loaded, by_name["full range (min-max)"]).astype(float)
        assert np.corrcoef(full.ravel(), g.ravel())[0, 1] > 0.99  # bone white for both polarities
        dark, bright = full < 90, full > 170
        lung = windowed(loaded, by_name["lung"]).astype(float)
        soft = windowed(loaded, by_name["mediastinum / soft tissue"]).astype(float)
        assert lung[dark].std() > 1.4 * full[dark].std()
        assert soft[bright].std() > 1.4 * full[bright].std()
        assert np.corrcoef(lung.ravel(), g.ravel())[0, 1] > 0.8 and np.corrcoef(soft.ravel(), g.ravel())[0, 1] > 0.8


def test_hounsfield_files_get_ct_windows(film):
    hu = load_image(make_dicom(to_12bit(film), bits_stored=12, slope=1.0, intercept=-1024.0, Modality="CT"))
    lung = next(p for p in window_presets(hu) if p.name == "lung")
    assert lung == WindowPreset("lung", -600.0, 1500.0, "LINEAR", "HU")


def test_no_presets_without_values_to_window(film):
    assert window_presets(load_image(make_dicom(np.stack([film] * 3, -1), photometric="RGB"))) == []
    with pytest.raises(ValueError, match="no values to window"):
        windowed(load_image(make_dicom(np.stack([film] * 3, -1), photometric="RGB")), WindowPreset("x", 1, 2))
