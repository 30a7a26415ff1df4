"""Example films for the dashboard's picker and the reader quiz.

Two sources, one table: the bundled teaching set in ``assets/examples/`` (40 films of the official
test split, shipped with the repository, so no dataset download is needed), or the test split of a
dataset folder. Each film comes with its truth (from ``examples.csv`` or the class folder) and, where
the shipped models scored it, their saved test scores (``models/reports/<variant>/test_predictions.csv``;
no model is run here).

Films are named "Example k": neither a name nor the table's order gives the answer away. The
``path``, ``file``, ``patient`` and truth columns are for the code; a page shows none of them before
the reader or the model has answered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_core.artifacts import read_csv, reports_dir
from pneumo_core.config import CLASS_NAMES, MODELS_DIR, PROJECT_DIR, SHIPPED_VARIANTS, model_path
from pneumo_core.datasets.listing import IMAGE_SUFFIXES, list_images, resolve_split_dir
from pneumo_core.evaluation.reports import load_report

BUNDLED = "bundled"  # the source name of the teaching set in assets/examples/
BUNDLED_DIR = PROJECT_DIR / "assets" / "examples"
BUNDLED_CSV = "examples.csv"
DEFAULT_FOLDER_FILMS = 40  # films drawn from a dataset folder when no number is asked for
SUBTYPES = ("normal", "bacterial", "viral")
COLUMNS = ["example", "key", "path", "truth", "subtype", "p_finetuned", "p_frozen", "file", "patient"]


def score_column(variant: str) -> str:
    """The column holding ``variant``'s saved test score (``p_finetuned``, ``p_frozen``)."""
    return f"p_{variant}"


def is_bundled(source) -> bool:
    """True for the bundled teaching set (``None`` or ``"bundled"``), False for a dataset folder."""
    return source is None or str(source) == BUNDLED


def subtype_of(file_name: str, truth: str) -> str:
    """normal / bacterial / viral from a Kermany file name (``person1_virus_6.jpeg``); "pneumonia"
    when a PNEUMONIA file name names neither."""
    if truth == CLASS_NAMES[0]:
        return "normal"
    name = Path(file_name).name.lower()
    return "bacterial" if "bacteria" in name else "viral" if "virus" in name else "pneumonia"


def saved_scores(models_dir: str | Path = MODELS_DIR) -> pd.DataFrame:
    """The shipped models' saved test scores by file name: index ``file``, one ``p_<variant>``
    column per variant (NaN where a model's report is missing or does not list the film)."""
    columns = {}
    for variant in SHIPPED_VARIANTS:
        table = read_csv(reports_dir(model_path(variant, models_dir)) / "test_predictions.csv")
        if table is not None and {"file", "p_pneumonia"} <= set(table.columns):
            columns[score_column(variant)] = table.drop_duplicates("file").set_index("file")["p_pneumonia"]
    scores = pd.DataFrame(columns)
    for variant in SHIPPED_VARIANTS:
        if score_column(variant) not in scores:
            scores[score_column(variant)] = np.nan
    scores.index.name = "file"
    return scores[[score_column(v) for v in SHIPPED_VARIANTS]].astype(float)


def thresholds(models_dir: str | Path = MODELS_DIR) -> dict[str, float | None]:
    """Each shipped model's validation-chosen threshold, or None when its reports are missing."""
    out = {}
    for variant in SHIPPED_VARIANTS:
        report = load_report(variant, models_dir)
        out[variant] = report.threshold if (report.training or report.metrics) else None
    return out


def bundled_table(folder: str | Path = BUNDLED_DIR) -> pd.DataFrame:
    """``examples.csv`` of the teaching set as stored (see ``assets/examples/README.md``)."""
    path = Path(folder) / BUNDLED_CSV
    table = read_csv(path)
    if table is None:
        raise FileNotFoundError(f"the bundled teaching set is missing: {path} not found or unreadable")
    return table


def _with_scores(films: pd.DataFrame, models_dir, fallback: pd.DataFrame | None = None) -> pd.DataFrame:
    """Attach the saved scores of each film by its original file name; ``fallback`` (the scores
    recorded in examples.csv) fills in where the reports are missing."""
    scores = saved_scores(models_dir).reindex(films["file"])
    for variant in SHIPPED_VARIANTS:
        col = score_column(variant)
        values = scores[col].to_numpy()
        if fallback is not None and col in fallback:
            values = np.where(np.isnan(values), fallback[col].to_numpy(dtype=float), values)
        films[col] = values
    return films


def bundled_films(folder: str | Path = BUNDLED_DIR, models_dir: str | Path = MODELS_DIR) -> pd.DataFrame:
    """Every film of the bundled teaching set, in its stored order (``ex01`` = "Example 1")."""
    folder = Path(folder)
    table = bundled_table(folder)
    films = pd.DataFrame({
        "example": [f"Example {k + 1}" for k in range(len(table))],
        "key": table["file"],
        "path": [str(folder / f) for f in table["file"]],
        "truth": table["truth"],
        "subtype": table["subtype"],
        "file": table["original_file"],
        "patient": table["patient"],
    })
    return _with_scores(films, models_dir, fallback=table)[COLUMNS]


def folder_films(root: str | Path, models_dir: str | Path = MODELS_DIR) -> pd.DataFrame:
    """Every image of a dataset folder's test split (or of a folder with NORMAL/ and PNEUMONIA/
    inside), sorted, with truth from the class folder."""
    split = resolve_split_dir(root, "test")
    listing = list_images(split, suffixes=IMAGE_SUFFIXES)
    truth = [CLASS_NAMES[label] for label in listing["label"]]
    films = pd.DataFrame({
        "example": [f"Example {k + 1}" for k in range(len(listing))],
        "key": [str(Path(p).relative_to(split)) for p in listing["path"]],
        "path": listing["path"],
        "truth": truth,
        "subtype": [subtype_of(f, t) for f, t in zip(listing["file"], truth)],
        "file": listing["file"],
        "patient": listing["patient"],
    })
    return _with_scores(films, models_dir)[COLUMNS]


def draw(films: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` films in a seeded order: half NORMAL, half PNEUMONIA (the odd one PNEUMONIA), at most
    one film per patient, so a reader never sees the same child twice."""
    counts = {CLASS_NAMES[0]: n // 2, CLASS_NAMES[1]: n - n // 2}
    rng = np.random.default_rng(seed)
    shuffled = films.iloc[rng.permutation(len(films))]
    one_each = shuffled.drop_duplicates("patient")
    parts = []
    for truth, wanted in counts.items():
        have = one_each[one_each["truth"] == truth]
        if len(have) < wanted:
            raise ValueError(f"asked for {n} films ({wanted} {truth}), but the source has {len(have)} {truth} "
                             f"patients; ask for at most {2 * min((one_each['truth'] == c).sum() for c in counts)}")
        parts.append(have.iloc[:wanted])
    picked = pd.concat(parts)
    return picked.iloc[rng.permutation(len(picked))].reset_index(drop=True)


def example_films(source=None, n: int | None = None, seed: int = 0,
                  models_dir: str | Path = MODELS_DIR) -> pd.DataFrame:
    """The one example source of the dashboard and the quiz.

    ``source``: ``None`` or ``"bundled"`` for the bundled teaching set (no dataset needed), else a
    dataset root or split folder. ``n``: ``None`` gives the whole bundled set in its stored order
    (or :data:`DEFAULT_FOLDER_FILMS` drawn from a folder); a number gives a seeded draw (:func:`draw`).
    Columns: ``example`` ("Example 7"), ``key`` (the film's name inside its source, see
    :func:`film_path`), ``path``, ``truth`` (NORMAL/PNEUMONIA), ``subtype``, ``p_finetuned``,
    ``p_frozen`` (saved test scores, NaN where none), and ``file``/``patient`` (original name, for
    the code only). A bundled film keeps its name in a draw; drawn folder films are numbered in order.
    """
    if n is not None and n < 1:
        raise ValueError(f"the number of films must be at least 1, got {n}")
    if is_bundled(source):
        films = bundled_films(models_dir=models_dir)
        return films if n is None else draw(films, n, seed)
    films = draw(folder_films(source, models_dir), DEFAULT_FOLDER_FILMS if n is None else n, seed)
    films["example"] = [f"Example {k + 1}" for k in range(len(films))]
    return films


def source_name(source) -> str:
    """How a source is recorded (by a quiz): ``"bundled"``, or the absolute test-split folder."""
    return BUNDLED if is_bundled(source) else str(resolve_split_dir(source, "test").resolve())


def film_path(source: str, key: str) -> Path:
    """The file of film ``key`` in ``source`` (as recorded by :func:`source_name`)."""
    folder = (BUNDLED_DIR if is_bundled(source) else Path(source)).resolve()
    path = (folder / key).resolve()
    if not path.is_relative_to(folder):  # a key is a name inside its source, never a way out of it
        raise ValueError(f"film {key!r} is not inside its source folder")
    return path


def sources(root: str | Path | None = None) -> list[tuple[str, str | None]]:
    """(label, source) pairs a page can offer: the bundled set always, a dataset's test split when
    ``root`` (e.g. ``config.data_dir()``) has one."""
    out = [(f"Bundled teaching set ({len(bundled_table())} films)", None)]
    if root is not None:
        try:
            split = resolve_split_dir(root, "test")
        except FileNotFoundError:
            return out
        out.append((f"Dataset test split ({split})", str(root)))
    return out

