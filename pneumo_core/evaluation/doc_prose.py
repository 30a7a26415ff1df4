"""The figures the hand-written prose of the docs repeats, checked against the report files: each is
worded in :data:`PROSE` as the prose words it, its figures filled in from the reports
(:func:`prose_figures`); :func:`prose_mismatches` names every one a doc no longer says."""
from __future__ import annotations

import math
from pathlib import Path

from pneumo_core.evaluation.doc_tables import (
    CORRECTION,
    RUNS,
    SHIPPED,
    Reports,
    checkout_root,
    count,
    dec2,
    dec3,
    pct1,
    pct2,
    points,
    protocol_overview,
    run_figures,
    span,
    word,
)
from pneumo_core.evaluation.protocol_results import (
    PUBLISHED,
    REFERENCE_WRITEUP,
    WRITEUP_TEST_FILMS,
    load_runs,
    load_wise_ft,
)


def prose_figures(r: Reports) -> dict[str, str]:
    """Every figure the hand-written prose repeats, formatted as the prose writes it, by name."""
    F: dict[str, str] = {}
    m = {v: r.metrics(v) for v in SHIPPED}
    t = {v: r.training(v) for v in SHIPPED}
    for v, short in (("frozen", "fr"), ("finetuned", "ft")):
        b = m[v]["at_threshold"]
        (tn, fp), (fn, tp) = b["confusion_matrix"]
        F.update({f"{short}_thr": dec3(b["threshold"]), f"{short}_acc": pct1(b["accuracy"]),
                  f"{short}_auc": dec3(b["auc"]), f"{short}_spec": pct1(b["specificity"]), f"{short}_fp": str(fp),
                  f"{short}_fn": str(fn), f"{short}_val_auc": dec3(t[v]["validation"]["auc"]),
                  f"{short}_val_spec": pct1(t[v]["validation"]["specificity"])})
    ft = m["finetuned"]["at_threshold"]
    n_test = ft["n"]
    F["n_test"], F["n_normal"] = str(n_test), str(m["finetuned"]["counts"]["NORMAL"])
    F["ft_short"] = str(math.ceil(0.92 * n_test - 1e-9) - round(ft["accuracy"] * n_test))  # films to the 92 % floor
    F["boot"], F["patients"] = count(m["finetuned"]["bootstrap_resamples"]), str(r.test_patients("finetuned"))
    d = t["finetuned"]["data"]
    F.update({"train_all": count(d["train_images"] + d["val_images"]), "train_films": count(d["train_images"]),
              "train_patients": count(d["train_patients"]), "val_films": count(d["val_images"]),
              "val_patients": count(d["val_patients"]), "val_pneumonia": str(d["val_counts"]["PNEUMONIA"]),
              "val_below": str(math.floor(0.05 * d["val_counts"]["PNEUMONIA"])),
              "w_normal": dec2(d["class_weights"]["0"]), "w_pneumonia": dec2(d["class_weights"]["1"])})
    F["members"] = word(len(t["finetuned"]["ensemble"]["members"]))

    # the threshold correction, and the first rule (Youden's J)
    corr = r.json(f"{CORRECTION}/validation_thresholds.json")
    for v, short, key in (("frozen", "fr", "frozen (shipped)"), ("finetuned", "ft", "finetuned ensemble (shipped)")):
        old = corr[key]["old_threshold"]
        before = r.accuracy_at(v, old)["accuracy"]
        F[f"{short}_old_thr"], F[f"{short}_old_acc"] = dec3(old), pct1(before)
        gained = round((m[v]["at_threshold"]["accuracy"] - before) * n_test)
        F[f"{short}_gain"], F[f"{short}_gain_words"] = str(abs(gained)), word(abs(gained))
    youden = t["frozen"]["operating_points"]["balanced (Youden)"]["threshold"]
    at_youden = r.accuracy_at("frozen", youden)
    F["fr_youden"], F["fr_youden_acc"] = dec3(youden), pct1(at_youden["accuracy"])
    F["fr_youden_spec"] = pct1(at_youden["specificity"])

    # the runs of the model card's table
    runs = {f.run.label: f for f in (run_figures(r, run) for run in RUNS)}
    five = [runs[k] for k in ("fine-tuned run 1 (shipped until the soup)", "fine-tuned run 2", "soup member 1",
                              "soup member 2 = the greedy soup (shipped before the ensemble)", "soup member 3")]
    crop = [runs[f"crop run, seed {s}"] for s in (4, 5, 6)]
    ens_b = runs["ensemble B: the three crop runs (not shipped)"]
    ens_c = runs["ensemble C: all eight runs (not shipped)"]
    F["five_auc"] = span([f.test_auc for f in five], dec3)
    F["five_auc_jpeg"] = span([f.test_auc for f in five[2:]], dec3)
    F["five_auc_nojpeg"] = span([f.test_auc for f in five[:2]], dec3)
    F["five_thr"] = f"{dec2(min(f.threshold for f in five))} to {dec2(max(f.threshold for f in five))}"
    F["five_old_thr"] = f"{dec2(min(f.old_threshold for f in five))} to {dec2(max(f.old_threshold for f in five))}"
    F["five_thr_and"] = F["five_thr"].replace(" to ", " and ")
    F["five_acc"] = span([f.at_rule["accuracy"] for f in five], pct1, " %")
    F["five_sens"] = span([f.at_rule["recall"] for f in five], pct1, " %")
    F["five_spec"] = span([f.at_rule["specificity"] for f in five], lambda x: f"{x * 100:.0f} %", " %")
    F["five_val_spec"] = span([f.corrected_val_specificity for f in five], pct1, " %")
    members = t["finetuned"]["ensemble"]["members"]
    F["five_loss"] = span([mm["val_log_loss"] for mm in members], dec3)
    F["five_val_auc"] = span([f.val_auc for f in five], dec3)
    F["best_loss"] = dec3(min(mm["val_log_loss"] for mm in members))
    F["ens_loss"] = dec3(t["finetuned"]["ensemble"]["val_log_loss"])
    soup = r.json("experiments/soup_greedy/training.json")["soup"]
    F["soup_tries"] = span([s["val_log_loss"] for s in soup["greedy_steps"]], dec3)
    # the crop runs' own validation losses, as ensemble B scored them
    F["crop_loss"] = span([mm["val_log_loss"] for mm in r.json(ens_b.run.training)["ensemble"]["members"]], dec3)
    F["crop_val_auc"] = span([f.val_auc for f in crop], dec3)
    F["crop_auc"] = span([f.test_auc for f in crop], dec3)
    F["b_loss"], F["c_loss"] = dec3(ens_b.val_log_loss), dec3(ens_c.val_log_loss)
    F["c_auc"], F["c_acc"] = dec3(ens_c.test_auc), pct1(ens_c.at_rule["accuracy"])
    round3 = crop + [ens_b, ens_c]
    F["round3_half"] = span([f.at_half["accuracy"] for f in round3], pct1, " %")
    F["round3_thr"] = span([x for f in round3 for x in (f.threshold, f.old_threshold)], dec2)

    # the protocols
    table = protocol_overview(r)
    for protocol, p in (("official", "off"), ("patient-resplit", "pat"), ("image-resplit", "img")):
        for variant, short in (("frozen", "fr"), ("finetuned", "ft")):
            row = table.loc[(protocol, variant)]
            if row.evaluated:
                F[f"{p}_{short}_acc"] = pct1(row.accuracy)
    runs_p = load_runs(r.protocols)

    def acc(p, v):
        return float(table.loc[(p, v), "accuracy"])

    F["shift_ft"] = f"{(acc('patient-resplit', 'finetuned') - acc('official', 'finetuned')) * 100:.1f} points"
    F["shift_fr"] = f"{(acc('patient-resplit', 'frozen') - acc('official', 'frozen')) * 100:.1f} points"
    F["leak_fr"] = points(acc("image-resplit", "frozen") - acc("patient-resplit", "frozen"))
    F["leak_ft"] = points(acc("image-resplit", "finetuned") - acc("patient-resplit", "finetuned"))
    leak = runs_p["image-resplit", "finetuned"].split["leakage"]["test"]
    F["img_leak"] = f"{leak['patients_also_in_train']} of {leak['patients']}"
    ref_frozen, ref_ft = REFERENCE_WRITEUP
    F["ref_fr_acc"], F["ref_ft_acc"] = pct2(ref_frozen.accuracy), pct2(ref_ft.accuracy)
    F["ref_fr_auc"], F["ref_ft_auc"] = f"{ref_frozen.auc:.4f}", f"{ref_ft.auc:.4f}"
    F["writeup_n"], F["writeup_right"] = str(WRITEUP_TEST_FILMS), str(round(ref_ft.accuracy * WRITEUP_TEST_FILMS))
    F["below_writeup"] = points(ref_ft.accuracy - acc("image-resplit", "finetuned")).lstrip("+")
    F["pooled_test"] = f"{table.loc[('image-resplit', 'finetuned'), 'test_films']:.0f}"
    lo, hi = math.floor(ref_ft.accuracy * n_test), math.ceil(ref_ft.accuracy * n_test)
    F["writeup_lo"] = f"{lo}/{n_test} = {lo / n_test * 100:.2f} %"
    F["writeup_hi"] = f"{hi}/{n_test} = {hi / n_test * 100:.2f} %"
    for v, short in (("frozen", "fr"), ("finetuned", "ft")):
        val = runs_p["image-resplit", v].training["validation"]
        F[f"img_{short}_val"] = f"AUC {dec3(val['auc'])}, accuracy {pct1(val['accuracy'])}"
    wise = load_wise_ft(r.protocols)
    for protocol, p in (("official", "off"), ("image-resplit", "img")):
        if (protocol, "wiseft") in wise:
            b = wise[protocol, "wiseft"].block()
            lo_, hi_ = b["ci95"]["accuracy"]
            F[f"{p}_wise"] = f"{pct1(b['accuracy'])} [{lo_ * 100:.1f}, {hi_ * 100:.1f}] / {dec3(b['auc'])}"
            F[f"{p}_wise_acc"] = pct1(b["accuracy"])
    if ("official", "wiseft") in wise:
        F["wise_loss"] = dec3(wise["official", "wiseft"].training["wise_ft"]["val_log_loss"])
    for i, pub in enumerate(PUBLISHED):  # docs/protocols.md's table of published figures (hand-written notes)
        F[f"published{i}"] = f"| {pub.source} | {pub.model} | {pct1(pub.accuracy)} | {dec3(pub.auc)} |"
        F[f"published_pair{i}"] = f"{pct1(pub.accuracy)} / {dec3(pub.auc)}"  # the model card's context line
    kermany = PUBLISHED[0]
    F["kermany"] = f"{pct1(kermany.accuracy)} / AUC {dec3(kermany.auc)}"
    return F


#: The figures each doc's prose repeats, as the prose words them ({name}: :func:`prose_figures`);
#: compared with the doc's text with runs of white space made one space.
PROSE: dict[str, tuple[str, ...]] = {
    "README.md": (
        "the same recipes score {img_fr_acc} (frozen) and {img_ft_acc} (one fine-tuned run; {img_wise_acc} for a "
        "pre-registered WiSE-FT run) against its {ref_fr_acc} and {ref_ft_acc}; re-split by patient, {pat_fr_acc} and "
        "{pat_ft_acc}",
        "the fine-tuned ensemble at {ft_thr} has {ft_val_spec} specificity on validation, {ft_spec} on the test split",
        "({ft_fp} of {n_normal} test NORMAL films called PNEUMONIA)",
    ),
    "models/MODEL_CARD.md": (
        "Class weights {w_normal} (NORMAL) / {w_pneumonia} (PNEUMONIA)",
        "({soup_tries} against {best_loss} for the best run alone)",
        "It is ({ens_loss} against {best_loss})",
        "(frozen {fr_thr}, fine-tuned {ft_thr})",
        "(frozen {fr_old_thr}, fine-tuned {ft_old_thr}, with the same validation specificity)",
        "({ft_old_acc} -> {ft_acc}: one more pneumonia film missed, no fewer false alarms) and gained the frozen "
        "model {fr_gain_words} ({fr_old_acc} -> {fr_acc})",
        "(at Youden {fr_youden}: accuracy {fr_youden_acc}, specificity {fr_youden_spec})",
        "{boot} resamples of the test split's {patients} patients",
        "fine-tuned **AUC {ft_auc} meets the 0.97 floor; accuracy {ft_acc} does not reach the 92 % floor** "
        "({ft_short} more correct films out of {n_test} would have)",
        "Frozen AUC {fr_auc} meets its 0.93 floor",
        "the {ft_acc} stands as measured",
        "Kermany et al. report {kermany} on this split; the reference write-up's {ref_ft_acc} / {ref_ft_auc}",
        "{ens_loss} against {b_loss} for B and {c_loss} for C",
        "Test AUC is {five_auc} for each of the five fine-tuned runs",
        "ranges from {five_thr} ({five_old_thr} with the old rule code)",
        "({val_below} of {val_pneumonia} may fall below it)",
        "Test accuracy at it is {five_acc}",
        "test sensitivity is {five_sens} and specificity {five_spec}",
        "(validation specificity {five_val_spec})",
        "({five_auc_jpeg} with it, {five_auc_nojpeg} without)",
        "({ens_loss} against {best_loss} for the best run) and the best test figures of the five-run round "
        "(AUC {ft_auc}, accuracy {ft_acc})",
        "{ft_fp} NORMAL films are called PNEUMONIA against {ft_fn} misses",
        "(log-loss {crop_loss} against {five_loss}, AUC {crop_val_auc} against {five_val_auc}), yet their test AUC is "
        "as high or higher ({crop_auc})",
        "scores best on test (AUC {c_auc}, {c_acc})",
        "reach {round3_half}; the 95 %-validation-sensitivity rule put their thresholds at {round3_thr}",
        "(fine-tuned {members}-run ensemble {ft_acc} / AUC {ft_auc}, frozen {fr_acc} / {fr_auc})",
        "raises accuracy by {shift_ft} (fine-tuned run) and {shift_fr} (frozen)",
        "(image re-split: {img_leak} test children also have films in training) changes accuracy by {leak_fr} "
        "(frozen) and {leak_ft} (fine-tuned run)",
        "the frozen recipe scores {img_fr_acc} (write-up {ref_fr_acc}) and the fine-tuned run {img_ft_acc}, "
        "{below_writeup} below the write-up's {ref_ft_acc}",
        "frozen and fine-tuned are equal: {img_fr_val}",
        "frozen and fine-tuned are equal: {img_ft_val}",
        "image re-split **{img_wise}** (goal of {ref_ft_acc} not met), official split **{off_wise}**",
        "Its official validation log-loss ({wise_loss}) is above the shipped ensemble's ({ens_loss})",
        "Validation AUC {ft_val_auc} vs test AUC {ft_auc}",
        "(fine-tuned: {ft_fp} false positives, {ft_fn} false negatives; specificity {ft_spec} vs {ft_val_spec} on "
        "validation)",
        *(f"{{published_pair{i}}}" for i in range(len(PUBLISHED))),
    ),
    "docs/evaluation.md": (
        "{boot} resamples of the test split's {patients} patients",
        "`train/` of the official split ({train_all} films)",
        "{train_films} films / {train_patients} patients for training, {val_films} films / {val_patients} patients "
        "for validation",
        "(frozen {fr_thr}, fine-tuned {ft_thr};",
        "({soup_tries} against {best_loss} for the best run)",
        "is lower ({ens_loss} against {best_loss})",
        "({b_loss} for the three crop runs, {c_loss} for all eight, against {ens_loss})",
        "({fr_old_thr} and {ft_old_thr}:",
        "({ft_old_acc} -> {ft_acc}) and gained the frozen one {fr_gain} ({fr_old_acc} -> {fr_acc})",
        "fine-tuned AUC {ft_auc} meets its 0.97 floor; accuracy {ft_acc} did not reach the 92 % floor ({ft_short} more "
        "correct films out of {n_test} would have); frozen AUC {fr_auc} meets its 0.93 floor",
        "the {ft_acc} stands as measured",
        "report {kermany} on this split. Our fine-tuned AUC ({ft_auc}) reaches theirs; its accuracy ({ft_acc}) does "
        "not",
        "{ref_fr_acc} / {ref_fr_auc} (frozen) and {ref_ft_acc} / {ref_ft_auc} (fine-tuned)",
        "({writeup_lo}, {writeup_hi})",
        "at its validation threshold {ft_thr}: validation AUC {ft_val_auc} and specificity {ft_val_spec}",
        "test AUC {ft_auc} and specificity {ft_spec}",
        "({ft_fp} false positives against {ft_fn} misses)",
        "({five_auc_jpeg} for the three runs with it, {five_auc_nojpeg} for runs 1 and 2 without)",
        "(log-loss {crop_loss} against {five_loss}) and tested about as well (AUC {crop_auc})",
        "AUC {ft_auc} and {ft_acc} against {five_auc} and {five_acc} for its five runs at their own thresholds",
        "(AUC {five_auc}), but the validation-chosen threshold moves between {five_thr_and}",
        "scores {c_acc} / {c_auc} on test",
    ),
    "docs/protocols.md": (
        "**{ref_ft_acc}**, {writeup_right} of {writeup_n} test films, AUC {ref_ft_auc}; frozen {ref_fr_acc}, "
        "AUC {ref_fr_auc}",
        "test parts hold {pooled_test} films, not {writeup_n}",
        *(f"{{published{i}}}" for i in range(len(PUBLISHED))),
    ),
}


def _flat(text: str) -> str:
    return " ".join(text.split())


def prose_mismatches(root: str | Path | None = None) -> list[str]:
    """Each figure of :data:`PROSE` that its doc under ``root`` (default: this checkout) does not say as
    the report files give it, as ``doc: expected '...'``; [] when the prose agrees with the reports."""
    root = checkout_root(root)
    figures = prose_figures(Reports(root))
    out = []
    for doc, templates in PROSE.items():
        text = _flat((root / doc).read_text())
        for template in templates:
            expected = _flat(template.format(**figures))
            if expected not in text:
                out.append(f"{doc}: expected {expected!r}")
    return out
