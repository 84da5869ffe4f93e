"""Traversal decode speed: lexflow's batched decode vs the raw decoder forward on the same batches
(overhead, target <= 10%) and vs decoding one code at a time (target >= 5x slower).

    python benchmarks/decode.py [--latent-dim 10] [--rows 16] [--steps 10] [--repeats 5]

Uses the demo beta-TCVAE architecture (32x32 RGB) with the shipped weights.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
from lexflow.config import ExplainConfig
from lexflow.demo.train import load_or_train
from lexflow.stages.decode import BatchDecoder, decode_traversals
from lexflow.stages.plan import TraversalPlan


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
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

    t_raw = timed(raw_forward, args.repeats)
    t_lex = timed(lexflow_decode, args.repeats)
    t_one = timed(one_at_a_time, max(1, args.repeats // 2))
    print(f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CPU")
    print(f"workload: {d} latents x {plan.rows} rows x {plan.steps} steps = {n_images} images "
          f"(32x32 RGB), batch {args.batch_size}")
    print(f"raw decoder forward      {t_raw * 1000:8.1f} ms  ({n_images / t_raw:8.0f} img/s)")
    print(f"lexflow traversal decode {t_lex * 1000:8.1f} ms  ({n_images / t_lex:8.0f} img/s)  "
          f"overhead {100 * (t_lex / t_raw - 1):+.1f}%")
    print(f"one image at a time      {t_one * 1000:8.1f} ms  ({n_images / t_one:8.0f} img/s)  "
          f"lexflow is {t_one / t_lex:.1f}x faster")


if __name__ == "__main__":
    main()
