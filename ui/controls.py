"""Controls shared by the pages: the model picker and the operating-point picker, with the
session state that keeps their values across pages.

Keys are per model and persist for the browser session, so every page uses the same model and
operating point.
"""
from __future__ import annotations

import streamlit as st

from pneumo_core.config import DEFAULT_VARIANT, SHIPPED_VARIANTS
from pneumo_core.evaluation import reports
from pneumo_core.review import decisions as review
from ui.site_threshold import SITE_PRESET, active_threshold, follow_adoption

CUSTOM = "custom (slider)"
PRESET_NAMES = {"0.5": "fixed 0.5 (no validation rule)"}  # how a preset key from training.json is shown
SAME_THRESHOLD = 5e-4  # a slider value this close to a preset's threshold selects that preset


def seed_state(key: str, value) -> None:
    """Give a widget its first value through session state (so callbacks may change it later)."""
    if key not in st.session_state:
        st.session_state[key] = value


def model_picker(reps: dict, key: str = "model", container=None) -> str | None:
    """Fine-tuned (default) or frozen, among the models whose file exists; None when there is none."""
    container = container or st.sidebar
    options = [v for v in SHIPPED_VARIANTS if reps[v].model_present]
    if not options:
        container.error("No shipped model found in models/. Train one with "
                        "`python -m pneumo_core train --variant finetuned --data DIR`.")
        return None
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)
        st.session_state[key] = DEFAULT_VARIANT if DEFAULT_VARIANT in options else options[0]
    choice = container.radio("Model", options, key=key, format_func=reports.display_name, persist_state="session",
                             help="The fine-tuned model is the default; the frozen one is the baseline.")
    for v in SHIPPED_VARIANTS:
        if v not in options:
            container.caption(f"{reports.display_name(v)}: not available yet (models/{v}.keras missing).")
    return choice


def _rates_caption(rep: reports.VariantReport, threshold: float, preset: dict | None) -> str:
    """Validation and test sensitivity/specificity at ``threshold``, from the saved scores."""
    lines = []
    val = rep.validation
    if val is not None and len(val) and val["label"].nunique() == 2:
        rates = review.rates_at(val["label"], val["p_pneumonia"], threshold)
        lines.append(f"validation (chose it): sensitivity {rates['sensitivity']:.1%}, "
                     f"specificity {rates['specificity']:.1%}")
    elif preset is not None and "val_sensitivity" in preset:  # not the site preset: no validation figures
        lines.append(f"validation (chose it): sensitivity {preset['val_sensitivity']:.1%}, "
                     f"specificity {preset['val_specificity']:.1%}")
    test = rep.test_predictions
    if test is not None and len(test):
        rates = review.rates_at(test["label"], test["p_pneumonia"], threshold)
        lines.append(f"test split ({rep.test_n} films): sensitivity {rates['sensitivity']:.1%}, "
                     f"specificity {rates['specificity']:.1%}")
    if not lines:
        return ""
    return (f"At {threshold:.3f}, " + "; ".join(lines) + ". The test films come from a later batch: "
            "expect figures nearer the test ones on new films.")


def operating_point_picker(rep: reports.VariantReport, container=None, show_title: bool = True) -> tuple[float, str]:
    """Preset operating points (chosen on validation data) and a threshold slider kept in sync.

    Returns (threshold, name of the operating point or "custom")."""
    container = container or st.sidebar
    presets = rep.operating_points
    preset_key, threshold_key = f"op_{rep.variant}", f"thr_{rep.variant}"
    default = next((n for n, o in presets.items() if abs(o["threshold"] - rep.threshold) < 1e-9), CUSTOM)
    site = active_threshold(rep.variant, float(rep.threshold))
    if site.adoption is not None:  # an adopted site threshold joins the presets and becomes the default
        presets = {**presets, SITE_PRESET: {"threshold": site.threshold}}
    seed_state(preset_key, SITE_PRESET if site.adoption is not None else default)
    seed_state(threshold_key, float(site.threshold))
    follow_adoption(rep.variant, site, preset_key, threshold_key, default)

    def on_preset():
        name = st.session_state[preset_key]
        if name in presets:
            st.session_state[threshold_key] = float(presets[name]["threshold"])

    def on_slider():
        threshold = st.session_state[threshold_key]
        current = st.session_state.get(preset_key)
        if current in presets and abs(presets[current]["threshold"] - threshold) < SAME_THRESHOLD:
            return
        st.session_state[preset_key] = next((n for n, o in presets.items()
                                             if abs(o["threshold"] - threshold) < SAME_THRESHOLD), CUSTOM)

    if show_title:
        container.markdown(f"**Operating point: {rep.name}**")
    container.selectbox("Preset (chosen on the validation split)", [*presets, CUSTOM], key=preset_key,
                        on_change=on_preset, persist_state="session", format_func=lambda n: PRESET_NAMES.get(n, n),
                        help="Thresholds picked on the patient-grouped validation split, never on the test set.")
    threshold = container.slider("Decision threshold on P(pneumonia)", 0.0, 1.0, step=0.001, format="%.3f",
                                 key=threshold_key, on_change=on_slider, persist_state="session",
                                 help="PNEUMONIA when P(pneumonia) >= threshold.")
    name = st.session_state.get(preset_key, CUSTOM)
    caption = _rates_caption(rep, threshold, presets.get(name))
    if caption:
        container.caption(caption)
    container.caption(site.note)
    return float(threshold), ("custom" if name == CUSTOM else PRESET_NAMES.get(name, name))
