"""The result stored back to a PACS: one DICOM Secondary Capture per scored film.

Why a Secondary Capture and not a DICOM SR: every PACS viewer shows an SC beside the film, the
heatmap is a picture, and the "RESEARCH USE ONLY - NOT FOR DIAGNOSIS" banner is burned into the
pixels, so no viewer can display the score without it. An SR is machine-readable but most viewers
show it as bare text, and the CAD SR templates would present a research model as a detection
device. The score stays machine-readable in Image Comments.

What is copied from the scored film, and nothing else: the attributes a PACS needs to file the
result in the same patient and study (``FILING_KEYWORDS``). Birth date, sex, physicians and
institution stay empty or absent. The object marks itself derived and research-only (Image Type
DERIVED\\SECONDARY, Burned In Annotation YES, Series Description, Derivation Description) and points
at the scored instance (Source Image Sequence, Referenced Image Sequence).
"""
from __future__ import annotations

import datetime as _dt

import numpy as np

RESULT_SERIES_DESCRIPTION = "Pneumonia workbench result (research use)"
BANNER = "RESEARCH USE ONLY - NOT FOR DIAGNOSIS"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
RESULT_SERIES_NUMBER = 9901  # high, so viewers list the result after the acquired series
#: Patient identity and study identity, exactly what filing the result in the source's study needs.
FILING_KEYWORDS = ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "StudyInstanceUID",
                   "StudyDate", "StudyTime", "StudyID", "AccessionNumber")
#: What the result references: the scored instance.
SOURCE_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID")
# Type 2 attributes of the Secondary Capture Image IOD that must be present, and are left empty.
_EMPTY_TYPE2 = ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyDate", "StudyTime", "StudyID",
                "AccessionNumber", "PatientOrientation", "Laterality")


def short_id(uid: str) -> str:
    """A short, stable stand-in for a DICOM UID (``#`` and 8 hex digits of its SHA-256): what pages show and
    what a stored result burns in, never the UID itself."""
    import hashlib

    return "#" + hashlib.sha256(str(uid).encode()).hexdigest()[:8]


def filing_attributes(ds):
    """The few attributes of a retrieved instance that a result needs (``FILING_KEYWORDS`` and
    ``SOURCE_KEYWORDS``): a new pydicom Dataset, so the rest of the header can be dropped."""
    from pydicom.dataset import Dataset

    kept = Dataset()
    for keyword in FILING_KEYWORDS + SOURCE_KEYWORDS:
        if keyword in ds:
            kept[keyword] = ds[keyword]
    return kept


def _reference(filing):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = filing.SOPClassUID, filing.SOPInstanceUID
    return item


def result_image(pred, model_sha256: str | None = None) -> np.ndarray:
    """The film, its Grad-CAM overlay and the score (the study report page) under a red banner: RGB uint8."""
    import io

    from PIL import Image, ImageDraw

    from pneumo_core.review.report_image import draw_text, study_report_png

    # the burned-in name: a short hash of the SOP Instance UID (the last part of pred.file), never the UID
    page = study_report_png(pred.image, pred.heatmap, file_name="PACS film " + short_id(pred.file.rsplit("/", 1)[-1]),
                            p_pneumonia=pred.p_pneumonia, label=pred.label, threshold=pred.threshold,
                            model_name=pred.model, model_sha256=model_sha256, notes=pred.notes)
    page = np.asarray(Image.open(io.BytesIO(page)).convert("RGB"))
    banner = Image.new("RGB", (page.shape[1], 64), (180, 0, 0))
    draw_text(ImageDraw.Draw(banner), (page.shape[1] // 2, 32), BANNER, 1.1, (255, 255, 255), 3, anchor="mm")
    return np.ascontiguousarray(np.vstack([np.asarray(banner), page]))


def result_dataset(filing, pred, *, series_uid: str, instance_number: int, model_sha256: str | None = None):
    """A Secondary Capture of ``result_image(pred)`` filed in the scored film's study (``filing`` from
    :func:`filing_attributes`), in series ``series_uid``. ``pred`` must be scored with ``explain=True``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if pred.label is None or pred.heatmap is None or pred.image is None:
        raise ValueError("only a film scored with its heatmap (explain=True) has a result to store")
    pixels = result_image(pred, model_sha256)
    now = _dt.datetime.now()
    ds = Dataset()
    for keyword in _EMPTY_TYPE2:
        setattr(ds, keyword, "")
    for keyword in FILING_KEYWORDS:
        if keyword in filing:
            ds[keyword] = filing[keyword]
    ds.SOPClassUID, ds.SOPInstanceUID = SECONDARY_CAPTURE, generate_uid()
    ds.Modality, ds.ConversionType = "OT", "WSD"  # other; workstation capture
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, RESULT_SERIES_NUMBER, instance_number
    ds.SeriesDescription = RESULT_SERIES_DESCRIPTION
    ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.Manufacturer = "Pneumonia X-ray workbench (research and teaching software)"
    ds.SoftwareVersions = f"model {pred.model}" + (f" sha256 {model_sha256[:12]}" if model_sha256 else "")
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation, ds.LossyImageCompression = "YES", "00"
    ds.DerivationDescription = (f"Grad-CAM overlay and pneumonia score by the research model {pred.model}; "
                                "not a diagnosis; the heatmap is not a lesion outline")[:1024]
    ds.ImageComments = (f"RESEARCH USE ONLY. label={pred.label}; p_pneumonia={pred.p_pneumonia:.4f}; "
                        f"threshold={pred.threshold:.4f}; model={pred.model}")
    ds.SourceImageSequence = [_reference(filing)]  # derived from it
    ds.ReferencedImageSequence = [_reference(filing)]  # and about it
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128  # dicomweb-client writes the data set as it is: make it a Part 10 file
    return ds
