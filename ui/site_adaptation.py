"""The "Your site" page's opt-in *Adapt to this site* section: EM prior-shift correction, the one method of the
pre-registered site-adaptation study that met its shipping rule (by one or two films a fold), on the scores of the
films read with the current model version; no class used (:mod:`pneumo_core.adaptation.adapt`)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from pneumo_core.access.policy import Action, decide
from pneumo_core.adaptation.adapt import MIN_FILMS, PREREGISTRATION, adapt_scores, training_share
from pneumo_core.errors import SiteDataError
from pneumo_core.evaluation.reports import display_name
from pneumo_core.review.decisions import plural
from ui.access import requester
from ui.site_threshold import adoption_control


def adaptation_source(n: int) -> str:
    """How an adoption of the EM site threshold is recorded and shown."""
    return f"EM prior-shift adaptation ({plural(n, 'film')})"


def adapt_section(variant: str, sha: str, rep, scores: list[float], active, on_adopt) -> None:
    """Opt-in, label-free: EM's estimate of the site's pneumonia share from the scores of the films read with this
    model version, the site threshold it implies and, for an authorised user, its adoption (recorded, reversible)
    through ``on_adopt(variant, sha, shipped, record)``."""
    st.subheader("Adapt to this site (EM prior shift, opt-in)")
    st.caption("The one method of the pre-registered site-adaptation study that met its shipping rule (balanced "
               "accuracy above the unadapted model in both folds), by one or two films a fold: the rule was met, an "
               f"improvement was not shown ({PREREGISTRATION}; figures on the Why results differ page). It uses no "
               "label: EM estimates the share of PNEUMONIA among the films scored, and the model's threshold applied "
               "to scores re-weighted to that share becomes a site threshold. It cannot change the ranking (AUC), "
               "and the share it estimates skews high when the films themselves differ from the training films.")
    shipped = float(rep.threshold)
    if len(scores) < MIN_FILMS:
        st.info(f"Not yet: adapting needs the scores of {MIN_FILMS} films read with this model version "
                f"({len(scores)} now): {MIN_FILMS - len(scores)} more.", icon=":material/hourglass_empty:")
        return
    try:
        record = adapt_scores(scores, shipped, training_share(rep.training))
    except SiteDataError as exc:
        st.warning(f"No adaptation: {exc}.", icon=":material/info:")
        return
    site = record["threshold_site"]
    p = pd.Series(scores)
    changed = int(((p >= site) != (p >= active.threshold)).sum())
    st.dataframe([{"films scored": record["films_scored"],
                   "pneumonia share, training films": f"{record['train_prevalence']:.1%}",
                   "pneumonia share, EM estimate": f"{record['estimated_site_prevalence']:.1%}"
                   + ("" if record["em_converged"] else " (not converged)"),
                   "site threshold": f"{site:.3f}", "active threshold": f"{active.threshold:.3f}",
                   "labels that would change": changed}], hide_index=True, width="stretch")
    st.caption(f"{display_name(variant)}, SHA-256 {sha[:12]}; the scores of the {record['films_scored']} films read "
               f"with it (no class used); shipped threshold {shipped:.3f} re-weighted from the training share. "
               f"Evidence: {record['evidence']}. Research and teaching tool.")
    decision = decide(Action.SITE_THRESHOLD, requester())
    adoption_control(decision, site, active.threshold, what="EM site threshold",
                     confirm=f"Make {site:.3f} the threshold every page uses for the {display_name(variant)} on this "
                             f"site ({adaptation_source(record['films_scored'])}; {active.threshold:.3f} now, "
                             f"{plural(changed, 'label')} would change)",
                     button="Adopt this threshold", key=f"site_adapt_{variant}", sure_key=f"site_adapt_sure_{variant}",
                     on_click=on_adopt, args=(variant, sha, shipped, record))
