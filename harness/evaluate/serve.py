"""`vllm serve` on 127.0.0.1 for the length of a run (or of `harness serve`): start, wait until healthy, stop.

vLLM is run through its own command line (its public interface), in a new process group so stopping it stops
its workers too. The server's output goes to results/cache/serve/<name>-<port>.log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import cache_dir

HOST = "127.0.0.1"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    model_name: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def require_free(port: int) -> None:
    """Refuse a port something already listens on: its /health would pass for our server's."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as vllm binds: a closed server's TIME_WAIT is free
        try:
            s.bind((HOST, port))
        except OSError:
            raise HarnessError(f"port {port} on {HOST} is in use (another server?)",
                               "pass another --port, or stop what listens there") from None


def _command(model: Path, port: int, name: str, dtype: str, max_model_len: int | None,
             trust_remote_code: bool) -> list[str]:
    from harness.evaluate.backends.vllm import is_cpu_build

    exe = Path(sys.executable).parent / "vllm"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    cmd += ["serve", str(model), "--host", HOST, "--port", str(port), "--served-model-name", name,
            "--dtype", dtype, "--enable-prefix-caching"]
    if is_cpu_build():
        cmd.append("--enforce-eager")
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    return cmd


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or [""])[-1].strip()[:300]


def wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise HarnessError(
                f"vllm serve exited with code {server.proc.returncode} before it was ready: "
                f"{_last_line(server.log_path)}", f"see {server.log_path}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    stop_server(server)
    raise HarnessError(f"vllm serve was not ready after {timeout:.0f} s", f"see {server.log_path}")


def start_server(
    model: Path, port: int | None = None, name: str | None = None, dtype: str = "auto",
    max_model_len: int | None = None, trust_remote_code: bool = False, timeout: float = 600.0,
) -> Server:
    """Start `vllm serve` on 127.0.0.1 and return once /health answers 200."""
    from harness.evaluate.backends.vllm import prepare_environment

    prepare_environment()
    if port:
        require_free(port)
    port = port or free_port()
    name = name or model.name
    log_path = cache_dir() / "serve" / f"{name}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _command(model, port, name, dtype, max_model_len, trust_remote_code),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
    server = Server(proc, port, name, log_path)
    try:
        wait_healthy(server, timeout)
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: Server, timeout: float = 30.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it has not gone within `timeout`."""
    if not server.alive():
        return
    try:
        os.killpg(server.proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)


@contextmanager
def serving(model: Path, **kwargs: object) -> Iterator[Server]:
    server = start_server(model, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        stop_server(server)
