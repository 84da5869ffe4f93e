"""h-space direction cost: matrix-free subspace iteration vs the dense Jacobian SVD.

    python benchmarks/directions.py [--size 16] [--k 5] [--rows 1] [--threads 1]

Each method runs in a fresh child process on a tiny random-weight UNet2DModel (same seed), so its
peak memory (resident set growth on CPU, max_memory_allocated on CUDA) is its own. Also reports
the principal angles between the two subspaces and the singular values.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import time
from typing import Any


def build(size: int) -> Any:
    import diffusers
    import torch

    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=size, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4)


def child(method: str, args: dict[str, Any], out: Any) -> None:
    import psutil
    import torch

    from lexflow.diffusion.hspace import (
        classic_attention,
        dense_directions,
        mid_block_fn,
        pullback_directions,
    )

    torch.set_num_threads(args["threads"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    unet = build(args["size"]).to(device).requires_grad_(False)
    h = mid_block_fn(unet, lambda x: unet(x, 999))
    xs = torch.randn(args["rows"], 3, args["size"], args["size"],
                     generator=torch.Generator().manual_seed(1)).to(device)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    with classic_attention(unet):
        if method == "dense":
            d = dense_directions(h, xs, args["k"])
        else:
            d = pullback_directions(h, xs, args["k"], iterations=args["iterations"], tol=1e-6)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    import resource

    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0)
    out.put({"method": method if method == "dense" else f"matrix-free ({d.method})",
             "seconds": seconds, "peak_mib": peak / 2**20, "iterations": d.iterations,
             "singular_values": [round(v, 4) for v in d.singular_values],
             "vectors": d.vectors.cpu().tolist(), "device": device})


def run(method: str, args: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(method, args, q))
    p.start()
    result = q.get()
    p.join()
    return dict(result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    args = vars(ap.parse_args())
    import torch

    from lexflow.diffusion.hspace import principal_angles

    free, dense = run("free", args), run("dense", args)
    angles = principal_angles(torch.tensor(free.pop("vectors")), torch.tensor(dense.pop("vectors")))
    print(json.dumps({"machine": f"{platform.processor() or platform.machine()}, "
                                 f"{args['threads']} thread(s)", **args,
                      "x_t size": 3 * args["size"] ** 2, "results": [free, dense],
                      "max principal angle (rad)": float(angles.max())}, indent=1))


if __name__ == "__main__":
    main()
