"""The quality suite on the synthetic families, over several VAEs per family: factor accuracy,
abstention AUROC, detection, direction, explained fraction and the paper's ablations, each as the
mean and range over the seeds, at the default threshold and at a leave-one-seed-out calibrated one.

    python benchmarks/quality.py [--family dsprites --family digits] [--explainer measure]
                                 [--seeds 0,1,2] [--train] [-o KEY=VALUE ...] [--json]
                                 [--out table.md]

Seed 0 is the shipped checkpoint (lexflow/families/checkpoints/); other seeds come from the cache
(~/.cache/lexflow/families, keyed by settings, seed and code version), trained and cached first
with --train (``make bench`` passes it). Without --train, a seed with no checkpoint is an error
listing the seeds that have one. MLLM explainers run when named with --explainer (their key or
local server configured as for `lexflow explain`). ``-o/--option KEY=VALUE`` (repeatable) passes
an explainer option exactly as ``lexflow explain -o`` does (temperature, judge_temperature,
base_url, ...), to every explainer named; each explainer checks its own. Bad input (an unknown
family, explainer, seed or explainer option) exits 2 with the available ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lexflow.errors import ConfigError, LexflowError

DEFAULT_SEEDS = (0, 1, 2)


def load_model(family: Any, seed: int, *, train: bool, progress: bool) -> tuple[Any, str]:
    """(model, "where it came from, how long training took") for the family's default settings
    (lexflow.families.train.load_or_train)."""
    from lexflow.families.train import load_or_train

    return load_or_train(family, seed=seed, progress=progress, allow_train=train, train_flag="--train")


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise ConfigError(f"--seeds takes comma-separated non-negative integers, got {text!r}.") from exc
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds takes distinct non-negative integers, got {text!r}.")
    return seeds


def parse_options(items: list[str]) -> dict[str, str]:
    """``-o KEY=VALUE`` items, read as ``lexflow explain -o`` reads them."""
    from lexflow.config import parse_explainer_options

    try:
        return parse_explainer_options(items)
    except ConfigError as exc:
        raise ConfigError(f"-o/--option: {exc}") from exc


def check_inputs(families: list[str], explainers: list[str],
                 options: dict[str, str] | None = None) -> None:
    """Every family and explainer exists and takes ``options`` (ConfigError saying what is wrong
    and what exists otherwise)."""
    from lexflow.explainers.base import get_explainer
    from lexflow.families import get_family

    for name in families:
        get_family(name)
    for uri in explainers:
        get_explainer(uri, dict(options or {}))


def run(families: list[str], explainers: list[str], seeds: tuple[int, ...], *, train: bool,
        rows: int = 4, eval_n: int = 4000, progress: bool = True,
        options: dict[str, str] | None = None) -> tuple[list[Any], dict[str, str]]:
    """Every family x explainer x seed, calibrated; returns the SeededRuns and model sources."""
    from lexflow.families import get_family
    from lexflow.quality.seeds import SeededRuns, calibrate
    from lexflow.quality.suite import run_family

    out, sources = [], {}
    for name in families:
        fam = get_family(name)
        models = {}
        for seed in seeds:
            models[seed], sources[f"{name} seed {seed}"] = load_model(fam, seed, train=train,
                                                                      progress=progress)
        for uri in explainers:
            runs = {seed: run_family(fam, model, explainer=uri, rows=rows, eval_n=eval_n,
                                     options=options)
                    for seed, model in models.items()}
            out.append(calibrate(SeededRuns(name, runs[seeds[0]].explainer, runs)))
    return out, sources


HOW = """Each figure: mean (min-max) over the VAEs of the family (seed 0 is the shipped checkpoint;
the others are trained by `make bench` with the same settings and cached). Threshold `0.5`: the
default. `calibrated (a-b)`: leave one VAE out - each VAE's threshold is chosen (max balanced
accuracy, `lexflow.calibration.choose_threshold`) on the active latents of the *other* VAEs and
applied to this one's, which it never saw; a-b is the range of those thresholds. AUROC does not
depend on the threshold. For an offline explainer the judge reads the same measured evidence as
the explainer, so detection and direction are labelled self-consistency, not an independent
judgement."""


def main(argv: list[str] | None = None) -> int:
    from lexflow.families import FAMILY_NAMES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", action="append", help=f"one of {', '.join(FAMILY_NAMES)} (repeatable)")
    p.add_argument("--explainer", action="append", help="explainer URI (repeatable; default measure)")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)))
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an explainer option, as `lexflow explain -o` takes it (temperature, "
                        "judge_temperature, base_url, ...); repeatable")
    p.add_argument("--train", action="store_true", help="train and cache seeds with no checkpoint")
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--eval-n", type=int, default=4000)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    families, explainers = args.family or list(FAMILY_NAMES), args.explainer or ["measure"]
    start = time.perf_counter()
    try:
        seeds = parse_seeds(args.seeds)
        options = parse_options(args.option)
        check_inputs(families, explainers, options)
        results, sources = run(families, explainers, seeds, train=args.train, rows=args.rows,
                               eval_n=args.eval_n, options=options)
    except LexflowError as exc:
        print(f"benchmarks/quality.py: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps({"results": [{
            "family": r.family, "explainer": r.explainer,
            "seeds": {str(s): {"default": [v.row() for v in run.variants],
                               "thresholds": r.thresholds[s],
                               "calibrated": [v.row() for v in r.calibrated[s]],
                               "skipped": run.skipped} for s, run in r.runs.items()}}
            for r in results], "models": sources}, indent=1))
        return 0
    from lexflow.quality.seeds import latent_table, markdown

    parts = [HOW, ""]
    for r in results:
        parts += [markdown(r), "", latent_table(r), ""]
    parts += ["Models: " + "; ".join(f"{k}: {v}" for k, v in sources.items()) + ".",
              "", f"Suite time: {time.perf_counter() - start:.0f} s."]
    text = "\n".join(parts)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
