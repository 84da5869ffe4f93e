"""The quality suite over several VAEs per family: mean and range, and a calibrated threshold.

One trained VAE is one draw: its latents may come out clean or entangled. The suite therefore runs
each family on VAEs trained with different seeds (the shipped checkpoint is seed 0, the others are
trained once and cached) and reports every figure as the mean and the range over them.

The abstention threshold is calibrated without a leak, leave one model out: for each seed, the
threshold is chosen on the *other* seeds' models (their active latents' certainty against the
"clear" ground truth, maximising balanced accuracy: :func:`lexflow.calibration.choose_threshold`)
and applied to this seed's model, whose latents it never saw. The default threshold 0.5 is
reported next to it on the same answers (:func:`lexflow.quality.suite.rescore`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lexflow.quality.suite import FamilyRun, VariantResult, rescore

DEFAULT_THRESHOLD = 0.5
VARIANT_LABELS = {
    "full": "full (bag-of-words agreement x read-back)",
    "no_bias": "no bias prompt",
    "no_uncertainty": "one answer",
    "semantic": "semantic certainty",
    "no_readback": "agreement alone (no read-back)",
    "dominance": "certainty x dominance",
}
"""How the table names the suite's variants (the paper's ablations)."""


@dataclass(frozen=True)
class Spread:
    """Mean and range of one figure over the models where it was measurable.

    Attributes:
        mean, low, high: in the figure's unit; n: how many models contributed (of ``of``).
    """

    mean: float
    low: float
    high: float
    n: int
    of: int

    def show(self, pct: bool) -> str:
        def f(v: float) -> str:
            return f"{100 * v:.0f}%" if pct else f"{v:.2f}"

        text = f"{f(self.mean)} ({f(self.low)}-{f(self.high)})"
        return text if self.n == self.of else f"{text} [{self.n} of {self.of} models]"


def spread(values: Sequence[float | None]) -> Spread | None:
    got = [float(v) for v in values if v is not None]
    if not got:
        return None
    return Spread(float(np.mean(got)), min(got), max(got), len(got), len(values))


@dataclass
class SeededRuns:
    """One family x explainer over several seeds.

    Attributes:
        runs: seed -> its :class:`FamilyRun` (scored at the default threshold).
        thresholds: seed -> variant -> the threshold calibrated on the other seeds.
        calibrated: seed -> the run's variants rescored at those thresholds.
    """

    family: str
    explainer: str
    runs: dict[int, FamilyRun]
    thresholds: dict[int, dict[str, float]] = field(default_factory=dict)
    calibrated: dict[int, list[VariantResult]] = field(default_factory=dict)


def choose(runs: Sequence[FamilyRun], variant: str) -> float | None:
    """The balanced-accuracy-optimal threshold over the active latents of ``runs``."""
    from lexflow.calibration import choose_threshold

    scores, labels = [], []
    for run in runs:
        for v in run.variants:
            if v.variant != variant:
                continue
            for o in v.latents:
                if o.active:
                    scores.append(o.certainty)
                    labels.append(o.clear)
    if len(set(labels)) < 2:
        return None
    return choose_threshold(np.asarray(scores), np.asarray(labels))


def calibrate(seeded: SeededRuns) -> SeededRuns:
    """Fill ``thresholds`` and ``calibrated`` leave-one-seed-out (needs at least two seeds)."""
    for seed, run in seeded.runs.items():
        others = [r for s, r in seeded.runs.items() if s != seed]
        chosen = {}
        for variant in run.answers:
            t = choose(others, variant) if others else None
            chosen[variant] = DEFAULT_THRESHOLD if t is None else t
        seeded.thresholds[seed] = chosen
        seeded.calibrated[seed] = rescore(run, chosen)
    return seeded


def _cells(results: list[VariantResult], self_consistency: bool) -> list[str]:
    def cell(values: Sequence[float | None], pct: bool = True) -> str:
        s = spread(values)
        return "n/a" if s is None else s.show(pct)

    chance = spread([r.detection_chance for r in results])
    coverage = spread([r.direction_coverage for r in results])
    det = cell([r.detection for r in results])
    dirn = cell([r.direction for r in results])
    return [
        f"{cell([r.factor_accuracy for r in results])} of {'/'.join(str(r.clear) for r in results)}",
        cell([r.auroc for r in results], pct=False),
        f"{det} (chance {chance.mean:.0%})" if chance else det,
        f"{dirn} (coverage {coverage.mean:.0%})" if coverage else dirn,
        cell([r.explained / len(r.latents) if r.latents else None for r in results]),
    ]


def markdown(seeded: SeededRuns) -> str:
    """The family x explainer table: per variant, the default and the calibrated threshold."""
    seeds = sorted(seeded.runs)
    first = seeded.runs[seeds[0]]
    judged = "self-consistency" if first.self_consistency else "judge"
    lines = [
        f"#### {seeded.family} · `{seeded.explainer}` · {len(seeds)} VAEs (seeds "
        f"{', '.join(map(str, seeds))})",
        "",
        f"| variant | threshold | factor acc. (clear latents per seed) | abstention AUROC "
        f"| detection, {judged} | direction, {judged} | explained fraction |",
        "|---|---|---|---|---|---|---|",
    ]
    variants = [v.variant for v in first.variants]
    for variant in variants:
        default = [next(v for v in seeded.runs[s].variants if v.variant == variant) for s in seeds
                   if any(v.variant == variant for v in seeded.runs[s].variants)]
        label = f"{VARIANT_LABELS.get(variant, variant)} (`{variant}`)"
        lines.append(f"| {label} | 0.5 | " + " | ".join(_cells(default, first.self_consistency)) + " |")
        if seeded.calibrated:
            cal = [next(v for v in seeded.calibrated[s] if v.variant == variant) for s in seeds
                   if any(v.variant == variant for v in seeded.calibrated.get(s, []))]
            ts = [seeded.thresholds[s][variant] for s in seeds if variant in seeded.thresholds[s]]
            lines.append(f"| {label} | calibrated ({min(ts):.2f}-{max(ts):.2f}) | "
                         + " | ".join(_cells(cal, first.self_consistency)) + " |")
    skipped = sorted({f"{name}: {why}" for r in seeded.runs.values() for name, why in r.skipped.items()})
    if skipped:
        lines += ["", "Unavailable (reported as n/a, never as 0): " + "; ".join(skipped)]
    return "\n".join(lines)


def latent_table(seeded: SeededRuns, variant: str = "full") -> str:
    """Every latent of every seed under ``variant`` at the default threshold: what the encoder
    says it tracks (the ground truth of "clear"), the certainty and the explanation, so a reader
    can see which latents move the factor accuracy and the AUROC. Explanations are escaped (an
    MLLM's text is untrusted) and cut to 160 characters."""
    from lexflow.quality.suite import CLEAR_RUNNER_UP, CLEAR_TOP
    from lexflow.record import md_escape

    lines = [
        f"<details><summary>{seeded.family} · <code>{md_escape(seeded.explainer, 200)}</code> · "
        f"every latent ({VARIANT_LABELS.get(variant, variant)}, threshold 0.5)</summary>",
        "",
        f"Clear: active, top factor >= {CLEAR_TOP} and runner-up <= {CLEAR_RUNNER_UP} "
        "(|correlation| of the posterior means with the factors over encoded data).",
        "",
        "| seed | latent | top factor | runner-up | clear | certainty | names the top factor "
        "| explanation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed in sorted(seeded.runs):
        run = seeded.runs[seed]
        result = next((v for v in run.variants if v.variant == variant), None)
        if result is None:
            continue
        for o in result.latents:
            scores = sorted(run.factor_map[o.index]["scores"].items(), key=lambda kv: -kv[1])
            runner = f"{scores[1][0]} {scores[1][1]:.2f}" if len(scores) > 1 else "-"
            clear = "yes" if o.clear else ("no (inactive)" if not o.active else "no")
            text = md_escape(o.explanation, 160) if o.explanation else "*No clear explanation*"
            named = ("yes" if o.correct else "no") if o.explanation else "-"
            lines.append(f"| {seed} | {o.index} | {o.factor} {o.score:.2f} | {runner} | {clear} "
                         f"| {o.certainty:.2f} | {named} | {text} |")
    lines += ["", "</details>"]
    return "\n".join(lines)
