"""The one way harness joins a Ray cluster (evolve workers, eval --workers, dtm fine-tunes).

    ray = connect_ray(address, "--workers", "drop --workers")   # the ray module, initialised

A local Ray is started when `address` is None; an installed Ray missing is one line naming what needed it.
"""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError


def connect_ray(address: str | None, needed_by: str, without: str) -> Any:
    """`needed_by` names the option that asked for Ray, `without` how to do without it."""
    try:
        import ray
    except ImportError:
        raise HarnessError(f"{needed_by} needs Ray, which is not installed",
                           f"pip install 'harness[ray]', or {without}") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    return ray
