"""Peak memory of explaining a large latent space: everything lexflow does between the decoder and
the written records (decode, evidence, grids, comparison rows, the measure explainer, the result
and report.html), for a 512-latent decoder of 64x64 RGB images, against a 64-latent one.

    python benchmarks/large_latents.py [--dims 64,512] [--size 64] [--rows 4] [--steps 5]

Each size runs in a fresh process, so ``ru_maxrss`` is that run's own peak resident memory
(Python, torch and numpy included). ``traced peak`` is the peak of what tracemalloc sees (numpy
arrays and Python objects, not torch's allocator), i.e. lexflow's own working set. Frames are
float32; "all frames" is what holding every traversal at once would take. No MLflow calls: the
tracking I/O is the same per latent and is measured by the integration tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path


def one(dim: int, size: int, rows: int, steps: int, batch: int) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from models.blob import BlobDecoder

    from lexflow import engine
    from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
    from lexflow.config import ExplainConfig
    from lexflow.engine import explain_measured, latent_prepared, latent_result
    from lexflow.explainers import get_explainer
    from lexflow.record import ExplainResult, report_html
    from lexflow.tracking.job import explainer_options

    config = ExplainConfig(rows=rows, steps=steps, batch_size=batch, cache="none")
    decoder = PyTorchVAEAdapter(BlobDecoder(latent_dim=dim, size=size), device="cpu")
    explainer = get_explainer("measure", explainer_options(config))
    engine.measure_latents(decoder, config, (0, 1), bias="disentanglement", output_range=None,
                             progress=False)  # warm-up: imports, allocator pools
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    start = time.perf_counter()
    indices = tuple(range(dim))
    measured, out_range, values = engine.measure_latents(
        decoder, config, indices, bias="disentanglement", output_range=None, progress=False)
    responses = explain_measured(explainer, measured, latent_prepared(dim, config), config)
    latents = tuple(latent_result(i, latent_prepared(dim, config), measured[i], responses.get(i),
                                  config.threshold) for i in indices)
    result = ExplainResult(model_uri="bench", model_name=None, model_version=None, run_id="bench",
                           explainer=explainer.uri, explainer_is_mllm=False, latent_dim=dim,
                           config=config.as_params(), latents=latents, output_range=out_range)
    images = {r.image: measured[r.index].grid for r in latents}
    report = report_html(result, images)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    frame = 3 * size * size * 4
    return {
        "latents": dim, "seconds": round(seconds, 1),
        "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mb": round(rss_before, 1),
        "traced_peak_mb": round(traced_peak / 2**20, 1),
        "all_frames_mb": round(dim * rows * steps * frame / 2**20, 1),
        "decode_group_mb": round(batch * frame / 2**20, 1),
        "grids_mb": round(sum(len(m.grid) + len(m.comparison_grid or b"")
                              for m in measured.values()) / 2**20, 1),
        "report_mb": round(len(report) / 2**20, 1),
        "active": sum(m.evidence.active for m in measured.values()),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dims", default="64,512")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child is not None:
        print(json.dumps(one(a.child, a.size, a.rows, a.steps, a.batch_size)))
        return
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"{a.size}x{a.size} RGB, rows={a.rows} steps={a.steps} batch_size={a.batch_size}")
    cols = ("latents", "seconds", "rss_before_mb", "rss_peak_mb", "traced_peak_mb",
            "all_frames_mb", "decode_group_mb", "grids_mb", "report_mb", "active")
    print(" | ".join(cols))
    for dim in (int(d) for d in a.dims.split(",")):
        out = subprocess.run([sys.executable, __file__, "--child", str(dim), "--size", str(a.size),
                              "--rows", str(a.rows), "--steps", str(a.steps), "--batch-size",
                              str(a.batch_size)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(" | ".join(str(row[c]) for c in cols))


if __name__ == "__main__":
    main()
