"""``score --engine ray`` (issue 23) on real Ray: the same labels as the local engine, and a multi-node cluster
(``ray.cluster_utils.Cluster``: a head and two workers, one CPU each) that loses a worker node mid-job and
still stores every film exactly once. Skips where Ray is not installed (requirements-scale.txt)."""
from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pneumo_core.scoring.engines import ray_available, run_ray
from pneumo_core.scoring.results import ResultsWriter
from tests.conftest import ROOT
from tests.helpers.support import require
from tests.unit.test_scoring import films

pytestmark = pytest.mark.slow  # Ray starts its processes on 2 cores: about a minute a test


@pytest.fixture(autouse=True)
def ray_installed():
    require(ray_available(), "Ray is not installed (pip install -r requirements-scale.txt)")


def test_ray_engine_labels_every_film_as_the_local_engine_does(data_root, tmp_path):
    listing = tmp_path / "films.txt"
    wanted = [str(f) for f in films(data_root, 96)]
    listing.write_text("\n".join(wanted) + "\n")
    tables = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        job = subprocess.run([sys.executable, "-m", "pneumo_core", "score", str(listing), "--out", str(out),
                              "--engine", engine, "--batch", "16", "--json"], cwd=ROOT, capture_output=True, text=True)
        assert job.returncode == 0, job.stderr
        summary = json.loads(job.stdout)
        assert summary["engine"] == engine and summary["scored"] == 96 and summary["errors"] == 0
        tables[engine] = {r["file"]: r for r in pq.read_table(out).to_pylist()}
    assert sorted(tables["ray"]) == sorted(tables["local"]) == sorted(wanted)
    for file, local in tables["local"].items():
        ray = tables["ray"][file]
        assert ray["label"] == local["label"] and ray["content_sha256"] == local["content_sha256"]
        # one LiteRT thread an actor against two in-process: the sums may round differently
        assert ray["p_pneumonia"] == pytest.approx(local["p_pneumonia"], abs=1e-4)
    assert {r["label"] for r in tables["ray"].values()} == {"NORMAL", "PNEUMONIA"}


def test_a_worker_node_removed_mid_job_leaves_every_film_exactly_once(data_root, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        wanted = [str(f) for f in films(data_root, 160)]
        writer = ResultsWriter(tmp_path / "results")
        removed = []

        def progress(tally):  # called after each stored batch: the first few, then a node goes
            if tally.films >= 24 and not removed:
                cluster.remove_node(workers[0], allow_graceful=False)
                removed.append(tally.films)

        tally = run_ray([{"file": f} for f in wanted], writer, {"model": "finetuned"}, batch=8, progress=progress)
        assert removed and removed[0] < 160, "the node must go while films are still to score"
        assert tally.films == 160 and tally.errors == 0
        stored = pq.read_table(tmp_path / "results").column("file").to_pylist()
        assert sorted(stored) == sorted(wanted)  # every film, none twice
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
