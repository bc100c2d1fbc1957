"""A results file someone sends you is data: a crafted store, cache or model folder runs no code (issue 18)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


class Payload:
    """Unpickling this writes a marker file: proof that a load ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def crafted_evolve_store(tmp: Path, marker: Path) -> tuple[Path, Path]:
    """A store holding a paused evolve run whose optimizer state is a pickle payload, and the run's config."""
    from harness.evolve.config import load_config
    from harness.evolve.loop import Search
    from harness.store import Store
    from harness.store import evolve as records
    from tests.test_evolve_support import make_config, make_models, make_suite

    make_suite(tmp / "suites")
    base, sources = make_models(tmp / "models")
    cfg_path = tmp / "evolve.yaml"
    cfg_path.write_text(yaml.safe_dump(make_config(tmp, base, sources)))
    store = Store(tmp / "crafted.duckdb")
    store.init()
    cfg, folder = load_config(cfg_path)
    search = Search(cfg, folder, store)
    records.start_run(store, search.evolve_id, search.stored_config())
    records.save_generation(store, search.evolve_id, 1, pickle.dumps(Payload(marker)), None)
    records.finish_run(store, search.evolve_id, "failed")
    return store.path, cfg_path


def test_optimizer_state_round_trips_as_data() -> None:
    import numpy as np
    from cmaes import CMA

    from harness.evolve import optimizer_state

    def fresh() -> CMA:
        return CMA(mean=np.full(5, 0.5), sigma=0.3, bounds=np.array([[0.0, 1.0]] * 5), seed=1, population_size=6)

    opt = fresh()
    for _ in range(3):
        xs = [opt.ask() for _ in range(6)]
        opt.tell([(x, float(np.sum((x - 0.2) ** 2))) for x in xs])
    blob = optimizer_state.dump(opt)
    assert blob.startswith(b"{") and b"pickle" not in blob
    a, b = pickle.loads(pickle.dumps(opt)), optimizer_state.load(blob, fresh())
    for o in (a, b):
        o.reseed_rng(7)
    assert [a.ask().tolist() for _ in range(6)] == [b.ask().tolist() for _ in range(6)]  # bit for bit


def test_optimizer_state_with_non_finite_array_entries_round_trips() -> None:
    """cmaes keeps inf in some arrays (e.g. after a penalised generation): JSON has no inf, so it is spelled out."""
    import numpy as np
    from cmaes import CMA

    from harness.evolve import optimizer_state

    def fresh() -> CMA:
        return CMA(mean=np.zeros(3), sigma=0.5, seed=1)

    opt = fresh()
    state = opt.__getstate__()
    name = next(k for k, v in state.items() if isinstance(v, np.ndarray) and v.size)
    planted = state[name].astype(float).copy()
    planted.flat[0], planted.flat[-1] = np.inf, -np.inf
    opt.__setstate__({**state, name: planted})
    back = optimizer_state.load(optimizer_state.dump(opt), fresh()).__getstate__()[name]
    assert np.array_equal(back, planted)


@pytest.mark.slow
def test_crafted_store_runs_nothing_on_evolve_resume(tmp_path: Path) -> None:
    """The store's optimizer state is a pickle payload; `harness evolve --resume` refuses it and nothing runs."""
    marker = tmp_path / "PWNED"
    db, cfg_path = crafted_evolve_store(tmp_path, marker)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_DB": str(db), "HARNESS_RESULTS": str(tmp_path / "res"),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "evolve", str(cfg_path), "--resume"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert not marker.exists(), "the store's pickle ran"
    assert proc.returncode == 2, proc.stderr
    assert "optimizer state is not valid data" in proc.stderr and "Traceback" not in proc.stderr


def test_a_crafted_store_cannot_read_other_files(tmp_path: Path, results) -> None:
    """A store whose `models` table was replaced by a view over a local file: the file's text never comes out."""
    import duckdb

    from harness.store import Store
    from tests.factories import run_cli

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-LINE\n")
    store = Store(tmp_path / "crafted.duckdb")
    store.init()
    con = duckdb.connect(str(store.path))
    con.execute("DROP TABLE models")
    con.execute(f"CREATE VIEW models AS SELECT content AS model_id, content AS name, NULL AS path, 'x' AS kind, "
                f"NULL AS source, NULL AS architecture, NULL AS n_params, NULL AS recipe_id, TRUE AS materialized, "
                f"NULL AS meta, current_timestamp AS created FROM read_text('{secret}')")
    con.close()
    code, out, err = run_cli("--db", str(store.path), "models")
    assert code != 0 and "TOP-SECRET" not in out + err, out + err
