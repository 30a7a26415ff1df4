"""The bundled teaching set (assets/examples/) and the one example source (pneumo_core.review.examples)."""
import hashlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumo_core.config import data_dir
from pneumo_core.imaging.decode import load_path
from pneumo_core.review import examples

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "select_examples.py"


@pytest.fixture(scope="module")
def selector():
    """scripts/select_examples.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("select_examples", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundled_set_serves_without_any_dataset(monkeypatch, tmp_path):
    monkeypatch.setenv("PNEUMO_DATA_DIR", str(tmp_path / "nowhere"))
    films = examples.example_films()
    assert len(films) == 40
    assert films["truth"].value_counts().to_dict() == {"NORMAL": 20, "PNEUMONIA": 20}
    assert films["subtype"].value_counts().to_dict() == {"normal": 20, "bacterial": 10, "viral": 10}
    assert films["example"].tolist() == [f"Example {k}" for k in range(1, 41)]
    assert films["patient"].is_unique
    assert films[["p_finetuned", "p_frozen"]].notna().all().all()
    for path in films["path"]:
        image = load_path(path)  # the upload path's own reader: every film is a readable X-ray
        assert image.pixels.shape[:2] == (224, 224)
    # A page offers only what exists: the bundled set, no dataset.
    assert [source for _, source in examples.sources(data_dir())] == [None]


def test_names_and_order_do_not_give_the_answer_away():
    table = examples.bundled_table()
    assert all(re.fullmatch(r"ex\d\d\.jpeg", f) for f in table["file"])
    films = examples.example_films()
    assert not films["example"].str.contains("virus|bacteria|NORMAL|person", case=False).any()
    # Mixed order: both classes within the first ten, no long run of one class.
    assert films["truth"].iloc[:10].nunique() == 2
    runs = (films["truth"] != films["truth"].shift()).cumsum()
    assert films.groupby(runs).size().max() <= 6


def test_the_files_are_the_bytes_recorded_in_examples_csv():
    table = examples.bundled_table()
    for row in table.itertuples():
        assert hashlib.sha256((examples.BUNDLED_DIR / row.file).read_bytes()).hexdigest() == row.sha256, row.file
    assert sorted(p.name for p in examples.BUNDLED_DIR.glob("*.jpeg")) == sorted(table["file"])
    readme = (examples.BUNDLED_DIR / "README.md").read_text()
    for words in ("Kermany", "Zhang", "Goldbaum", "Mendeley Data", "10.17632/rscbjbr9sj.2", "CC BY 4.0"):
        assert words in readme, words


def test_the_committed_set_follows_the_written_rule(selector):
    """Rebuilt from the saved scores alone, the rule gives exactly the committed set."""
    rows = selector.table(selector.select(selector.pool()), None)
    assert selector.check(rows, examples.BUNDLED_DIR, None) == []
    committed = examples.bundled_table()
    pool = selector.pool().set_index("file")
    for variant in ("finetuned", "frozen"):
        recorded = pool.loc[committed["original_file"], f"p_{variant}"].to_numpy()
        assert np.allclose(committed[f"p_{variant}"], recorded, atol=1e-6)
        mistakes = pool.loc[committed["original_file"], f"{variant}_mistake"].to_numpy()
        assert (committed[f"{variant}_mistake"].to_numpy() == mistakes).all()


def test_the_rule_includes_the_models_failures(selector):
    limits = examples.thresholds()
    for seed in (12, 3):
        picked = selector.select(selector.pool(), seed)
        assert len(picked) == 40 and picked["patient"].is_unique
        normal, pneumonia = picked[picked.truth == "NORMAL"], picked[picked.truth == "PNEUMONIA"]
        false_pos = (normal["p_finetuned"] >= limits["finetuned"]).sum()
        false_neg = (pneumonia["p_finetuned"] < limits["finetuned"]).sum()
        assert (false_pos, false_neg) == (5, 2), seed
        assert pneumonia["subtype"].value_counts().to_dict() == {"bacterial": 10, "viral": 10}
    assert set(selector.select(selector.pool(), 3)["file"]) != set(selector.select(selector.pool(), 12)["file"])


def test_the_bundled_films_are_byte_for_byte_copies_of_the_test_split(selector, data_root):
    rows = selector.table(selector.select(selector.pool()), data_root / "test")
    assert selector.check(rows, examples.BUNDLED_DIR, data_root / "test") == []
    table = examples.bundled_table()
    for row in table.itertuples():
        original = data_root / "test" / row.truth / row.original_file
        assert original.read_bytes() == (examples.BUNDLED_DIR / row.file).read_bytes()


def test_a_dataset_folder_gives_a_seeded_balanced_draw_with_saved_scores(data_root):
    films = examples.example_films(data_root, n=11, seed=5)
    assert len(films) == 11 and films["patient"].is_unique
    assert films["truth"].value_counts().to_dict() == {"PNEUMONIA": 6, "NORMAL": 5}
    assert films["example"].tolist() == [f"Example {k}" for k in range(1, 12)]
    assert films.equals(examples.example_films(data_root, n=11, seed=5))
    assert not films.equals(examples.example_films(data_root, n=11, seed=6))
    saved = pd.read_csv(ROOT / "models" / "reports" / "finetuned" / "test_predictions.csv").set_index("file")
    assert np.allclose(films["p_finetuned"], saved.loc[films["file"], "p_pneumonia"])
    source = examples.source_name(data_root)
    for row in films.itertuples():
        assert examples.film_path(source, row.key) == (data_root / "test" / row.truth / row.file).resolve()
    assert len(examples.example_films(data_root)) == examples.DEFAULT_FOLDER_FILMS
    assert [s for _, s in examples.sources(data_root)] == [None, str(data_root)]


def test_a_bundled_draw_keeps_each_films_name():
    every = examples.example_films().set_index("example")
    drawn = examples.example_films(n=7, seed=1)
    assert drawn["truth"].value_counts().to_dict() == {"PNEUMONIA": 4, "NORMAL": 3}
    assert (every.loc[drawn["example"], "key"].to_numpy() == drawn["key"].to_numpy()).all()


def test_bad_requests_get_clear_messages(tmp_path):
    with pytest.raises(ValueError, match="at most 40"):
        examples.example_films(n=41)
    with pytest.raises(ValueError, match="at least 1"):
        examples.example_films(n=0)
    with pytest.raises(FileNotFoundError, match="neither a split folder"):
        examples.example_films(tmp_path)
    with pytest.raises(ValueError, match="not inside"):
        examples.film_path(examples.BUNDLED, "../examples.csv/../../README.md")


def test_without_reports_the_scores_come_from_examples_csv_or_are_missing(tmp_path):
    films = examples.bundled_films(models_dir=tmp_path)
    table = examples.bundled_table()
    assert np.allclose(films["p_finetuned"], table["p_finetuned"])
    assert examples.saved_scores(tmp_path).empty
    assert examples.thresholds(tmp_path) == {"finetuned": None, "frozen": None}
