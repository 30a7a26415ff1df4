"""``train``, ``soup``, ``ensemble`` and ``wise-ft``: build models (TensorFlow: requirements-train.txt)."""
from __future__ import annotations

from pneumo_core.cli.common import EXIT_OK, command_line, int_at_least, needs_tensorflow, probability

#: ``train`` options that replace a TrainConfig default when given: option -> field.
TRAIN_FIELDS = {"lr": "fine_tune_lr", "lr_schedule": "lr_schedule", "patience": "patience", "epochs": "epochs",
                "head_epochs": "head_epochs"}
#: ``train`` options that replace one augmentation magnitude when given (after ``--augment-scale``).
AUGMENT_KEYS = ("jpeg", "crop", "aspect")


def given(args, names) -> dict:
    """``{target: value}`` for each option of ``names`` (option -> target) given on the command line."""
    return {target: getattr(args, name) for name, target in names.items() if getattr(args, name) is not None}


@needs_tensorflow
def cmd_train(args) -> int:
    from pneumo_core.config import backbone_weights
    from pneumo_core.training.trainer import TrainConfig, train

    cfg = TrainConfig(
        variant=args.variant, data=args.data, weights=args.weights or backbone_weights(), out=args.out,
        seed=args.seed, split_seed=args.split_seed, head_seed=args.head_seed, distribute=args.distribute,
        limit=args.limit, protocol=args.protocol,
    )
    for name, value in given(args, TRAIN_FIELDS).items():
        setattr(cfg, name, value)
    if args.augment_scale is not None:
        from dataclasses import asdict

        from pneumo_core.training.data import Augment

        cfg.augment = {k: v * args.augment_scale for k, v in asdict(Augment()).items()}
        cfg.augment["jpeg"] = min(1.0, cfg.augment["jpeg"])  # a probability
    cfg.augment.update(given(args, {key: key for key in AUGMENT_KEYS}))
    train(cfg, command=command_line())
    return EXIT_OK


@needs_tensorflow
def cmd_combine(args) -> int:
    """``soup`` (average weights) and ``ensemble`` (average logits) of several runs; ``wise-ft`` of one."""
    from pneumo_core.training.combine import ensemble, soup, wise_ft
    from pneumo_core.training.trainer import TrainConfig

    if args.command == "wise-ft":
        wise_ft(args.model, args.out, alpha=args.alpha, data=args.data, command=command_line())
        return EXIT_OK
    cfg = TrainConfig(variant=args.variant, data=args.data, out=args.out, split_seed=args.split_seed, limit=args.limit)
    if args.command == "soup":
        soup(args.members, cfg, method=args.method, command=command_line())
    else:
        ensemble(args.members, cfg, command=command_line())
    return EXIT_OK


def register(sub) -> None:
    """``train``, ``soup``, ``ensemble`` and ``wise-ft`` on the subparsers ``sub``."""
    from pneumo_core.config import SHIPPED_VARIANTS
    from pneumo_core.datasets.protocols import PROTOCOLS

    t = sub.add_parser("train", help="train a variant on DIR/train (validation carved from it by patient)")
    t.add_argument("--variant", choices=SHIPPED_VARIANTS, required=True)
    t.add_argument("--data", required=True, help="dataset root with train/ (or the train folder itself)")
    t.add_argument("--weights", help="ImageNet MobileNetV2 weights: a local .weights.h5 or 'imagenet' "
                   "(default: $PNEUMO_WEIGHTS, the offline copy in ../shared/weights, else 'imagenet')")
    t.add_argument("--out", default="models", help="output folder (default: models)")
    t.add_argument("--epochs", type=int_at_least(1), help="fine-tuning epochs (max; early stopping on val AUC)")
    t.add_argument("--head-epochs", type=int_at_least(1), help="head-training epochs (max)")
    t.add_argument("--seed", type=int, default=42, help="training seed (data order, augmentation, dropout)")
    t.add_argument("--split-seed", type=int, default=42,
                   help="seed of the patient-grouped validation split (keep it fixed to compare or average runs)")
    t.add_argument("--head-seed", type=int, help="seed of phase 1 (head training) if not --seed; runs that share "
                   "it start fine-tuning from the same weights and can be averaged with `soup`")
    t.add_argument("--protocol", choices=PROTOCOLS, default="official",
                   help="which films train and validate: official (validation from train/ by patient; default), "
                        "patient-resplit or image-resplit (train/ and test/ pooled, 80/10/10 by patient or by image)")
    t.add_argument("--lr", type=float, help="fine-tuning learning rate (default 5e-5)")
    t.add_argument("--lr-schedule", choices=["plateau", "cosine"], help="fine-tuning LR schedule (default plateau)")
    t.add_argument("--patience", type=int_at_least(1), help="early-stopping patience in epochs (default 6)")
    t.add_argument("--augment-scale", type=float, help="multiply every augmentation magnitude (default 1.0)")
    t.add_argument("--jpeg", type=probability, help="share of training films re-encoded as JPEG at quality 30-95 "
                   "(default 0.5; 0 turns it off, as in fine-tuned runs 1 and 2)")
    t.add_argument("--crop", type=float, help="random resized crop: largest share of a film's area cut away "
                   "(e.g. 0.3; default 0, off)")
    t.add_argument("--aspect", type=float, help="random resized crop: log aspect-ratio range of the kept window "
                   "(e.g. 0.2 for 0.82-1.22; default 0, off)")
    t.add_argument("--distribute", choices=["default", "mirrored", "multiworker"], default="default",
                   help="tf.distribute strategy (mirrored: all local GPUs; multiworker: TF_CONFIG cluster)")
    t.add_argument("--limit", type=int_at_least(2), help="train on at most this many images (smoke runs)")
    t.set_defaults(func=cmd_train)

    so = sub.add_parser("soup", help="average the weights of runs that share their starting weights (model soup)")
    en = sub.add_parser("ensemble", help="one model that averages the logits of several runs (output ensemble)")
    for sp in (so, en):
        sp.add_argument("members", nargs="+", help=".keras files of one variant, validated on the same split"
                        + (" and trained with the same --head-seed" if sp is so else ""))
        sp.add_argument("--variant", choices=SHIPPED_VARIANTS, default="finetuned",
                        help="the name the result is saved under (default: finetuned)")
        sp.add_argument("--data", required=True,
                        help="dataset root with train/ (the validation split is carved from it)")
        sp.add_argument("--out", default="models", help="output folder (default: models)")
        sp.add_argument("--split-seed", type=int, default=42, help="the --split-seed the members were trained with")
        sp.add_argument("--limit", type=int_at_least(2), help="the --limit the members were trained with (smoke runs)")
        sp.set_defaults(func=cmd_combine)
    wi = sub.add_parser("wise-ft", help="interpolate a fine-tuned run's weights with its head-only start (WiSE-FT)")
    wi.add_argument("model", help="a fine-tuned .keras run saved by `train` (its reports hold the start)")
    wi.add_argument("--alpha", type=probability, default=0.5, help="share of the way to the fine-tuned end (0.5)")
    wi.add_argument("--data", help="dataset root (default: the one in the run's training.json)")
    wi.add_argument("--out", required=True, help="output folder (not the run's own: it would be overwritten)")
    wi.set_defaults(func=cmd_combine)
    so.add_argument("--method", choices=["greedy", "uniform"], default="greedy",
                    help="greedy: add members in order of validation loss while the soup's loss does not rise; "
                         "uniform: average all")
