"""The quality suite on the synthetic families: factor accuracy, abstention AUROC, detection,
direction and the paper's ablations, for each explainer.

    python benchmarks/quality.py [--family dsprites --family digits] [--explainer measure]
                                 [--epochs N --n N] [--json] [--out table.md]

Each family's VAE is loaded from lexflow/families/checkpoints/ or the cache, or trained
(python -m lexflow.families train). MLLM explainers run when named with --explainer (their key or
local server configured as for `lexflow explain`); the offline `measure` explainer always runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from lexflow.families import FAMILY_NAMES, get_family
from lexflow.families.train import load_or_train, with_overrides
from lexflow.quality.suite import FamilyRun, markdown_table, run_family


def run(families: list[str], explainers: list[str], *, epochs: int | None = None,
        n: int | None = None, rows: int = 4, eval_n: int = 4000,
        progress: bool = True) -> tuple[list[FamilyRun], dict[str, str]]:
    """Every family x explainer; returns the runs and where each model came from."""
    runs, sources = [], {}
    for name in families:
        fam = get_family(name)
        settings = with_overrides(fam.train, epochs=epochs, n=n)
        start = time.perf_counter()
        model, where = load_or_train(fam, settings, progress=progress)
        sources[name] = f"{where} ({time.perf_counter() - start:.0f} s)"
        for uri in explainers:
            runs.append(run_family(fam, model, explainer=uri, rows=rows, eval_n=eval_n))
    return runs, sources


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", action="append", choices=FAMILY_NAMES)
    p.add_argument("--explainer", action="append")
    p.add_argument("--epochs", type=int)
    p.add_argument("--n", type=int)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--eval-n", type=int, default=4000)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="also write the markdown table here")
    args = p.parse_args(argv)
    start = time.perf_counter()
    runs, sources = run(args.family or list(FAMILY_NAMES), args.explainer or ["measure"],
                        epochs=args.epochs, n=args.n, rows=args.rows, eval_n=args.eval_n)
    if args.json:
        print(json.dumps({"runs": [{"family": r.family, "explainer": r.explainer,
                                    "variants": [v.row() for v in r.variants],
                                    "skipped": r.skipped} for r in runs],
                          "models": sources}, indent=1))
        return
    table = markdown_table(runs)
    lines = [table, "", "Models: " + "; ".join(f"{k}: {v}" for k, v in sources.items()),
             f"Suite time: {time.perf_counter() - start:.0f} s"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
