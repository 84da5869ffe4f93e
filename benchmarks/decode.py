"""Traversal decode speed: lexflow's batched decode vs the raw decoder forward on the same batches
(overhead, target <= 10%) and vs decoding one code at a time (target >= 5x slower).

    python benchmarks/decode.py [--rows 16] [--steps 10] [--repeats 15]

Uses the demo beta-TCVAE (32x32 RGB) with the shipped weights. The raw forward and lexflow's
decode are timed in pairs, interleaved (the order alternates), so load on a shared machine hits
both alike; the overhead is the median of the per-pair ratios, with their spread. lexflow's decode
runs the raw forward plus its own work, so a median ratio below 1.0 cannot be real: it is
reported as a benchmark bug (exit 1), never as a speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
from lexflow.config import ExplainConfig
from lexflow.demo.train import load_or_train
from lexflow.stages.decode import BatchDecoder, decode_traversals
from lexflow.stages.plan import TraversalPlan


def once(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    return statistics.median(once(fn) for _ in range(repeats))


def paired(a, b, repeats: int) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Times of ``a`` and ``b`` run in pairs, the order alternating pair by pair."""
    a(), b()  # warm-up
    ta, tb = [], []
    for r in range(repeats):
        if r % 2:
            tb.append(once(b))
            ta.append(once(a))
        else:
            ta.append(once(a))
            tb.append(once(b))
    return ta, tb


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_or_train(progress=False).eval()
    d = model.latent_dim
    config = ExplainConfig(rows=args.rows, steps=args.steps, batch_size=args.batch_size)
    plan = TraversalPlan.from_config(d, config)
    adapter = PyTorchVAEAdapter(model, device="cpu")
    indices = list(range(d))

    def lexflow_decode() -> None:
        batch = BatchDecoder(adapter, batch_size=args.batch_size, output_range=(0.0, 1.0))
        for _ in decode_traversals(batch, plan.codes, indices, plan.rows, plan.values):
            pass

    # The raw forward on exactly the batches lexflow decodes.
    per = plan.rows * plan.steps
    group = max(1, args.batch_size // per)
    batches = []
    for g in range(0, d, group):
        z = np.concatenate([plan.codes(i) for i in indices[g : g + group]])
        batches += [torch.from_numpy(z[s : s + args.batch_size]) for s in range(0, len(z), args.batch_size)]
    n_images = sum(len(b) for b in batches)

    def raw_forward() -> None:
        with torch.inference_mode():
            for b in batches:
                model.decode(b)

    singles = [b[i : i + 1] for b in batches for i in range(len(b))]

    def one_at_a_time() -> None:
        with torch.inference_mode():
            for z1 in singles:
                model.decode(z1)

    raws, lexes = paired(raw_forward, lexflow_decode, args.repeats)
    ratios = sorted(lx / rw for rw, lx in zip(raws, lexes, strict=True))
    ratio = statistics.median(ratios)
    q1, q3 = statistics.quantiles(ratios, n=4)[0], statistics.quantiles(ratios, n=4)[2]
    t_raw, t_lex = statistics.median(raws), statistics.median(lexes)
    t_one = timed(one_at_a_time, max(1, args.repeats // 3))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"workload: {d} latents x {plan.rows} rows x {plan.steps} steps = {n_images} images "
          f"(32x32 RGB), batch {args.batch_size}; {args.repeats} interleaved pairs")
    print(f"raw decoder forward      {t_raw * 1000:8.1f} ms  ({n_images / t_raw:8.0f} img/s)  median")
    print(f"lexflow traversal decode {t_lex * 1000:8.1f} ms  ({n_images / t_lex:8.0f} img/s)  median")
    print(f"lexflow / raw, per pair: median {ratio:.3f} (overhead {100 * (ratio - 1):+.1f}%), "
          f"quartiles {q1:.3f}-{q3:.3f}, range {ratios[0]:.3f}-{ratios[-1]:.3f}")
    print(f"one image at a time      {t_one * 1000:8.1f} ms  ({n_images / t_one:8.0f} img/s)  "
          f"lexflow is {t_one / t_lex:.1f}x faster")
    if ratio < 1.0:
        print(f"benchmark bug: lexflow's decode cannot be faster than the raw forward it runs "
              f"(median ratio {ratio:.3f} < 1); the two timings do not measure the same work",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
