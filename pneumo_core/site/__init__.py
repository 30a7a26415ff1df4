"""A site's own check of a model (no Streamlit, no TensorFlow): calibration, label-free shift, validation on reads."""
