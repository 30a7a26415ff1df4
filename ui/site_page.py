"""The "Your site" page: the model against this site's reads (from the project's database), agreement, drift by week,
a proposed site threshold by the shipped rule, and its adoption or revert by an authorised user.

Figures are those of :func:`pneumo_core.site.validation.validate_site` on one row per film
(:func:`pneumo_core.storage.reads.film_truths`: the reference standard where recorded, else the readers' majority),
for the model version the pages run now; reads made with another version are counted apart and said so.
"""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from pneumo_core.access.policy import Action, decide
from pneumo_core.errors import SiteDataError, SiteReadError, StorageError, first_line
from pneumo_core.evaluation.reports import display_name
from pneumo_core.review.decisions import plural
from pneumo_core.site.calibration import calibration_figures, expected_calibration_error, log_loss
from pneumo_core.site.validation import (
    MIN_READS_PER_CLASS,
    SITE_RULE,
    site_recalibration,
    validate_site,
    weekly_drift,
)
from pneumo_core.storage.reads import film_truths, reader_points, site_reads_db
from ui.access import requester
from ui.chrome import plot
from ui.reads import READER_KEY
from ui.site_adaptation import adapt_section, adaptation_source
from ui.site_figures import drift_figure, site_reliability_figure, site_roc_figure
from ui.site_threshold import active_threshold, adoption_control, model_sha256, no_database_yet
from ui.study import model_calibration

SHOWN = {"sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV", "npv": "NPV", "auc": "ROC AUC",
         "kappa": "Cohen's kappa (model vs the films' class)"}
MESSAGE_KEY = "_site_page_message"


@st.cache_data(show_spinner="Computing the site's figures (bootstrap)...", max_entries=16)
def site_figures(y: tuple, p: tuple, threshold: float) -> dict:
    """:func:`validate_site` on the site's films (cached: the bootstrap takes a second or two)."""
    return validate_site(list(y), list(p), threshold)


@st.cache_data(show_spinner=False, max_entries=16)
def site_calibration(y: tuple, p: tuple) -> tuple[dict, dict]:
    """The calibration refitted on the site's films (its JSON) and its figures on those same films."""
    calibration = site_recalibration(list(y), list(p))
    return calibration.to_json(), calibration_figures(list(y), list(p), calibration)


def _num(value, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def metrics_table(block: dict) -> pd.DataFrame:
    """One row per figure: its value and 95 % bootstrap interval, as shown (three decimals)."""
    ci = block.get("ci95") or {}
    return pd.DataFrame([{"figure": name, "value": _num(block[key]),
                          "95% interval": "-" if not ci.get(key) else f"{_num(ci[key][0])}-{_num(ci[key][1])}"}
                         for key, name in SHOWN.items()])


def confusion_table(block: dict) -> pd.DataFrame:
    (tn, fp), (fn, tp) = block["confusion_matrix"]
    return pd.DataFrame({"film's class": ["NORMAL", "PNEUMONIA"], "model NORMAL": [tn, fn],
                         "model PNEUMONIA": [fp, tp]})


def _actor() -> str:
    """Who an adoption records: the signed-in user; on a local install the nickname typed here, else ``local``."""
    who = requester()
    return who.actor if who.signed_in else st.session_state.get(READER_KEY) or who.actor


def _adopt(variant: str, sha: str, shipped: float, proposed: float, counts: dict) -> None:
    try:
        done = site_reads_db().adopt(model=variant, model_sha256=sha, shipped_threshold=shipped,
                                     new_threshold=proposed, n_normal=counts["NORMAL"],
                                     n_pneumonia=counts["PNEUMONIA"], who=_actor())
        st.session_state[MESSAGE_KEY] = ("ok", f"Adopted {done.new_threshold:.3f} (was {done.old_threshold:.3f}).")
    except (StorageError, SiteReadError) as exc:
        st.session_state[MESSAGE_KEY] = ("error", f"Not adopted: {first_line(exc)}")


def _adopt_adapted(variant: str, sha: str, shipped: float, record: dict) -> None:
    n = record["films_scored"]
    try:
        done = site_reads_db().adopt(model=variant, model_sha256=sha, shipped_threshold=shipped,
                                     new_threshold=record["threshold_site"], n_normal=0, n_pneumonia=0, n_films=n,
                                     source=adaptation_source(n), who=_actor())
        st.session_state[MESSAGE_KEY] = ("ok", f"Adopted {done.new_threshold:.3f} (was {done.old_threshold:.3f}), "
                                               f"from the {adaptation_source(n)}.")
    except (StorageError, SiteReadError) as exc:
        st.session_state[MESSAGE_KEY] = ("error", f"Not adopted: {first_line(exc)}")


def _revert(sha: str, adoption_id: int) -> None:
    try:
        done = site_reads_db().revert(model_sha256=sha, who=_actor(), adoption_id=adoption_id)
        st.session_state[MESSAGE_KEY] = ("ok", f"Reverted the site threshold {done.new_threshold:.3f}: the shipped "
                                               "threshold applies again.")
    except (StorageError, SiteReadError) as exc:
        st.session_state[MESSAGE_KEY] = ("error", f"Not reverted: {first_line(exc)}")


def _show_message() -> None:
    kind, text = st.session_state.pop(MESSAGE_KEY, (None, ""))
    if kind == "ok":
        st.success(text, icon=":material/check:")
    elif kind == "error":
        st.error(text, icon=":material/error:")


def _reader_labels(points: list[dict], may_see_names: bool) -> list[dict]:
    """Readers named as stored (plain text) for those who may record reads; numbered for anyone else."""
    return [{**p, "label": p["reader"] if may_see_names else f"reader {i}"} for i, p in enumerate(points, start=1)]


def _adoption_section(variant: str, sha: str, shipped: float, result: dict | None, active) -> None:
    st.subheader("Site threshold")
    decision = decide(Action.SITE_THRESHOLD, requester())
    _show_message()
    if result is not None and result["proposed_threshold"] is not None:
        proposed = result["proposed_threshold"]
        counts = result["counts"]
        adoption_control(decision, proposed, active.threshold, what="proposed threshold",
                         confirm=f"Make {proposed:.3f} the threshold every page uses for the {display_name(variant)} "
                                 f"on this site (from {counts['NORMAL'] + counts['PNEUMONIA']} films; "
                                 f"{active.threshold:.3f} now)",
                         button="Adopt the proposed threshold", key=f"site_adopt_{variant}",
                         sure_key=f"site_adopt_sure_{variant}", on_click=_adopt,
                         args=(variant, sha, shipped, proposed, counts), primary=True)
    if active.adoption is not None and decision.allowed:
        st.button(f"Revert to the shipped threshold {shipped:.3f}", key=f"site_revert_{variant}", on_click=_revert,
                  args=(sha, active.adoption.id), icon=":material/undo:")
    try:
        history = [] if no_database_yet() else site_reads_db().adoptions(sha)
    except StorageError as exc:
        st.error(f"The adoptions cannot be read: {first_line(exc)}")
        return
    if history:
        st.dataframe([{"adopted (UTC)": a.adopted_at.strftime("%Y-%m-%d %H:%M"), "by": a.adopted_by,
                       "old": round(a.old_threshold, 3), "new": round(a.new_threshold, 3), "source": a.origin,
                       "films": a.n_reads, "NORMAL": "-" if a.source else str(a.n_normal),
                       "PNEUMONIA": "-" if a.source else str(a.n_pneumonia),
                       "ended": f"{a.end_reason} {a.ended_at:%Y-%m-%d %H:%M} by {a.ended_by}" if a.ended_at else
                       "in force"} for a in history], hide_index=True, width="stretch")
        st.caption("Every adoption of a site threshold for this model version, newest first; nothing is deleted. "
                   "NORMAL and PNEUMONIA: the films with a class behind a threshold proposed from reads (an EM "
                   "adaptation uses none).")


def _recalibration(y: tuple, p: tuple, shipped, model_text: str, data_text: str) -> None:
    """Display only: the score recalibrated on the site's own films once there are enough of each class."""
    st.subheader("Recalibration from reads")
    have = {"NORMAL": y.count(0), "PNEUMONIA": y.count(1)}
    short = {name: MIN_READS_PER_CLASS - n for name, n in have.items() if n < MIN_READS_PER_CLASS}
    if short:
        st.info(f"Not yet: a recalibration from this site's reads needs {MIN_READS_PER_CLASS} films of each class "
                f"({have['NORMAL']} NORMAL and {have['PNEUMONIA']} PNEUMONIA now): "
                + " and ".join(f"{n} more {name}" for name, n in short.items()) + ".",
                icon=":material/hourglass_empty:")
        return
    fitted, figures = site_calibration(y, p)
    rows = [{"score": "raw", "ECE": _num(figures["ece_raw"]), "log-loss": _num(figures["log_loss_raw"])}]
    if shipped is not None:  # the calibration shipped with the model (fitted on validation), on the site's films
        q = shipped.apply(list(p))
        rows.append({"score": "calibrated on validation (shipped)", "ECE": _num(expected_calibration_error(y, q)),
                     "log-loss": _num(log_loss(y, q))})
    rows.append({"score": "recalibrated on these reads", "ECE": _num(figures["ece_calibrated"]),
                 "log-loss": _num(figures["log_loss_calibrated"])})
    st.dataframe(rows, hide_index=True, width="stretch")
    plot(site_reliability_figure(figures, model_text, data_text), key="site_reliability")
    st.caption(f"{model_text}; {data_text}. Logistic calibration (temperature {fitted['temperature']:.2f}, offset "
               f"{fitted['bias']:+.2f}) fitted on the site's {figures['n']} films with a class and shown on the same "
               "films, so the recalibrated figures are optimistic. Display only: the pages keep the model's own "
               "calibration (fitted on validation). Research and teaching tool.")


def _drift(reads, films: pd.DataFrame, model_text: str, threshold: float) -> None:
    st.subheader("Drift by week")
    by_film = weekly_drift(films["first_at"].dt.tz_localize(None), films["p_pneumonia"], threshold,
                           films["ood_distance"].astype(float))
    by_read = {w["week"]: w["films"] for w in weekly_drift(pd.Series([r.first_at for r in reads]).dt.tz_localize(None),
                                                            [r.p_pneumonia for r in reads], threshold)}
    weeks = [{**w, "reads": by_read.get(w["week"], 0)} for w in by_film]
    plot(drift_figure(weeks, model_text, threshold), key="site_drift")
    st.dataframe(pd.DataFrame(weeks, columns=["week", "reads", "films", "positive_rate", "mean_ood_distance"]),
                 hide_index=True, width="stretch")
    st.caption(f"Every film read with this model version, in the week of its first read (weeks start on Monday); "
               f"positive rate: the share the model calls PNEUMONIA at the active threshold {threshold:.3f}.")


def render_site_page(variant: str, rep) -> None:
    """The page for the shipped model ``variant`` (``rep``: its reports, for the shipped threshold)."""
    sha = model_sha256(variant)
    if sha is None:
        st.error(f"The {display_name(variant)} file is missing, so no read can be matched to it.")
        return
    shipped = float(rep.threshold)
    active = active_threshold(variant, shipped)
    st.info(active.note, icon=":material/tune:")
    try:
        every = [] if no_database_yet() else site_reads_db().reads()  # a visit alone makes no database file
    except StorageError as exc:
        st.error(f"The site's reads cannot be read: {first_line(exc)}")
        return
    reads = [r for r in every if r.model_sha256 == sha]
    others = sum(r.model == variant and r.model_sha256 != sha for r in every)
    if others:
        st.caption(f"{plural(others, 'read')} {'was' if others == 1 else 'were'} made when films were scored by "
                   "another version of the "
                   f"{display_name(variant)}: kept, and not counted here (a score belongs to its model).")
    model_text = f"{display_name(variant)}, SHA-256 {sha[:12]}"
    if not reads:
        st.info("No read recorded yet for this model version: record your read of each film on the Analyse page.",
                icon=":material/edit_note:")
        adapt_section(variant, sha, rep, [], active, _adopt_adapted)
        _adoption_section(variant, sha, shipped, None, active)
        return
    films = film_truths(reads)
    known = films[films["truth"].notna()]
    counts = known["truth"].value_counts()
    left_out = films.loc[films["truth"].isna(), "excluded"].value_counts()
    data_text = (f"this site's reads: {len(known)} films ({counts.get('NORMAL', 0)} NORMAL, "
                 f"{counts.get('PNEUMONIA', 0)} PNEUMONIA)")
    st.markdown(f"**{plural(len(reads), 'read')} of {plural(len(films), 'film')} by "
                f"{plural(len({r.reader for r in reads}), 'reader')}.** "
                f"Each film counts once: its class is its reference standard where one is recorded "
                f"({(known['truth_from'] == 'reference standard').sum()} films), else its readers' majority "
                f"({(known['truth_from'] == 'readers').sum()})."
                + "".join(f" Left out: {n} film{'s' if n > 1 else ''} ({why})." for why, n in left_out.items()))
    result = None
    y, p = tuple(int(t == "PNEUMONIA") for t in known["truth"]), tuple(float(s) for s in known["p_pneumonia"])
    try:
        result = site_figures(y, p, active.threshold)
    except SiteDataError as exc:
        st.warning(f"No site figures yet: {exc}.", icon=":material/info:")
    if result is not None:
        may_see = decide(Action.SITE_READ, requester()).allowed
        points = _reader_labels(reader_points(reads, active.threshold), may_see)
        st.subheader(f"The model at the active threshold {active.threshold:.3f}")
        st.dataframe(metrics_table(result["at_active"]), hide_index=True, width="stretch")
        st.caption(f"{model_text}; {data_text}; threshold {active.threshold:.3f}. 95 % intervals: bootstrap over "
                   "films (1000 resamples). Research and teaching tool: these reads are the site's, not a validation "
                   "of clinical use.")
        plot(site_roc_figure(result["roc"], result["at_active"], result["at_proposed"], points, model_text,
                             data_text), key="site_roc", width="content")
        st.dataframe([{"reader": p["label"], "reads": p["reads"], "films with a class": p["n"],
                       "sensitivity": _num(p["sensitivity"]), "specificity": _num(p["specificity"]),
                       "kappa with the model": _num(p["kappa_with_model"])} for p in points],
                     hide_index=True, width="stretch")
        st.caption("Each reader against the films' class without their own read (reference standard, else the "
                   "other readers' majority); unsure reads left out. Kappa: agreement with the model's label at "
                   f"{active.threshold:.3f} on the films they read.")
        st.subheader("Proposed site threshold")
        st.caption(f"Rule: {SITE_RULE}. Minimum: {MIN_READS_PER_CLASS} films of each class.")
        if result["proposed_threshold"] is None:
            st.info(f"No threshold proposed yet: {result['why_not']}.", icon=":material/hourglass_empty:")
        else:
            low, high = result["proposed_threshold_ci95"] or (math.nan, math.nan)
            st.markdown(f"**Proposed: {result['proposed_threshold']:.3f}** (95 % interval {_num(low)}-{_num(high)}, "
                        f"bootstrap over films); active now: {active.threshold:.3f}.")
            here, there = st.columns(2)
            for column, block, what in ((here, result["at_active"], "active"),
                                        (there, result["at_proposed"], "proposed")):
                column.markdown(f"At the {what} threshold {block['threshold']:.3f}")
                column.dataframe(confusion_table(block), hide_index=True, width="stretch")
                column.caption(f"{model_text}; {data_text}. Sensitivity {_num(block['sensitivity'])}, "
                               f"specificity {_num(block['specificity'])}.")
    _recalibration(y, p, model_calibration(rep.report_dir)[0], model_text, data_text)
    _drift(reads, films, model_text, active.threshold)
    adapt_section(variant, sha, rep, [float(s) for s in films["p_pneumonia"]], active, _adopt_adapted)
    _adoption_section(variant, sha, shipped, result, active)
