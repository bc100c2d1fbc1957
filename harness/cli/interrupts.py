"""Ctrl-C in the `harness` command: each SIGINT is noted and raised as KeyboardInterrupt, as Python does, and raised
again where code that cannot raise swallowed it.

    with noting_interrupts() as interrupts:   # interrupts: one entry per SIGINT delivered
        ...                                   # KeyboardInterrupt caught: interrupted()
    if interrupts: interrupted(finished=...)  # none raised: the command ran to its end

Python runs the handler wherever the main thread is, in a finalizer too: a KeyboardInterrupt raised in a `__del__`
or a weakref callback is printed as "Exception ignored in ..." and dropped (seen: a regex pattern collected while
`harness merge` imported torch; the merge then ran to its end and exited 0). Python hands such an exception to
sys.unraisablehook: here the hook raises it again at the main thread's next call or return, outside the finalizer.
An interrupt that library code catches and drops (`except BaseException: pass`) leaves no trace but its entry in
`interrupts`, for the caller to act on once the command has returned.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

_ACTIVE: list[list[int]] = []  # the lists noting_interrupts is filling (the process's SIGINT handler is global)


def interrupted(finished: bool = False) -> NoReturn:
    """End the command on a Ctrl-C: one line on stderr, exit 130. `finished`: the Ctrl-C was dropped by library code
    and the command ran to its end (what it wrote is whole: a merge or a run is recorded once complete)."""
    if finished:
        print("interrupted, but the Ctrl-C was caught inside a library and the command ran to its end: "
              "what it wrote is complete and kept", file=sys.stderr)
    else:
        print("interrupted", file=sys.stderr)
    sys.exit(130)


def handled() -> None:
    """The command stopped on purpose at the Ctrl-C it received (`harness serve`): it is no interrupted work."""
    for seen in _ACTIVE:
        seen.clear()


@contextmanager
def noting_interrupts() -> Iterator[list[int]]:
    """Within the block, note each SIGINT in the list it yields and raise KeyboardInterrupt, again after a finalizer
    swallowed it. Nothing is installed where SIGINT is not Python's default (ignored in a background job, another
    handler) or off the main thread: the list then stays empty."""
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield seen
        return

    def on_sigint(signum: int, frame: Any) -> None:
        seen.append(signum)
        signal.default_int_handler(signum, frame)

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        yield seen
        return
    unraisable = sys.unraisablehook
    sys.unraisablehook = _raise_again_after(unraisable)
    _ACTIVE.append(seen)
    try:
        yield seen
    finally:
        _ACTIVE.remove(seen)
        sys.unraisablehook = unraisable
        signal.signal(signal.SIGINT, previous)


def _raise_again_after(fallback: Any) -> Any:
    """An unraisablehook that, for a swallowed KeyboardInterrupt, sets a profile function raising it at the thread's
    next call or return outside this hook (then removed), and hands anything else to `fallback`."""

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is None or not issubclass(unraisable.exc_type, KeyboardInterrupt):
            fallback(unraisable)
            return
        before = sys.getprofile()

        def raise_once(frame: Any, event: str, arg: Any) -> None:
            if frame.f_code is hook.__code__:  # this hook returning
                return
            sys.setprofile(before)
            raise KeyboardInterrupt

        sys.setprofile(raise_once)

    return hook
