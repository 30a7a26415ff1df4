"""Why results differ: the same two recipes under three evaluation protocols, beside the reference
write-up's figures, and the pre-registered site-adaptation study. Every number is read from
models/experiments/protocols/ (or PNEUMO_PROTOCOLS_DIR), models/experiments/site_adaptation/ and
models/reports/; a missing report is named as pending. Reads no dataset film."""
import json
from pathlib import Path

import streamlit as st

from pneumo_core.config import PROJECT_DIR
from pneumo_core.datasets.protocols import PROTOCOLS
from pneumo_core.evaluation import protocol_results as results
from pneumo_core.evaluation.protocol_markdown import figures_markdown, wise_ft_markdown
from pneumo_core.evaluation.protocol_results import PROTOCOL_NAMES, VARIANT_NAMES
from ui.chrome import plot
from ui.protocol_figures import adaptation_table, protocol_chart

BASES = {"each protocol's validation-chosen threshold": "at_threshold", "threshold 0.5": "at_0.5"}
METRICS = ("accuracy", "AUC", "sensitivity", "specificity")
ADAPTATION_DIR = PROJECT_DIR / "models" / "experiments" / "site_adaptation"

st.title("Why results differ: one recipe, three protocols")


def shown_path(folder: str | Path) -> str:
    """A report folder relative to the checkout when it lies inside it (no absolute home paths shown)."""
    folder = Path(folder)
    try:
        return str(folder.resolve().relative_to(PROJECT_DIR.resolve()))
    except ValueError:
        return folder.name if folder.parent == folder else f".../{folder.parent.name}/{folder.name}"


def percent(value) -> str:
    """A share as a percentage, or "pending" for a missing (None or NaN) one."""
    return "pending" if value is None or value != value else f"{value:.1%}"


runs = results.load_runs()
references = results.reference_table()
shipped = results.shipped_table()
writeup = references.set_index("variant")

st.markdown(
    f"The reference write-up reports **{writeup.accuracy['finetuned']:.2%}** accuracy (AUC "
    f"{writeup.auc['finetuned']:.4f}) for its fine-tuned MobileNetV2 and {writeup.accuracy['frozen']:.2%} "
    f"(AUC {writeup.auc['frozen']:.4f}) for the frozen one, on a random 10 % of all films drawn **image by "
    f"image** ({results.WRITEUP_TEST_FILMS} test films). The figures on the other pages use the **official split** "
    "instead, whose test films are a later batch of other children. To see how much of the difference is the "
    "protocol rather than the model, this project trained its two recipes (the shipped frozen one and one "
    "fine-tuned run's, same seeds) under three protocols, each with its own validation part for early "
    "stopping and the threshold, and read each test part once.")
if not shipped.empty:
    ship = shipped.set_index("variant")
    st.markdown("Shipped models on the official split (models/reports): " + "; ".join(
        f"{row.model} {row.accuracy:.1%} [{row.accuracy_lo:.1%}, {row.accuracy_hi:.1%}], AUC {row.auc:.3f}, "
        f"threshold {row.threshold:.3f}, {row.test_films} films" for row in ship.itertuples()) + ".")
else:
    st.info("The shipped models' official-split reports (models/reports/) are not there yet.")

# ---------------------------------------------------------------------------- the three protocols
st.subheader("The three protocols and what each lets leak")
leak = results.leakage_table(runs).set_index("protocol")
for column, protocol in zip(st.columns(len(PROTOCOLS)), PROTOCOLS):
    with column:
        row = leak.loc[protocol]
        st.markdown(f"**{PROTOCOL_NAMES[protocol].capitalize()}**: {results.describe(protocol)}.")
        st.markdown(f"*Lets into the test part:* {row.leaks}.")
        if not row.known:
            st.info("No run of this protocol has been evaluated yet, so its split counts are not shown.")
            continue
        st.markdown(
            f"- test patients with films in training: **{row.test_patients_in_train:.0f} of "
            f"{row.test_patients:.0f}** ({row.test_films_of_those:.0f} of {row.test_films:.0f} test films)\n"
            f"- films from the later batch (official test/): {percent(row.later_batch_share_test)} of test, "
            f"{percent(row.later_batch_share_train)} of training\n"
            f"- split seed {row.split_seed:.0f}")

# ---------------------------------------------------------------------------- chart and table
st.subheader("The six figures beside the write-up's two")
left, right = st.columns(2)
basis = left.radio("Metrics at", list(BASES), horizontal=True, key="protocol_basis")
metric = right.selectbox("Metric in the chart", METRICS, key="protocol_metric")
which = BASES[basis]
table = results.overview_table(runs, which)
other_basis = next(b for b in BASES if b != basis)
rules = sorted({r for r in table.threshold_rule if r})
seeds = sorted({f"{s:.0f}" for s in leak.split_seed.dropna()})
commands = {(p, v): run.training.get("command", "") for (p, v), run in runs.items() if run.training}

plot(protocol_chart(table, references, metric, f"at {basis}"), key="protocol_chart")
st.caption(
    "**Models**: the frozen recipe (ImageNet MobileNetV2, head only, seed 42) and the fine-tuned recipe "
    "(fine-tuned member 1's: seed 1, head seed 42, 14 epochs), each trained afresh on the protocol's training "
    "part; the official runs are the existing shipped frozen model and member 1, re-thresholded. "
    f"**Data**: each protocol's test part of the Kermany et al. films (split seed {', '.join(seeds) or 'pending'};"
    " the number of test films is in the table and on hover). **Threshold**: "
    + (f"the rule recorded in each report ({'; '.join(rules)}), each applied to that protocol's own validation "
       "part; the value is in the table" if which == "at_threshold" and rules
       else "0.5 for every model" if which == "at_0.5" else "pending")
    + ". **Intervals**: 95 % bootstrap over patients (1,000 resamples). The write-up's points carry no interval "
      "and no threshold because it reported none.")

st.markdown(f"**At {basis}** (accuracy, sensitivity and specificity in %):")
st.markdown(figures_markdown(table))
with st.expander(f"The same six at {other_basis}"):
    st.markdown(figures_markdown(results.overview_table(runs, BASES[other_basis]), references=False))
for row in table[~table.evaluated].itertuples():
    st.info(f"{PROTOCOL_NAMES[row.protocol].capitalize()}, {VARIANT_NAMES[row.variant]}: this run has not "
            f"been evaluated yet (no report in {shown_path(row.folder)}). Its figures appear here once "
            "scripts/protocol_runs.py has written it.", icon=":material/hourglass_empty:")

st.subheader("Pre-registered robust fine-tuning (WiSE-FT)")
st.markdown(wise_ft_markdown(table, results.load_wise_ft(), shipped, which))

# ---------------------------------------------------------------------------- label-free site adaptation
st.subheader("Pre-registered label-free site adaptation")
shipped_report = PROJECT_DIR / "models" / "reports" / "finetuned" / "metrics.json"
adaptation, study = adaptation_table(ADAPTATION_DIR, json.loads(shipped_report.read_text())
                                     if shipped_report.is_file() else None)
if study is None:
    st.info(f"The study's reports ({shown_path(ADAPTATION_DIR)}/<method>/metrics.json) are not there yet.",
            icon=":material/hourglass_empty:")
else:
    st.markdown("Can the shipped model adapt to the later batch from its **unlabelled** films? Three methods, fixed "
                f"before the run in `{study['preregistration']}`, each adapted on one half of the official test "
                "films and scored on the other (then swapped). A method was to become an opt-in action only if its "
                "balanced accuracy beat the unadapted model's in **both** folds.")
    st.dataframe(adaptation, hide_index=True, width="stretch", key="adaptation_table")
    counts = ", ".join(f"{n} {name}" for name, n in study["counts"].items())
    st.caption(f"**Model**: {study['model']} (SHA-256 {study['model_sha256'][:12]}). **Data**: the official test "
               f"batch ({sum(study['counts'].values())} films: {counts}). **Protocol**: {study['protocol']}. "
               f"**Threshold**: {study['threshold']:.3f}, {study['threshold_rule']}. **Intervals**: 95 % bootstrap "
               f"over {study['bootstrap_unit']}, {study['bootstrap_resamples']} resamples; the unadapted row's are "
               "the shipped report's (same model, films and threshold). Fold changes in points of balanced accuracy.")
    passed = adaptation.method[adaptation["shipping rule"].str.startswith("met")].tolist()
    aim = adaptation.columns[-1]
    st.markdown(("No method met the rule" if not passed else
                 f"{' and '.join(passed)} met the rule"
                 + (" by one or two films a fold, far inside the intervals (the rule was met, an improvement was "
                    "not shown)" if passed == ["EM prior shift"] else "")
                 + ": it is offered as the opt-in *Adapt to this site* action (Your site page, "
                   "`python -m pneumo_core site adapt`)")
                + f"; the shipped models did not change. The aim {aim.removeprefix('aim ')} was "
                + ("met by " + ", ".join(adaptation.method[adaptation[aim] == "met"])
                   if (adaptation[aim] == "met").any() else "**not met** by any method")
                + ". Prior-shift correction moves only the operating point and cannot change the ranking (AUC).")

# ---------------------------------------------------------------------------- fine-tuning gain
st.subheader("What fine-tuning gains under each protocol")
st.markdown("The write-up's own question: how much does training the backbone add to a frozen feature "
            "extractor? Fine-tuned minus frozen, at the basis chosen above.")
gains = results.gain_table(table)
gains = gains.assign(**{c: gains[c] * 100 for c in gains.columns if "accuracy" in c})
st.dataframe(gains, hide_index=True, width="stretch", key="protocol_gains",
             column_config={**{c: st.column_config.NumberColumn(c + " (%)" if "gain" not in c else c + " (points)",
                                                                format="%+.2f" if "gain" in c else "%.2f")
                               for c in gains.columns if "accuracy" in c},
                            **{c: st.column_config.NumberColumn(format="%+.4f" if "gain" in c else "%.4f")
                               for c in gains.columns if "AUC" in c}})
st.caption("None: a run of that protocol is still pending. The write-up's gain is on its own test part "
           f"({results.WRITEUP_TEST_FILMS} films), at a threshold it did not report.")

# ---------------------------------------------------------------------------- the gap in words
st.subheader("Leakage or batch shift: where the gap comes from")
st.markdown("Going from the official split to the patient re-split moves the later batch into training (no "
            "child crosses), so that step measures the **batch shift**. Going from the patient to the image "
            "re-split lets a child's films fall on both sides, so that step measures **leakage**. Computed from "
            f"the report files, for {metric} at {basis}:")
for variant in ("finetuned", "frozen"):
    st.markdown("\n".join(f"- {line}" for line in results.explain_gap(results.gap_steps(table, variant, metric))))
if not shipped.empty and "finetuned" in set(shipped.variant) and metric == "accuracy":
    ship_acc = float(shipped.set_index("variant").accuracy["finetuned"])
    st.markdown(f"The shipped fine-tuned model ({shipped.set_index('variant').model['finetuned']}) scores "
                f"{ship_acc:.2%} on the official split, {abs(writeup.accuracy['finetuned'] - ship_acc) * 100:.2f} "
                f"points {'below' if ship_acc < writeup.accuracy['finetuned'] else 'above'} the write-up's "
                f"{writeup.accuracy['finetuned']:.2%}; the steps above use the single fine-tuned run instead, so "
                "that all three protocols share one recipe.")
st.caption("Point estimates of differences; each figure's own 95 % interval is in the table. A step smaller than "
           "those half-widths cannot be told apart from sampling noise on test parts of this size.")

# ---------------------------------------------------------------------------- literature and commands
st.subheader("Published figures on the official split")
st.dataframe(results.literature_table(), hide_index=True, width="stretch", key="protocol_literature",
             column_config={"accuracy": st.column_config.NumberColumn(format="%.3f"),
                            "AUC": st.column_config.NumberColumn(format="%.3f")})
st.caption("As published, each under its own protocol (image size, validation part, threshold); not re-run here.")
with st.expander("How these runs were made"):
    st.markdown("`python -m scripts.protocol_runs` trains and evaluates every pending run; the commands "
                "recorded in each run's training.json:")
    st.code("\n".join(f"# {PROTOCOL_NAMES[p]}, {VARIANT_NAMES[v]}\n{c}" for (p, v), c in commands.items() if c)
            or "no run recorded yet", language="bash")
