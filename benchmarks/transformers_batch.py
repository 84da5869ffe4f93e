"""The local ``transformers:/<dir>`` explainer: answers per second with prompts batched into one
``generate`` call vs one latent at a time, on the tiny random LLaVA the tests build
(tests/integration/test_transformers_explainer.py), on CPU, cache off.

    python benchmarks/transformers_batch.py [--latents 16] [--samples 3] [--batch-size 8]
                                            [--repeats 3]

The two are timed in interleaved rounds (median over rounds). A tiny model makes the per-call
overhead (processor, generate's set-up) dominate, which is what batching removes; a real model's
gain depends on its size and the device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latents", type=int, default=16)
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from test_transformers_explainer import build_tiny_llava, request

    from lexflow.explainers import get_explainer

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_llava(Path(tmp) / "tiny-llava")
        reqs = [request(samples=args.samples, index=i, comparison=True)
                for i in range(args.latents)]
        explainers = {
            "one at a time": get_explainer(f"transformers:/{model}", {
                "batch_size": 1, "cache": "none", "max_new_tokens": 16}),
            f"batched ({args.batch_size} prompts a call)": get_explainer(
                f"transformers:/{model}", {"batch_size": args.batch_size, "cache": "none",
                                           "max_new_tokens": 16}),
        }
        for e in explainers.values():
            list(e.explain_many(reqs[:2]))  # warm-up: load, first generate
        times: dict[str, list[float]] = {k: [] for k in explainers}
        for r in range(args.repeats):
            for k in (list(explainers) if r % 2 == 0 else list(explainers)[::-1]):
                start = time.perf_counter()
                out = list(explainers[k].explain_many(reqs))
                times[k].append(time.perf_counter() - start)
                assert len(out) == args.latents
    n = args.latents * args.samples
    med = {k: statistics.median(v) for k, v in times.items()}
    single = med["one at a time"]
    print(f"workload: tiny random LLaVA (tests/integration), {args.latents} latents x "
          f"{args.samples} samples = {n} answers, up to 16 new tokens, CPU, 2 threads, cache off; "
          f"medians of {args.repeats} interleaved rounds")
    print()
    print("| run | wall time (s) | answers per second | speed-up |")
    print("|---|---|---|---|")
    for k, t in med.items():
        print(f"| {k} | {t:.2f} | {n / t:.1f} | {single / t:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
