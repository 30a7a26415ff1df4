"""python -m pneumo_core COMMAND (the pneumo console script is the same CLI)

Commands: train, soup, ensemble, wise-ft, evaluate, predict, score, rethreshold, calibrate-ood, manifest,
export, quiz, audit, site, docs. A stable, scriptable contract. Exit status: 0 when the command ran (predict: even
if some files could not be read; each gets an "error"), 1 when docs --check finds stale files, 2 for
a usage or input error, reported on stderr in an "error:" line, after the usage line for a mistyped
option (PNEUMO_DEBUG=1 shows the traceback).
"""
from __future__ import annotations

import argparse
import os

from pneumo_core.cli import audit, docs, evaluate, maintenance, predict, quiz, score, site, training
from pneumo_core.cli.common import error_line

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # fewer of TensorFlow's C++ log lines on stderr

#: The command modules, in the order ``--help`` lists their commands; each has ``register(subparsers)``.
COMMAND_MODULES = (training, evaluate, predict, score, maintenance, quiz, audit, site, docs)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m pneumo_core`` argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="python -m pneumo_core", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


def main(argv=None) -> int:
    """Run the CLI on ``argv``; returns the exit status (2 and one line on stderr for the user's errors)."""
    args = build_parser().parse_args(argv)
    from pneumo_core.errors import MissingDependency, ModelLoadError

    try:
        return args.func(args)
    except MissingDependency as exc:  # what to install, in one line: there is no traceback to see
        return error_line(str(exc))
    except (ModelLoadError, OSError, ValueError) as exc:  # ImageError is a ValueError
        # Bad paths, folders, models and data are the user's to fix: one line, no traceback.
        # The same types can come from deep inside TensorFlow, so the line says how to see more.
        if os.environ.get("PNEUMO_DEBUG"):
            raise
        return error_line(f"{exc} (PNEUMO_DEBUG=1 shows the traceback)")
