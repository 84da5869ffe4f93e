"""Many versions, many latents: ``lexflow explain-registry`` over 20 versions of a small model at
parallelism 1, 2 and 4 (versions per minute, peak memory), and ``--top-k`` on a 512-latent model
(time, peak memory).

    python benchmarks/registry_scale.py [--versions 20] [--parallel 1,2,4] [--dim 512]

A throwaway SQLite store in a temporary directory: one BlobDecoder (5 latents, 32x32, 4 active)
logged once and registered as ``--versions`` versions. Each explain-registry run (``--all``, the
measure explainer, rows 2, samples 1) and each top-k run is its own process, so ``ru_maxrss`` is
that run's own peak resident memory (Python, torch, MLflow included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "bench-registry-blob"


def register(versions: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import mlflow
    import mlflow.pytorch
    from models.blob import BlobDecoder

    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            BlobDecoder(), name="model", serialization_format="pickle",
            code_paths=[str(ROOT / "tests" / "models")], pip_requirements=["torch"],
            registered_model_name=NAME)
    for _ in range(versions - 1):
        mlflow.register_model(info.model_uri, NAME)


def explain_registry(parallel: int) -> dict[str, float]:
    from lexflow.cli import cli

    start = time.perf_counter()
    try:
        cli.main(["explain-registry", "--filter", f"name='{NAME}'", "--all", "--parallel",
                  str(parallel), "--explainer", "measure", "--rows", "2", "--samples", "1",
                  "--json"], standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    return {"seconds": time.perf_counter() - start,
            "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def top_k(dim: int, k: int | None) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "tests"))
    from models.blob import BlobDecoder

    from lexflow import engine
    from lexflow.adapters.base import ModelInfo
    from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
    from lexflow.config import ExplainConfig
    from lexflow.explainers import get_explainer

    config = ExplainConfig(top_k=k, cache="none", bias="disentanglement")
    decoder = PyTorchVAEAdapter(BlobDecoder(latent_dim=dim, size=64), device="cpu")
    info = ModelInfo(("pytorch",), {})
    engine.explain_decoder(PyTorchVAEAdapter(BlobDecoder(latent_dim=5, size=64), device="cpu"),
                           info, config, get_explainer("measure"))  # warm-up: imports
    start = time.perf_counter()
    result = engine.explain_decoder(decoder, info, config, get_explainer("measure"))
    return {"seconds": time.perf_counter() - start,
            "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "explained": sum(1 for r in result.latents if r.answers),
            "skipped": len(result.skipped)}


def child(*args: str, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"{' '.join(args)} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--versions", type=int, default=20)
    p.add_argument("--parallel", default="1,2,4")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--child", choices=("register", "registry", "top-k"), help=argparse.SUPPRESS)
    p.add_argument("--value", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child == "register":
        register(a.value)
        print("{}")
        return 0
    if a.child == "registry":
        print(json.dumps(explain_registry(a.value)))
        return 0
    if a.child == "top-k":
        print(json.dumps(top_k(a.dim, a.value or None)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
               "LEXFLOW_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT),
               "LEXFLOW_CACHE_DIR": f"{tmp}/cache"}
        start = time.perf_counter()
        child("--child", "register", "--value", str(a.versions), env=env)
        setup = time.perf_counter() - start
        rows = [(n, child("--child", "registry", "--value", str(n), env=env))
                for n in (int(x) for x in a.parallel.split(","))]
        tops = [(k, child("--child", "top-k", "--dim", str(a.dim), "--value", str(k or 0),
                          env=env)) for k in (None, a.top_k)]
    print(f"explain-registry: {a.versions} versions of a BlobDecoder (5 latents, 32x32 RGB), "
          f"measure explainer, rows 2, samples 1, throwaway SQLite store "
          f"(logging and registering them took {setup:.0f} s); one process per run")
    print()
    print("| parallel | wall time (s) | versions per minute | peak RSS (MB) |")
    print("|---|---|---|---|")
    for n, r in rows:
        print(f"| {n} | {r['seconds']:.1f} | {60 * a.versions / r['seconds']:.1f} | "
              f"{r['rss_peak_mb']:.0f} |")
    print()
    print(f"top-k on a {a.dim}-latent BlobDecoder (64x64 RGB, 4 active latents), measure "
          "explainer, no MLflow (engine.explain_decoder); one process per run")
    print()
    print("| top-k | wall time (s) | peak RSS (MB) | explained | skipped |")
    print("|---|---|---|---|---|")
    for k, r in tops:
        print(f"| {k if k else 'all'} | {r['seconds']:.1f} | {r['rss_peak_mb']:.0f} | "
              f"{r['explained']:.0f} | {r['skipped']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
