"""Who may do what on a shared dashboard: roles from sign-in claims and settings, the access rules (no Streamlit)."""
