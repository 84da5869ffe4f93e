"""Decode overlapped with the explainer: a decoder slowed to 50 ms a batch and a loopback
OpenAI-compatible server that takes 300 ms a call (the official SDK on real HTTP; the server in a
process of its own, as a real one is elsewhere).

    python benchmarks/overlap.py [--latents 32] [--samples 3] [--batch-size 256] [--repeats 3]

Times, in interleaved rounds (medians over rounds; the overlap's ratio is the median of each
round's own ratio, whole run over the slower stage alone in that round, with its spread, so a
slow moment on a shared machine hits both sides of a ratio alike):
- the decode stage alone (:func:`lexflow.engine.measure_latents`: traversals, evidence, grids,
  comparison rows);
- the explainer alone, on the requests that stage gives;
- the whole run (:func:`lexflow.engine.explain_decoder`, which streams each latent's requests as
  soon as its grid, evidence and comparison row are ready);
- once, the whole run answering one call at a time (concurrency 1).

Goals (issue 14): the whole run <= 1.15x the slower stage alone, and >= 8x faster than one answer
at a time. The answers are checked to be the ones the explainer alone gives.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from measure_stage import MLPDecoder  # noqa: E402

from lexflow.adapters.base import ModelInfo  # noqa: E402
from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter  # noqa: E402
from lexflow.config import ExplainConfig  # noqa: E402
from lexflow.engine import build_requests, explain_decoder, measure_latents, prepare  # noqa: E402
from lexflow.explainers import get_explainer  # noqa: E402

DECODE_DELAY, CALL_DELAY = 0.05, 0.3


class SlowAdapter(PyTorchVAEAdapter):
    """The adapter with a fixed extra 50 ms per decoded batch (a bigger model's forward)."""

    batches = 0

    def decode(self, z: np.ndarray) -> np.ndarray:
        time.sleep(DECODE_DELAY)
        type(self).batches += 1
        return super().decode(z)


SERVE = """
import sys
from mllm_servers import MLLMServer
server = MLLMServer("openai", "gpt-4o").start()
server.delay = float(sys.argv[1])
print(server.url, flush=True)
for _ in sys.stdin:  # a line: forget the requests seen so far; end of input: stop
    server.seen.clear()
server.stop()
"""


@contextmanager
def server_process(delay: float) -> Iterator[tuple[str, Callable[[], None]]]:
    """The loopback server (tests/mllm_servers.py, +``delay`` s a call) in a process of its own,
    as a real MLLM server is elsewhere: handling its requests takes none of this process's GIL
    or memory. Yields its URL and a function that makes it forget the requests it has kept."""
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(delay)], cwd=ROOT / "tests",
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the loopback server did not start (it printed {url!r})")
        stdin = proc.stdin

        def forget() -> None:
            stdin.write("\n")
            stdin.flush()

        yield url, forget
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latents", type=int, default=32)
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-not-a-key")
    torch.set_num_threads(2)
    decoder = SlowAdapter(MLPDecoder(args.latents).eval(), device="cpu")
    info = ModelInfo(flavors=("pytorch",))
    config = ExplainConfig(samples=args.samples, batch_size=args.batch_size, cache="none",
                           explainer="openai:/gpt-4o", bias="disentanglement")
    prepared = prepare(decoder, info, config)

    with server_process(CALL_DELAY) as (url, forget):

        def explainer(concurrency: int = config.concurrency):  # type: ignore[no-untyped-def]
            forget()
            return get_explainer("openai:/gpt-4o", {"base_url": url, "cache": "none",
                                                    "concurrency": concurrency})

        def decode_alone():  # type: ignore[no-untyped-def]
            measured, _, _ = measure_latents(decoder, config, prepared.indices,
                                             bias=prepared.bias, output_range=None,
                                             progress=False, plan=prepared.plan)
            return build_requests(measured, prepared, config)

        reqs = decode_alone()
        list(explainer().explain_many(reqs[:1]))  # warm-up: SDK import, first connection
        alone = {r.index: r.answers for r in explainer().explain_many(reqs)}
        times: dict[str, list[float]] = {"decode": [], "explainer": [], "whole": []}
        for r in range(-1, args.repeats):  # round -1 warms up (imports, certainty's models)
            order = ["decode", "explainer", "whole"]
            order = order[r % 3:] + order[: r % 3]
            for k in order:
                start = time.perf_counter()
                if k == "decode":
                    decode_alone()
                elif k == "explainer":
                    list(explainer().explain_many(reqs))
                else:
                    result = explain_decoder(decoder, info, config, explainer(),
                                             prepared=prepared)
                if r >= 0:
                    times[k].append(time.perf_counter() - start)
        whole = {lr.index: lr.answers for lr in result.latents if lr.answers}
        same = whole == {i: tuple(a) for i, a in alone.items()}
        start = time.perf_counter()
        explain_decoder(decoder, info, config, explainer(1), prepared=prepared)
        serial = time.perf_counter() - start
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [w / max(d, e) for d, e, w in zip(times["decode"], times["explainer"], times["whole"],
                                               strict=True)]
    print(f"workload: MLP VAE, {args.latents} latents x {config.rows} rows x {config.steps} steps "
          f"+ comparison rows, batch {args.batch_size} (decoder +{DECODE_DELAY * 1e3:.0f} ms a "
          f"batch); {len(reqs)} requests x {args.samples} samples against a loopback server "
          f"(+{CALL_DELAY * 1e3:.0f} ms a call), concurrency {config.concurrency}; "
          f"medians of {args.repeats} interleaved rounds")
    print()
    print("| run | wall time (s) |")
    print("|---|---|")
    print(f"| decode stage alone | {med['decode']:.2f} |")
    print(f"| explainer alone | {med['explainer']:.2f} |")
    print(f"| whole run, overlapped | {med['whole']:.2f} |")
    print(f"| whole run, one answer at a time | {serial:.2f} |")
    print()
    print(f"- whole run / slower stage alone: {statistics.median(ratios):.2f}x (median of the "
          f"{len(ratios)} rounds' own ratios, {min(ratios):.2f}x to {max(ratios):.2f}x; "
          "goal <= 1.15x)")
    print(f"- one answer at a time / whole run: {serial / med['whole']:.1f}x (goal >= 8x)")
    print(f"- answers the same as the explainer alone: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
