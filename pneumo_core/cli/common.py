"""What every command module of the CLI shares: exit statuses, the option types that refuse bad values
before any work, the output helpers (JSON on stdout, ``warning:`` and ``error:`` lines on stderr) and
the model options of ``predict`` and ``evaluate``."""
from __future__ import annotations

import argparse
import functools
import json
import math
import shlex
import sys

#: Exit statuses: the command ran; ``docs --check`` found stale files; a usage or input error.
EXIT_OK, EXIT_STALE, EXIT_USAGE = 0, 1, 2


def print_json(data, allow_nan: bool = True) -> None:
    """``data`` as indented JSON on stdout (``allow_nan=False``: strict JSON, where the contract says so)."""
    print(json.dumps(data, indent=2, allow_nan=allow_nan))


def warn(*messages: str) -> None:
    """One ``warning:`` line on stderr per message."""
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)


def error_line(message: str) -> int:
    """One ``error:`` line on stderr; returns the exit status of a user's error."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def require_tensorflow(what: str) -> None:
    """Stop ``what`` (a command, in words) with one ``error:`` line and exit status 2 when TensorFlow is not
    installed (the runtime, requirements.txt, has none): raises :class:`MissingDependency`, which
    :func:`pneumo_core.cli.main` prints as it is."""
    from pneumo_core.errors import MissingDependency
    from pneumo_core.inference.backends import TRAIN_INSTALL, tensorflow_available

    if not tensorflow_available():
        raise MissingDependency(f"{what} needs TensorFlow: {TRAIN_INSTALL}")


def needs_tensorflow(command):
    """A command function that runs only where TensorFlow is installed (train, export, ...):
    :func:`require_tensorflow` first, before anything is read or written."""
    @functools.wraps(command)
    def run(args) -> int:
        require_tensorflow(f"python -m pneumo_core {args.command}")
        return command(args)

    return run


def command_line() -> str:
    """This run as a command to repeat it (recorded in training records)."""
    return "python -m pneumo_core " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# ---------------------------------------------------------------- option types
def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def positive_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of minutes above 0, got {text!r}")
    return value


# ---------------------------------------------------------------- models (predict, evaluate)
def add_model_args(sp) -> None:
    """``--model``, ``--backend``, ``--threshold``, ``--batch-size`` and ``--json`` of ``predict`` and ``evaluate``."""
    sp.add_argument("--model", default="finetuned",
                    help="'finetuned' (default), 'frozen', or a path to a .keras or exported .tflite model")
    sp.add_argument("--backend", choices=["litert", "keras"],
                    help="what runs a shipped model: litert (its models/<name>.tflite; the default where "
                         "ai-edge-litert is installed) or keras (its .keras file; needs requirements-train.txt); "
                         "default: $PNEUMO_BACKEND, else litert. A path runs on the backend its suffix names")
    sp.add_argument("--threshold", type=probability,
                    help="decision threshold from 0 to 1 (default: the model's validation-chosen one)")
    sp.add_argument("--batch-size", type=int_at_least(1), default=None,
                    help="films per forward pass (default: the backend's fastest, 16 on LiteRT, 32 on Keras)")
    sp.add_argument("--json", action="store_true", help="machine-readable output")


def threshold_source(predictor) -> str:
    """Where the predictor's threshold came from, in the words reports use."""
    from pneumo_core.evaluation.metrics import THRESHOLD_RULE

    # a model's own training record names its protocol's validation part (image-level or by patient)
    validation = predictor.info.get("threshold_rule") or THRESHOLD_RULE
    return {"given": "given on the command line", "validation": validation,
            "default": "0.5 by default: no reports/<model>/training.json beside the model"}[predictor.threshold_source]


def load_predictor(args):
    """The model of ``--model`` on ``--backend`` at ``--threshold`` (one job using every core); a warning when it
    runs at 0.5 for want of its reports."""
    from pneumo_core.inference.backends import choose_kind
    from pneumo_core.inference.predictor import Predictor

    kind = choose_kind(args.model, args.backend)
    if kind == "keras":
        require_tensorflow(f"python -m pneumo_core {args.command} on the Keras backend")
    predictor = Predictor(args.model, threshold=args.threshold, kind=kind)
    if predictor.threshold_source == "default":
        warn(f"threshold {threshold_source(predictor)}")
    return predictor
