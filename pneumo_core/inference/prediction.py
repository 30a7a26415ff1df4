"""The result of scoring one film, immutable, and the display copies it may carry.

A :class:`Prediction` is frozen: a caller that wants another file name or more notes makes a copy
(``dataclasses.replace(pred, notes=...)``). When asked (``explain=True`` or ``keep_image=True``) it
carries the film as a page shows it, :attr:`Prediction.film`: a :class:`LoadedImage` shrunk to the
requested display size (never enlarged), with its 12/16-bit values for re-windowing shrunk to the same
shape; and with Grad-CAM, :attr:`Prediction.heatmap` at exactly that shape, computed once from the
7x7 map (not resized from a full-size copy).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from pneumo_core.imaging.core import LoadedImage
from pneumo_core.inference.gradcam import normalise_heatmap


@dataclass(frozen=True)
class Prediction:
    """The result for one image: label and score, or the reason there is none (``error``)."""

    file: str
    label: str | None = None
    p_pneumonia: float | None = None
    threshold: float | None = None
    error: str | None = None
    is_chest_xray: bool | None = None
    ood_distance: float | None = None
    model: str | None = None
    notes: tuple[str, ...] = ()  # what was done to the pixels (any iterable is stored as a tuple)
    #: The display copy of the film (see the module docstring), or None.
    film: LoadedImage | None = field(default=None, repr=False, compare=False)
    #: Grad-CAM in [0, 1] (float16, read-only) at ``film``'s pixel shape, or None.
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "notes", tuple(self.notes))
        if self.heatmap is not None:
            heat = np.asarray(self.heatmap).view()
            heat.flags.writeable = False
            object.__setattr__(self, "heatmap", heat)

    @property
    def image(self) -> np.ndarray | None:
        """The display copy as HxWx3 uint8 RGB (a new array each call), or None."""
        return self.film.rgb() if self.film is not None else None

    def to_json(self) -> dict:
        """The fields of the CLI's JSON output (a stable contract), without the images."""
        return {
            "file": self.file, "label": self.label, "p_pneumonia": self.p_pneumonia, "threshold": self.threshold,
            "is_chest_xray": self.is_chest_xray, "ood_distance": self.ood_distance, "model": self.model,
            "error": self.error, "notes": list(self.notes),
        }


def display_shape(shape, display_size: int | None) -> tuple[int, int]:
    """(height, width) of an image of ``shape`` with its longest side at most ``display_size`` (aspect
    kept, never enlarged; None: as it is)."""
    height, width = int(shape[0]), int(shape[1])
    if display_size is None or max(height, width) <= display_size:
        return height, width
    scale = display_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _shrink(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``values`` area-averaged to ``shape``."""
    from pneumo_core.imaging.resample import shrink

    return shrink(values, shape)


def display_copy(loaded: LoadedImage, display_size: int | None) -> LoadedImage:
    """``loaded`` as a page shows it: pixels at :func:`display_shape`, and the values kept for re-windowing
    (``raw``) at that same shape when they are larger, so a windowed picture and the heatmap line up. The
    header facts (``dicom``, ``raw_inverted``, notes) are those of the film. Arrays are read-only."""
    shape = display_shape(loaded.pixels.shape, display_size)
    pixels = loaded.pixels if loaded.pixels.shape[:2] == shape else _shrink(loaded.pixels, shape)
    raw = loaded.raw
    if raw is not None and raw.shape[:2] != shape and max(raw.shape[:2]) >= max(shape):
        raw = _shrink(raw, shape)
    copy = replace(loaded, pixels=pixels, raw=raw, notes=list(loaded.notes))
    for array in (copy.pixels, copy.raw):
        if array is not None and array is not loaded.pixels and array is not loaded.raw:
            array.flags.writeable = False
    return copy


def heatmap_at(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A raw 7x7 Grad-CAM map straight to a [0, 1] float16 heatmap of ``shape`` (height, width)."""
    return normalise_heatmap(cam, shape[:2]).astype(np.float16)
