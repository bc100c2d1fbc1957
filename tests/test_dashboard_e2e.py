"""End to end: `harness dashboard` as a real process, every page opened in headless Chromium (Debian's
/usr/bin/chromium through Playwright), while a real writer process writes; screenshots in results/screenshots/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from benchmarks.gen_store import build
from harness.store import Store

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "results" / "screenshots"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = {  # url path -> text that must be on the page
    "leaderboard": ["Leaderboard", "With in-sample scores", "(in-sample)"],  # table cells are a canvas
    "methods": ["Merge methods", "Paired comparison"],
    "lineage": ["Lineage", "Public versus twin along each chain"],
    "overfitting": ["Overfitting flags", "twin_gap", "Evidence", "(model, suite) checked", "not checked"],
    "runs": ["Runs", "Evolve history"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"harness dashboard exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")


@pytest.mark.slow
def test_every_page_in_chromium_while_a_writer_writes(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    db = tmp_path / "e2e.duckdb"
    build(db, models=40, docs=200, sources=4, seed=1)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "harness.cli.__main__", "--db", str(db), "dashboard",
                               "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    writer = subprocess.Popen([sys.executable, "-m", "tests.store_worker", "write", str(db), "e2e", "30", "300"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/_stcore/health", server)
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROME_ARGS, headless=True,
                viewport={"width": 1500, "height": 2000})  # a fresh user-data-dir
            page = context.new_page()
            mid = Store(db).get_model("merge-of-overfit").model_id
            for path, needles in PAGES.items():
                url = f"{base}/{path}" + (f"?model={mid}&suite=zoo_math" if path in ("lineage", "runs") else "")
                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_selector("h1", timeout=60_000)
                try:
                    for needle in needles:  # visible text only: data grids keep hidden header copies
                        page.get_by_text(needle, exact=False).locator("visible=true").first.wait_for(timeout=60_000)
                finally:
                    page.screenshot(path=str(SHOTS / f"{path}.png"), full_page=True)
                page.wait_for_function(
                    "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
                page.wait_for_timeout(1500)  # let charts and the graph lay out
                assert page.locator('[data-testid="stException"]').count() == 0, path
                assert page.locator('[data-testid="stAlertContentError"]').count() == 0, path
                if path == "lineage":
                    assert page.locator('[data-testid="stGraphVizChart"] svg').count() == 1
                if path in ("methods", "lineage", "runs"):
                    assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 1, path
                page.screenshot(path=str(SHOTS / f"{path}.png"), full_page=True)
            page.get_by_role("tab", name="Evolve history").click()  # still on the runs page
            page.get_by_text("Held-out checks").wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 1
            page.screenshot(path=str(SHOTS / "runs_evolve.png"), full_page=True)
            context.close()
        _, err = writer.communicate(timeout=180)
        assert writer.returncode == 0, err
        assert server.poll() is None  # still serving
    finally:
        for proc in (writer, server):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    for path in PAGES:
        assert (SHOTS / f"{path}.png").stat().st_size > 10_000
