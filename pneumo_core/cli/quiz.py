"""``quiz new|results|close``: reader quizzes, output built by :mod:`pneumo_core.quiz.report`."""
from __future__ import annotations

import getpass
import json
import os
import sys

from pneumo_core.cli.common import EXIT_OK, error_line, int_at_least, positive_minutes


def teacher_key(given: str | None) -> str | None:
    """The teacher key: ``given`` (the flag, else $PNEUMO_TEACHER_KEY); ``-`` reads one line from standard input;
    nothing given on a terminal asks for it without echo. A key on the command line shows in ``ps``: prefer these."""
    if given == "-":
        return sys.stdin.readline().strip() or None
    if given:
        return given
    if sys.stdin.isatty():
        return getpass.getpass("teacher key: ").strip() or None
    return None


def quiz_output(args) -> str:
    """What ``quiz new|results|close`` prints on stdout; a refusal raises QuizError."""
    from pneumo_core.errors import QuizError
    from pneumo_core.quiz.report import new_quiz_text, results_csv, results_json, results_text
    from pneumo_core.quiz.rules import QuizStore

    if args.quiz_command != "new":
        args.teacher_key = teacher_key(args.teacher_key)
        if not args.teacher_key:
            raise QuizError("give the teacher key ($PNEUMO_TEACHER_KEY, --teacher-key - to read it from standard "
                            "input, or type it at the prompt)")
    store = QuizStore()
    try:
        if args.quiz_command == "new":
            made = store.new_quiz(args.films, args.seed, args.data, args.time_limit, args.reveal.replace("-", "_"))
            return json.dumps(made.to_json(), indent=2) if args.json else new_quiz_text(made)
        if args.quiz_command == "close":
            store.close(args.code, args.teacher_key)
            return f"quiz {args.code.upper()} closed"
        results = store.results(args.code, args.teacher_key)
        if args.csv:
            return results_csv(results).rstrip("\n")
        report = results_json(results)
        return json.dumps(report, indent=2, allow_nan=False) if args.json else results_text(report)
    finally:
        store.dispose()


def cmd_quiz(args) -> int:
    """Output on stdout; a refusal is one ``error:`` line on stderr, exit status 2, and nothing on stdout."""
    from pneumo_core.errors import QuizError

    try:
        out = quiz_output(args)
    except QuizError as exc:
        return error_line(str(exc))
    print(out)
    return EXIT_OK


def register(sub) -> None:
    """``quiz`` and its ``new``, ``results`` and ``close`` on the subparsers ``sub``."""
    q = sub.add_parser("quiz", help="reader quizzes: create one, read its results, close it (database: "
                       "$PNEUMO_DB_URL, default a SQLite file in the user's data folder)")
    qs = q.add_subparsers(dest="quiz_command", required=True)
    new = qs.add_parser("new", help="create a quiz; prints its join code and teacher key (the key only here, once)")
    new.add_argument("--films", type=int_at_least(1), default=20, help="films in the quiz (default 20)")
    new.add_argument("--seed", type=int, help="seed of the film draw and order (default: random, printed)")
    new.add_argument("--data", help="draw from this dataset's test split (default: the bundled teaching set)")
    new.add_argument("--time-limit", type=positive_minutes, metavar="MIN",
                     help="minutes each reader has from joining (default: none)")
    new.add_argument("--reveal", choices=("on-close", "at-end"), default="on-close",
                     help="when readers see the truth per film: when you close the quiz (default), or as soon as "
                          "each has finished (then a reader can pass the key to those still reading)")
    new.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (("results", "every reader's answers, sensitivity, specificity, AUC and kappa"),
                       ("close", "close the quiz: no more joins or answers; readers may see their results")):
        sp = qs.add_parser(name, help=text)
        sp.add_argument("code", help="the quiz's join code")
        sp.add_argument("--teacher-key", default=os.environ.get("PNEUMO_TEACHER_KEY"),
                        help="the key printed by `quiz new`; `-` reads it from standard input (default: "
                             "$PNEUMO_TEACHER_KEY, else a prompt on a terminal; a key given here shows in `ps`)")
        if name == "results":
            fmt = sp.add_mutually_exclusive_group()
            fmt.add_argument("--json", action="store_true", help="machine-readable output")
            fmt.add_argument("--csv", action="store_true", help="one CSV row per answer, with the reader's figures")
    q.set_defaults(func=cmd_quiz)
