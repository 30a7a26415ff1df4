"""Pneumonia chest X-ray workbench: the Streamlit entry point, and only the frame.

Run with ``streamlit run app.py`` (settings in .streamlit/config.toml). Every run: on the Keras backend keep
TensorFlow's kernels across reruns, pick the page (``ui/navigation.py`` lists them), set the
browser tab from that page's own title and icon, show the disclaimer, run the page. For research
and teaching only; not a diagnostic device.
"""
import streamlit as st

from ui.access import sign_in_control
from ui.chrome import APP_TITLE, disclaimer
from ui.navigation import streamlit_pages
from ui.runtime import keep_kernels_between_reruns

keep_kernels_between_reruns()  # Keras backend only (a no-op without Keras): models are cached per process
page = st.navigation(streamlit_pages())
st.set_page_config(page_title=f"{page.title} | {APP_TITLE}", page_icon=page.icon, layout="wide")
disclaimer()
sign_in_control()  # only when sign-in is configured ([auth] in secrets.toml)
page.run()
