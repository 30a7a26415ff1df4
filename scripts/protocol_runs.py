"""Train and evaluate the frozen and fine-tuned recipes under each protocol (pneumo_core.datasets.protocols).

    python -m scripts.protocol_runs [--data ../shared/data/chest_xray] [--work runs/protocols]
        [--protocols official patient-resplit image-resplit] [--variants frozen finetuned]

For each (protocol, variant): ``python -m pneumo_core train --protocol P`` into ``WORK/P/`` (model
files stay there, outside git), then ``python -m pneumo_core evaluate --protocol P`` once on the
protocol's test part, writing ``models/experiments/protocols/P/<variant>/`` (metrics.json,
test_predictions.csv, roc_curve.csv) beside a copy of the run's training.json, validation scores
and training curves.

``--wise-ft`` (models/experiments/wiseft_preregistration.md): for each protocol, train the fine-tuned
recipe again into ``WORK/wiseft/P/run`` (also under ``official``: the run's head-only start is needed),
interpolate it with that start (``wise-ft --alpha 0.5``) into ``WORK/wiseft/P/wiseft`` and evaluate only
that model once, into ``models/experiments/protocols/P/wiseft/``.

The ``official`` runs of these recipes already exist and are not trained again: the shipped frozen
model is the frozen recipe, and fine-tuned member 1 (``models/experiments/runs/member1.keras``,
seed 1) is the fine-tuned one. They are copied into ``WORK/official/`` with their training records
and evaluated the same way (their test scores were recorded before; this re-read reproduces them).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from pneumo_core.datasets.protocols import PROTOCOLS
from pneumo_core.recorded_paths import record

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "models" / "experiments" / "protocols"
#: The recipes: the shipped frozen model's, and fine-tuned member 1's (seeds as in the model card).
RECIPES = {"frozen": ["--seed", "42"], "finetuned": ["--seed", "1", "--head-seed", "42", "--epochs", "14"]}
#: The official-protocol runs of these recipes, with the folder holding their training records.
OFFICIAL_RUNS = {"frozen": (ROOT / "models" / "frozen.keras", ROOT / "models" / "reports" / "frozen"),
                 "finetuned": (ROOT / "models" / "experiments" / "runs" / "member1.keras",
                               ROOT / "models" / "experiments" / "soup_member1")}
KEEP = ("training.json", "validation_predictions.csv", "history_head.csv", "history_finetune.csv")


def cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "pneumo_core", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def stage_official(variant: str, work: Path, data: str) -> None:
    """Copy an existing official run into ``work`` as a model with its reports, its threshold
    re-derived by today's rule and its split recorded."""
    from pneumo_core.training.trainer import TrainConfig, split_summary

    model, records = OFFICIAL_RUNS[variant]
    rd = work / "reports" / variant
    rd.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, work / f"{variant}.keras")
    for name in KEEP:
        if (records / name).is_file():
            shutil.copyfile(records / name, rd / name)
    info = json.loads((rd / "training.json").read_text())
    cfg = info.get("config", {})
    info["protocol"] = split_summary(TrainConfig(data=data, split_seed=cfg.get("split_seed", 42)))
    info["protocol_run_source"] = f"existing official run {model.relative_to(ROOT)} (not retrained)"
    (rd / "training.json").write_text(json.dumps(record(info), indent=2))
    cli("rethreshold", "--model", str(work / f"{variant}.keras"))


def evaluate_once(model: Path, protocol: str, dest: Path, args) -> None:
    """The one test read of ``model`` on ``protocol``'s test part, into ``dest``, beside copies of the
    model's training records."""
    cli("evaluate", "--model", str(model), "--data", args.data, "--protocol", protocol,
        "--split-seed", args.split_seed, "--write-report", str(dest))
    for name in KEEP:
        src = model.parent / "reports" / model.stem / name
        if src.is_file():
            shutil.copyfile(src, dest / name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "chest_xray"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "protocols"))
    ap.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    ap.add_argument("--variants", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    ap.add_argument("--split-seed", default="42")
    ap.add_argument("--wise-ft", action="store_true", help="the pre-registered WiSE-FT round instead")
    args = ap.parse_args()
    if args.wise_ft:
        for protocol in args.protocols:
            run, wise = Path(args.work) / "wiseft" / protocol / "run", Path(args.work) / "wiseft" / protocol / "wiseft"
            cli("train", "--variant", "finetuned", "--data", args.data, "--out", str(run), "--protocol", protocol,
                "--split-seed", args.split_seed, *RECIPES["finetuned"])
            cli("wise-ft", str(run / "finetuned.keras"), "--alpha", "0.5", "--out", str(wise))
            evaluate_once(wise / "finetuned.keras", protocol, OUT / protocol / "wiseft", args)
        return 0
    for protocol in args.protocols:
        for variant in args.variants:
            work = Path(args.work) / protocol
            if protocol == "official":
                stage_official(variant, work, args.data)
            else:
                cli("train", "--variant", variant, "--data", args.data, "--out", str(work), "--protocol", protocol,
                    "--split-seed", args.split_seed, *RECIPES[variant])
            evaluate_once(work / f"{variant}.keras", protocol, OUT / protocol / variant, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
