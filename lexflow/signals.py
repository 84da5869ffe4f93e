"""SIGTERM ends a run the way Ctrl-C does.

CI cancellations, Kubernetes and ``timeout`` stop a process with SIGTERM, whose default action
ends it at once: no ``finally`` runs, and the version would stay tagged ``running``. While a run
is in progress, :func:`sigterm_raises` turns SIGTERM into :class:`Terminated`, a BaseException
like KeyboardInterrupt (so no ``except Exception`` swallows it): the run's failure handling tags
the version ``failed`` with ``lexflow.error``, and the CLI exits with 128 + the signal number.
Further SIGTERMs are ignored while that cleanup runs (a SIGKILL still ends it).

A SIGTERM that arrives inside :func:`deferred` (a store call: the version-tag steps, and every
run write in lexflow.tracking.runs) is held until the block ends: raised in the middle of a
database call, it could leave the store's connection holding a lock, and the failure tag written
next would then be refused.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(BaseException):
    """The process received SIGTERM during a run; ``signum`` is the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_held: list[int] = []  # a SIGTERM received inside deferred(), raised when the block ends
_depth = [0]


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a SIGTERM received in the block until the block ends (then raise Terminated).

    Only the main thread defers: it is the thread a signal interrupts. A store call in a worker
    thread runs to its end anyway, and the Terminated must be raised where the run's failure
    handling is (the main thread), never in a worker that happened to finish last."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        if _depth[0] == 0 and _held:
            raise Terminated(_held.pop())


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: no-op,
    as only the main thread can handle signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one cleanup, not several
        if _depth[0]:
            _held.append(signum)
            return
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
