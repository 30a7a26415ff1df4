"""Your site: the model against this site's own reads (recorded on Analyse), drift by week, and a proposed site
threshold that an authorised user may adopt or revert."""
import streamlit as st

from ui.cache import get_reports
from ui.controls import model_picker
from ui.site_page import render_site_page

st.title("Your site")
st.caption("The model against the reads recorded on the Analyse page at this site: each reader's own class for each "
           "film and, when known, a reference standard. A research and teaching aid, not a validation for clinical "
           "use; every figure names the model version, the reads it rests on and the threshold. Export the reads with "
           "`python -m pneumo_core site reads export`.")
reps = get_reports()
variant = model_picker(reps)
if variant is not None:
    render_site_page(variant, reps[variant])
