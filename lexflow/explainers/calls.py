"""How explainer calls run: a reproducible seed per (latent, sample), and a coroutine run to
completion on its own event loop in a worker thread (so a caller inside a running loop, such as
a notebook, can still ask). Shared by the MLLM explainers and their judges."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def sample_seed(base: int, index: int, sample: int) -> int:
    """A distinct, reproducible seed per (latent, sample), so samples differ but reruns match."""
    return (base * 1_000_003 + index * 1009 + sample) % (2**31 - 1)


def run_in_thread(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a fresh event loop in a worker thread, return its value."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(factory())
        except BaseException as exc:  # handed to the caller's thread
            out["error"] = exc

    t = threading.Thread(target=target, name="lexflow-mllm", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
