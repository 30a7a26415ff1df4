"""The film viewer (ui/viewer.py) on one DICOM film for the browser test: ``PNEUMO_VIEWER_DICOM``
names the file, ``PNEUMO_VIEWER_HEATMAP`` an .npy Grad-CAM heatmap computed by the test with the
shipped model (so the server needs no TensorFlow)."""
import os
from pathlib import Path

import numpy as np
import streamlit as st

from pneumo_core.errors import ImageError
from pneumo_core.imaging.decode import load_image
from ui.viewer import show_film

st.title("Film viewer (test harness)")
st.caption("Research and teaching tool, not a diagnostic device.")
try:
    loaded = load_image(Path(os.environ["PNEUMO_VIEWER_DICOM"]).read_bytes(), "film.dcm")
except (KeyError, OSError, ImageError) as exc:
    st.error(f"no film to show: {exc}")
    st.stop()
heatmap_path = os.environ.get("PNEUMO_VIEWER_HEATMAP")
heatmap = np.load(heatmap_path) if heatmap_path else None
show_film(loaded, heatmap, key="viewer", title="12-bit DX film, shipped fine-tuned model")
st.toggle("A widget unrelated to the viewer", key="unrelated")  # a rerun that leaves the picture as it was
