"""About: the model card, how to retrain and re-evaluate, and the tool's limits."""
import streamlit as st

from pneumo_core.config import MODELS_DIR
from ui import widgets as w

w.page_setup("About / model card", ":material/info:")
st.title("About this workbench")
st.markdown("To retrain: `python -m pneumo_core train --variant finetuned --data DIR` "
            "(details under *Retrain and evaluate* below).")
st.header("Model card", divider="gray")
w.render_markdown_file(MODELS_DIR / "MODEL_CARD.md", "The model card (models/MODEL_CARD.md) has not been written yet.")
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
st.subheader("Limits")
st.markdown("""
- Trained and tested on paediatric films from one centre: performance on adults, other scanners or other
  hospitals is unknown.
- The label depends on the chosen threshold; P(pneumonia) is a score, not a calibrated risk.
- The heatmap shows what drove the score, not where disease is.
- Images that do not look like the training films are refused as "not a chest X-ray"; this check is
  statistical and can be wrong both ways.
""")
