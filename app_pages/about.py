"""About: the tool's limits first, then the model card, then how to retrain and re-evaluate."""
import streamlit as st

from pneumo_core.config import MODELS_DIR
from pneumo_core.review import decisions as review
from ui.cache import get_reports
from ui.chrome import render_markdown_file

st.title("About this workbench")
st.subheader("Limits: read these first")
st.markdown(f"""
- A research and teaching tool, **not a diagnostic device**: nothing it shows may guide the care of a patient.
- Trained and tested on paediatric films (ages 1-5) from one centre: performance on adults, other scanners or
  other hospitals is unknown. {review.shift_summary(get_reports())}
- The label depends on the chosen threshold; P(pneumonia) is a score, not a calibrated risk.
- The heatmap shows what drove the score, not where disease is, and is scaled to each image.
- Images that do not look like the training films are refused as "not a chest X-ray"; this check is
  statistical and can be wrong both ways.
""")
st.markdown("The model card below gives the data, the training and selection protocol, every result on the "
            "test split with its confidence interval, and every decision taken after seeing a test result. "
            "To retrain: `python -m pneumo_core train --variant finetuned --data DIR` "
            "(details under *Retrain and evaluate* at the end).")
st.header("Model card", divider="gray")
render_markdown_file(MODELS_DIR / "MODEL_CARD.md", "The model card (models/MODEL_CARD.md) has not been written yet.")
st.header("Retrain and evaluate", divider="gray")
st.markdown("""
Train a model on a Kermany-layout dataset folder (`DIR/train/{NORMAL,PNEUMONIA}`); a validation split is
carved from `train/` by patient and the decision threshold is chosen on it:

```bash
python -m pneumo_core train --variant finetuned --data DIR   # or --variant frozen
```

Evaluate on the official test split and write the reports this dashboard reads
(`models/reports/<variant>/metrics.json`, `test_predictions.csv`, `roc_curve.csv`):

```bash
python -m pneumo_core evaluate --model finetuned --data DIR/test --write-report models/reports/finetuned
```

Score images from the command line:

```bash
python -m pneumo_core predict --model finetuned path/to/image.png
```

Launch this dashboard:

```bash
streamlit run app.py
```
""")
