"""What every shipped checkpoint is: its file, latents, training time, code version and factor table.

    python benchmarks/checkpoints.py [--eval-n 4000]

For the demo (lexflow/demo/checkpoint.pt) and each family (lexflow/families/checkpoints/*.pt):
file size, latent count, how many latents the encoder uses (posterior-mean variance above
lexflow.demo.train.ACTIVE_THRESHOLD), the settings, the code version and the training time
recorded in the checkpoint, then per latent the factor it tracks best in encoded data (|Spearman|;
periodic hues: best of hue, cos, sin; categorical: correlation ratio) and the runner-up.
tests/unit/test_checkpoints.py loads every checkpoint into the code as it is and checks these tables
(factor scores within its stated tolerance) from a few hundred freshly encoded images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVAL_SEED_OFFSET = 1000
"""Factor tables use images from ``generate(n, seed=<checkpoint seed> + 1000)``, never training data."""


def table(fmap: dict[int, dict[str, Any]]) -> list[str]:
    lines = ["| latent | activity | active | factor | score | runner-up |", "|---|---|---|---|---|---|"]
    for j, info in fmap.items():
        ranked = sorted(info["scores"].items(), key=lambda kv: -kv[1])
        runner = f"{ranked[1][0]} {ranked[1][1]:.2f}" if len(ranked) > 1 else "-"
        lines.append(f"| {j} | {info['activity']:.2f} | {'yes' if info['active'] else 'no'} | "
                     f"{info['factor']} | {info['score']:.2f} | {runner} |")
    return lines


def demo(eval_n: int) -> list[str]:
    from lexflow.demo import shapes
    from lexflow.demo.train import CHECKPOINT, DEFAULTS, factor_map, load_shipped

    model = load_shipped()
    fmap = factor_map(model, shapes.generate(eval_n, seed=123))
    active = sum(info["active"] for info in fmap.values())
    settings = ", ".join(f"{k} {v}" for k, v in DEFAULTS.items())
    return [f"### demo: `{CHECKPOINT.relative_to(ROOT)}`", "",
            f"{CHECKPOINT.stat().st_size / 1e6:.1f} MB · {model.latent_dim} latents, {active} active "
            f"· settings: {settings} · factor table from {eval_n} images (seed 123)", "",
            *table(fmap), ""]


def family(name: str, eval_n: int) -> list[str]:
    from lexflow.families import get_family
    from lexflow.families.train import SHIPPED, SHIPPED_SEED, factor_map, read_checkpoint

    fam = get_family(name)
    path = SHIPPED / f"{name}.pt"
    model, meta = read_checkpoint(path, fam, fam.train, SHIPPED_SEED)
    seed = SHIPPED_SEED + EVAL_SEED_OFFSET
    fmap = factor_map(model, fam, fam.generate(eval_n, seed=seed))
    active = sum(info["active"] for info in fmap.values())
    took = f"{meta.train_seconds:.0f} s" if meta.train_seconds is not None else "not recorded"
    settings = ", ".join(f"{k} {v}" for k, v in meta.config.items() if k != "family")
    return [f"### {name}: `{path.relative_to(ROOT)}`", "",
            f"{path.stat().st_size / 1e6:.1f} MB · {fam.train.latent_dim} latents, {active} active · "
            f"trained in {took} · code version `{meta.code_version}` (lexflow {meta.lexflow_version}) "
            f"· settings: {settings} · factor table from {eval_n} images (seed {seed})", "",
            *table(fmap), ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval-n", type=int, default=4000)
    args = p.parse_args(argv)
    from lexflow.errors import LexflowError
    from lexflow.families import FAMILY_NAMES

    try:
        lines = demo(args.eval_n)
        for name in FAMILY_NAMES:
            lines += family(name, args.eval_n)
    except LexflowError as exc:
        print(f"benchmarks/checkpoints.py: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
