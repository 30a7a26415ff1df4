"""Streamlit UI helpers for the pneumonia X-ray workbench (shared by app.py and app_pages/)."""
