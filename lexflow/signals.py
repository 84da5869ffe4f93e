"""SIGTERM ends a run the way Ctrl-C does.

CI cancellations, Kubernetes and ``timeout`` stop a process with SIGTERM, whose default action
ends it at once: no ``finally`` runs, and the version would stay tagged ``running``. While a run
is in progress, :func:`sigterm_raises` turns SIGTERM into :class:`Terminated`, a BaseException
like KeyboardInterrupt (so no ``except Exception`` swallows it): the run's failure handling tags
the version ``failed`` with ``lexflow.error``, and the CLI exits with 128 + the signal number.
Further SIGTERMs are ignored while that cleanup runs (a SIGKILL still ends it).
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


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: no-op,
    as only the main thread can handle signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one cleanup, not several
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
