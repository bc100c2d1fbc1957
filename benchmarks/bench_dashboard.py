"""Time every dashboard page (Streamlit AppTest, in process) and the overfitting analysis on a store.

    python benchmarks/bench_dashboard.py STORE.duckdb [--truth truth.json] [--repeat 3] [--cold-repeat 3]

For each page, every render but `warm` with every st.cache_data/st.cache_resource entry cleared (a new server
process, or expired TTLs): `never analysed` = the analysis kept on disk removed too (the queries and the analysis
run); `just written` = the store's modification time bumped as a write would (the page shows the previous
analysis while a thread computes the new one); `store unchanged` = the analysis of this version is on disk;
`warm` = the median of --repeat reruns (cache hits, what a user clicking around sees within the TTL). The first
render of every page in the process (imports of streamlit, altair, scipy...) is reported on its own. The
background pre-computation of the analysis (app.py) is switched off here so each page pays its own queries.
Then the analysis (harness.analysis.overfit over the store, no cache) and, with --truth from gen_store.py,
its flag counts. Then `harness dashboard` started as users start it: when the server answers, and when the
analysis it starts beside the server is on disk. Prints one table with absolute numbers (wall-clock seconds,
and the CPU seconds the process used, which matter on a shared machine) and the machine with its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "dashboard" / "app.py")
PAGES = ("leaderboard", "methods", "lineage", "overfitting", "runs")
TITLES = {"leaderboard": "Leaderboard", "methods": "Merge methods", "lineage": "Lineage",
          "overfitting": "Overfitting flags", "runs": "Runs"}


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, load avg {load}, Python {platform.python_version()}"


_COMPONENTS: list = []


def _components() -> object:
    """Streamlit's registry of installed custom components. A server scans the installed packages for them once,
    when it starts; AppTest scans again for every new instance (0.4-0.6 s here), which no page view pays."""
    if not _COMPONENTS:
        from streamlit.components.v2.component_manager import BidiComponentManager

        manager = BidiComponentManager()
        manager.discover_and_register_components(start_file_watching=False)
        _COMPONENTS.append(manager)
    return _COMPONENTS[0]


def render(page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=600)
    if hasattr(at, "_bidi_component_manager"):  # as a server: scanned once (see _components)
        at._bidi_component_manager = _components()
    if page != "leaderboard":  # opened at its own URL (/methods...), as a visitor does: the leaderboard not run
        at.switch_page(f"views/{page}.py")  # (before the first run Streamlit finds a page by its file name,
    at.run()  # which is every page's url_path here)
    if at.title and at.title[0].value != TITLES[page]:
        raise SystemExit(f"{page}: opened {at.title[0].value!r} instead")
    if at.exception:
        raise SystemExit(f"{page}: {at.exception[0].value}")
    return at


def _cold(page: str, mode: str) -> tuple[float, float, object]:
    """Render with every Streamlit cache cleared (a fresh server process, or every TTL expired). mode "none": the
    analysis kept on disk is removed too (a store never analysed); "write": the store's modification time is
    bumped, as a write would (the previous analysis is shown while a thread computes the new one, which is
    waited for after timing); "disk": the store is unchanged since the analysis was kept."""
    import shutil

    import streamlit as st

    from harness.paths import cache_dir

    st.cache_data.clear()
    st.cache_resource.clear()
    folder = cache_dir() / "dashboard"
    if mode == "none":
        shutil.rmtree(folder, ignore_errors=True)
    if mode == "write":
        db = os.environ["HARNESS_DB"]
        os.utime(db, ns=(time.time_ns(), time.time_ns()))
    t, c = time.perf_counter(), time.process_time()
    at = render(page)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    if mode == "write":  # let a background refresh (pages that show flags start one) finish before going on
        import threading

        for thread in threading.enumerate():
            if thread.name == "harness-analysis":
                thread.join(timeout=300)
    return wall, cpu, at


def time_pages(repeat: int, cold_repeat: int = 1) -> tuple[float, list[tuple]]:
    """Per page: cold wall and CPU seconds with nothing cached (the median of `cold_repeat` renders: one sample
    of a page that pays the analysis moves by +-0.4 s on a shared machine), cold wall after a write (previous
    analysis on disk), cold wall with the store unchanged, and warm (median of reruns) wall and CPU seconds."""
    t = time.perf_counter()
    for page in PAGES:  # imports (streamlit, altair, scipy...) and first queries, not counted below
        render(page)
    first = time.perf_counter() - t
    rows = []
    for page in PAGES:
        samples = [_cold(page, "none")[:2] for _ in range(cold_repeat)]
        cold, cold_cpu = (statistics.median(x[j] for x in samples) for j in (0, 1))
        written, _, _ = _cold(page, "write")
        disk, _, at = _cold(page, "disk")
        warm = []
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            at.run()
            warm.append((time.perf_counter() - t, time.process_time() - c))
        rows.append((page, cold, cold_cpu, written, disk, statistics.median([w for w, _ in warm]),
                     statistics.median([c for _, c in warm])))
    return first, rows


def time_analysis(db: str, truth: dict | None) -> tuple[float, float, dict]:
    from harness.analysis import evidence
    from harness.analysis.overfit import analyse_data, confusion
    from harness.store import Store

    store = Store(db)
    t, c = time.perf_counter(), time.process_time()
    data = evidence.gather(store)
    gathered = time.perf_counter() - t
    t = time.perf_counter()
    flags = analyse_data(data)
    analysed = time.perf_counter() - t
    out = {"cpu_s": round(time.process_time() - c, 2), "flags": len(flags),
           "non_info": sum(f.severity != "info" for f in flags)}
    if truth is not None:
        c = confusion(flags, truth)
        out.update({k: c[k] for k in ("true_flags", "false_flags", "positives", "negatives", "flagged")})
    return gathered, analysed, out


def time_server(db: str) -> tuple[float, float]:
    """`harness dashboard` as users start it, with an empty analysis cache: seconds until the server answers, and
    until the analysis it starts beside the server is kept on disk (from then on the first page that shows flags
    is the `store unchanged` case)."""
    import socket
    import subprocess
    import urllib.request

    results = Path(tempfile.mkdtemp(prefix="bench_dashboard_server_"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HARNESS_RESULTS": str(results)}
    env.pop("HARNESS_DASHBOARD_PREWARM", None)
    t = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "harness.cli.__main__", "--db", db, "dashboard", "--port",
                               str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    health = kept = None
    try:
        while time.perf_counter() - t < 300 and (health is None or kept is None):
            if health is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                        health = time.perf_counter() - t if r.status == 200 else None
                except OSError:
                    pass
            if kept is None and list((results / "cache" / "dashboard").glob("*.json")):
                kept = time.perf_counter() - t
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(30)
    return health or float("nan"), kept or float("nan")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db")
    ap.add_argument("--truth")
    ap.add_argument("--repeat", type=int, default=3, help="warm reruns per page (the median is reported)")
    ap.add_argument("--cold-repeat", type=int, default=1,
                    help="cold renders of a store never analysed per page (the median is reported)")
    ap.add_argument("--no-server", action="store_true", help="skip timing harness dashboard's start")
    args = ap.parse_args(argv)
    os.environ["HARNESS_DB"] = str(Path(args.db).resolve())
    os.environ.setdefault("HARNESS_RESULTS", tempfile.mkdtemp(prefix="bench_dashboard_"))  # its own disk cache
    os.environ["HARNESS_DASHBOARD_PREWARM"] = "0"
    from harness.store import Store

    counts = Store(args.db).counts()
    truth = json.loads(Path(args.truth).read_text()) if args.truth else None
    gathered, analysed, flags = time_analysis(args.db, truth)
    first, rows = time_pages(args.repeat, args.cold_repeat)
    health, kept = (float("nan"), float("nan")) if args.no_server else time_server(args.db)
    print(f"machine: {machine()}")
    print(f"store: {args.db}: {counts['models']:,} models, {counts['lineage']:,} lineage edges, "
          f"{counts['runs']:,} runs, {counts['samples']:,} samples")
    print(f"analysis: gather {gathered:.2f} s + flags {analysed:.2f} s = {gathered + analysed:.2f} s; {flags}")
    print(f"first render of all {len(PAGES)} pages in this process (imports included): {first:.2f} s")
    print(f"harness dashboard started: server answers after {health:.2f} s, its analysis is kept on disk after "
          f"{kept:.2f} s")
    print("| page | never analysed: wall (s) | CPU (s) | just written: wall (s) | store unchanged: wall (s) "
          "| warm rerun: wall (s) | CPU (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for page, cold, cold_cpu, written, disk, warm, warm_cpu in rows:
        print(f"| {page} | {cold:.2f} | {cold_cpu:.2f} | {written:.2f} | {disk:.2f} | {warm:.2f} | {warm_cpu:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
