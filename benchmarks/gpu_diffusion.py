"""GPU throughput of lexflow's diffusion path: a 256 px DDPM-sized UNet2DModel with random weights.

    python benchmarks/gpu_diffusion.py [--steps 100] [--batch 16] [--dtype float16] [--k 5]
    python benchmarks/gpu_diffusion.py --cpu-smoke     # a tiny 16 px version, anywhere

Reports images per second of DDIM decoding (the DDPM-256 architecture: block_out_channels
(128, 128, 256, 256, 512, 512), attention at 16 px), the time and peak memory of the matrix-free
h-space directions, and the time of one guidance traversal. Without a CUDA device (and without
--cpu-smoke) it prints a notice and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def ddpm_256() -> Any:
    import diffusers

    return diffusers.UNet2DModel(
        sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
        block_out_channels=(128, 128, 256, 256, 512, 512),
        down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4)


def tiny() -> Any:
    import diffusers

    return diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="DDIM steps (the paper: 100)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dtype", default="float16", choices=("float32", "float16", "bfloat16"))
    ap.add_argument("--k", type=int, default=5, help="directions")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("benchmarks/gpu_diffusion.py: no CUDA device here (torch.cuda.is_available() is "
              "False); nothing measured. Run it on a GPU machine, or pass --cpu-smoke for a tiny "
              "CPU check.")
        return 0
    import diffusers

    from lexflow.adapters.diffusers_pipeline import DiffusionPipelineAdapter
    from lexflow.config import ExplainConfig

    torch.manual_seed(0)
    smoke = args.cpu_smoke
    unet = tiny() if smoke else ddpm_256()
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDIMScheduler())
    steps, batch = (4, 4) if smoke else (args.steps, args.batch)
    dtype = "float32" if smoke else args.dtype
    device = "cpu" if smoke else "cuda"
    adapter = DiffusionPipelineAdapter(pipe, device=device, metadata={"diffusion": {
        "ddim_steps": steps, "guidance_steps": 16, "max_batch": batch,
        "power_iterations": 5 if smoke else 10}})
    plan = adapter.traversal_plan(ExplainConfig(directions=args.k, rows=1, steps=9, dtype=dtype))

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    _ = plan.directions
    sync()
    direction_s = time.perf_counter() - t
    direction_mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    t = time.perf_counter()
    codes = plan.codes(0)
    sync()
    traversal_s = time.perf_counter() - t
    x = codes[:1].repeat(batch, axis=0)
    adapter.decode(x[:1])  # warm-up
    sync()
    t = time.perf_counter()
    adapter.decode(x)
    sync()
    decode_s = time.perf_counter() - t
    print(json.dumps({
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke)",
        "model": "tiny 16 px" if smoke else "DDPM-256 UNet2DModel (random weights)",
        "dtype": dtype, "ddim_steps": steps, "batch": batch,
        "images_per_second": batch / decode_s,
        "directions": {"k": args.k, "seconds": direction_s, "peak_gib": direction_mem,
                       "method": plan.directions.method,
                       "iterations": plan.directions.iterations},
        "guidance_traversal_seconds (16 steps x 2 signs, 1 row)": traversal_s,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
