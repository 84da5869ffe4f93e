"""How much concurrency and the answer cache buy: 10 latents x 5 samples against a loopback
OpenAI-compatible server that takes 300 ms per call (the official SDK on real HTTP).

Measures the wall time with concurrency 1, the default (16) and 32, and a second identical run
(served from the cache: zero calls). Run: ``.venv/bin/python benchmarks/mllm_concurrency.py``.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from mllm_servers import MLLMServer  # noqa: E402
from models.blob import BlobDecoder  # noqa: E402

from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter  # noqa: E402
from lexflow.config import ExplainConfig  # noqa: E402
from lexflow.engine import build_requests, latent_prepared, measure_latents  # noqa: E402
from lexflow.explainers import get_explainer  # noqa: E402
from lexflow.explainers.base import ExplainRequest  # noqa: E402

LATENTS, SAMPLES, DELAY = 10, 5, 0.3


def requests() -> list[ExplainRequest]:
    """Ten latents' requests: the four active BlobDecoder grids, reused under ten indices."""
    config = ExplainConfig(rows=4, samples=SAMPLES)
    decoder = PyTorchVAEAdapter(BlobDecoder(), device="cpu")
    measured, _, values = measure_latents(decoder, config, tuple(range(5)), bias="disentanglement",
                                          output_range=None, progress=False)
    active = build_requests(measured, latent_prepared(5, config), config)
    return [replace(active[i % len(active)], index=i, label=f"{i:02d}") for i in range(LATENTS)]


def timed(server: MLLMServer, reqs: list[ExplainRequest], cache: str, **options: object) -> tuple[float, int]:
    before = len(server.calls)
    explainer = get_explainer("openai:/gpt-4o", {"base_url": server.url, "cache": cache, **options})
    start = time.perf_counter()
    responses = list(explainer.explain_many(reqs))
    elapsed = time.perf_counter() - start
    assert all(not r.failures for r in responses), [r.failures for r in responses]
    return elapsed, len(server.calls) - before


def main() -> None:
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-not-a-key")
    reqs = requests()
    default = ExplainConfig().concurrency
    with MLLMServer("openai", "gpt-4o") as server, tempfile.TemporaryDirectory() as tmp:
        server.delay = DELAY
        timed(server, reqs[:1], "none", concurrency=1)  # warm up: SDK import, first connection
        serial, n1 = timed(server, reqs, "none", concurrency=1)
        concurrent, n8 = timed(server, reqs, os.path.join(tmp, "cache"), concurrency=default)
        wide, n16 = timed(server, reqs, "none", concurrency=32)
        rerun, n0 = timed(server, reqs, os.path.join(tmp, "cache"), concurrency=default)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    print(f"{LATENTS} latents x {SAMPLES} samples, server adds {DELAY * 1000:.0f} ms per call")
    print("| run | calls | wall time (s) | speed-up vs concurrency 1 |")
    print("|---|---|---|---|")
    print(f"| concurrency 1 | {n1} | {serial:.2f} | 1.0x |")
    print(f"| concurrency {default} (default) | {n8} | {concurrent:.2f} | {serial / concurrent:.1f}x |")
    print(f"| concurrency 32 | {n16} | {wide:.2f} | {serial / wide:.1f}x |")
    print(f"| rerun, nothing changed (cache) | {n0} | {rerun:.2f} | {serial / rerun:.0f}x |")


if __name__ == "__main__":
    main()
