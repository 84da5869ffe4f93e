"""The quality suite: explainers on VAEs trained on families with known factors.

For one family and one explainer it runs lexflow's own stages (decode, evidence, explainer,
uncertainty; no MLflow) and scores, per variant:

- factor accuracy: of the *clear* latents (active, top factor score >= CLEAR_TOP and runner-up
  <= CLEAR_RUNNER_UP, from encoded data: lexflow.families.train.factor_map), the fraction whose
  reported explanation names that factor (the family's words); "No clear explanation" is a miss.
- abstention AUROC: certainty as the score of "this latent is clear" over every latent
  (inactive latents have certainty 0); None when all latents have the same label.
- detection: the explanation against its own traversal and up to DISTRACTORS other active
  latents' traversals, the target at every position once; the mean over explained latents of
  the fraction picked right (macro average, so each latent weighs the same and a judge that
  always picks one position cannot win). Chance is 1 / (distractors + 1).
- direction: each explained latent's grid shown forward and reversed (no value header); the
  balanced accuracy of the judge's +1/-1 over latents whose explanation states a direction;
  coverage = that share of explained latents.

Variants (the paper's ablations): ``full`` (what ``lexflow explain`` reports: the answers'
agreement times the encoder's read-back, lexflow.stages.readback); ``no_bias`` (no comparison
rows, bias 'none'); ``no_uncertainty`` (only the first answer: agreement 1 when it is non-empty);
``semantic`` (semantic agreement, when lexflow.uncertainty.similarity_for("semantic") is
available). And two of lexflow's: ``no_readback`` (the full answers, certainty = agreement alone,
as the paper scores it: what the read-back adds), and ``dominance`` (certainty also multiplied by
:func:`dominance`, the share of the measured change its largest part-property carries: a candidate
that also asks "does the latent change one thing?", not used by ``lexflow explain``). Every
variant but ``no_readback`` multiplies by the read-back, as ``explain`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lexflow.families.base import Family
from lexflow.quality.judge import Tally, judge_basis

CLEAR_TOP = 0.6
CLEAR_RUNNER_UP = 0.4
DISTRACTORS = 3
VARIANTS = ("full", "no_bias", "no_uncertainty", "semantic", "no_readback", "dominance")


@dataclass(frozen=True)
class LatentOutcome:
    """One latent under one variant.

    Attributes:
        index: latent index; active: the traversal changes the images (evidence).
        factor: the factor it tracks best in encoded data; score, runner_up: |correlation| of
            the best and second factor (in [0, 1]); clear: the ground-truth "clear" label.
        explanation: the reported explanation, or None ("No clear explanation").
        certainty: in [0, 1]; named: the factors the explanation names; correct: names ``factor``.
    """

    index: int
    active: bool
    factor: str
    score: float
    runner_up: float
    clear: bool
    explanation: str | None
    certainty: float
    named: tuple[str, ...]
    correct: bool


@dataclass(frozen=True)
class VariantResult:
    """Scores of one family x explainer x variant (fractions in [0, 1]; None = not measurable).

    ``judge`` says what detection and direction measure (lexflow.quality.judge.judge_basis:
    "self-consistency" for the measure explainer, "from grids" for an MLLM; "" = not judged);
    ``judge_asked`` / ``judge_unavailable``: judge questions put, and those left unanswered
    (each scored as a miss; a score whose every question went unanswered is None).
    """

    family: str
    explainer: str
    variant: str
    latents: tuple[LatentOutcome, ...]
    factor_accuracy: float | None
    clear: int
    auroc: float | None
    detection: float | None
    detection_chance: float | None
    direction: float | None
    direction_coverage: float | None
    explained: int
    note: str = ""
    judge: str = ""
    judge_asked: int = 0
    judge_unavailable: int = 0

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "latents"}


@dataclass(frozen=True)
class _Views:
    """Per latent: the forward and reversed header-less requests used by the judge."""

    forward: dict[int, Any]
    reverse: dict[int, Any]


@dataclass
class FamilyRun:
    """What :func:`run_family` computed, kept for reports.

    ``answers`` keeps, per variant and latent, the consensus answer and its certainty before any
    threshold, so :func:`rescore` can report the same run at another (calibrated) threshold
    without explaining again; ``self_consistency`` is True when the judge reads lexflow's own
    measured evidence (the offline explainers), so detection and direction are not independent.
    """

    family: str
    explainer: str
    variants: list[VariantResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    factor_map: dict[int, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, dict[int, tuple[str | None, float]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    self_consistency: bool = False
    _context: Any = None


def auroc(labels: list[bool], scores: list[float]) -> float | None:
    if len(set(labels)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def dominance(evidence: Any) -> float:
    """The share of a traversal's measured change that its largest change carries: the largest
    score over every part and property (``Evidence.changes``) divided by their sum, in [0, 1]
    (0 when nothing moves). 1: one thing changes; 1/k: k things change as much."""
    scores = [max(0.0, float(c.score)) for c in evidence.changes]
    total = sum(scores)
    return max(scores) / total if total > 0 else 0.0


def _views(decoder: Any, config: Any, indices: tuple[int, ...]) -> _Views:
    """Decode each traversal again and build forward and reversed requests without headers."""
    from lexflow import names
    from lexflow.explainers.base import ExplainRequest
    from lexflow.stages.decode import BatchDecoder, decode_traversals
    from lexflow.stages.evidence import measure_traversal
    from lexflow.stages.plan import TraversalPlan
    from lexflow.stages.render import png_bytes, traversal_grid

    plan = TraversalPlan.from_config(decoder.latent_dim, config)
    batch = BatchDecoder(decoder, batch_size=config.batch_size, output_range=(0.0, 1.0))
    fwd: dict[int, Any] = {}
    rev: dict[int, Any] = {}
    d = decoder.latent_dim
    for t in decode_traversals(batch, plan.codes, list(indices), plan.rows, plan.values):
        for out, frames, values in ((fwd, t.frames, plan.values),
                                    (rev, t.frames[:, ::-1].copy(), plan.values[::-1])):
            out[t.index] = ExplainRequest(
                index=t.index, label=names.latent_label(t.index, d), bias="disentanglement",
                values=tuple(values), grid_png=png_bytes(traversal_grid(frames, None)),
                evidence=measure_traversal(t.index, frames), samples=config.samples)
    return _Views(fwd, rev)


def detection_score(judge: Any, explanations: dict[int, str], views: _Views, active: list[int],
                    seed: int = 0) -> tuple[float | None, float | None]:
    """(macro accuracy, chance) of picking each explained latent among distractors."""
    rng = np.random.default_rng(seed)
    per_latent, chances = [], []
    for i, text in explanations.items():
        others = [j for j in active if j != i]
        k = min(DISTRACTORS, len(others))
        if k == 0:
            continue
        hits = []
        for pos in range(k + 1):
            picks = [int(j) for j in rng.choice(others, size=k, replace=False)]
            order = picks[:pos] + [i] + picks[pos:]
            hits.append(judge.detect(text, [views.forward[j] for j in order]) == pos)
        per_latent.append(float(np.mean(hits)))
        chances.append(1.0 / (k + 1))
    if not per_latent:
        return None, None
    return float(np.mean(per_latent)), float(np.mean(chances))


def direction_score(judge: Any, explanations: dict[int, str],
                    views: _Views) -> tuple[float | None, float | None]:
    """(balanced accuracy over forward/reversed grids, coverage)."""
    fwd_ok, rev_ok = [], []
    for i, text in explanations.items():
        a, b = judge.direction(text, views.forward[i]), judge.direction(text, views.reverse[i])
        if a == 0 and b == 0:
            continue
        fwd_ok.append(a == 1)
        rev_ok.append(b == -1)
    if not explanations:
        return None, None
    coverage = len(fwd_ok) / len(explanations)
    if not fwd_ok:
        return None, coverage
    return 0.5 * (float(np.mean(fwd_ok)) + float(np.mean(rev_ok))), coverage


def _outcomes(family: Family, fmap: dict[int, dict[str, Any]], active: dict[int, bool],
              reported: dict[int, tuple[str | None, float]],
              threshold: float = 0.0) -> tuple[LatentOutcome, ...]:
    """Per latent outcome; an answer whose certainty is below ``threshold`` is an abstention."""
    out = []
    for i, info in fmap.items():
        ranked = sorted(info["scores"].values(), reverse=True)
        runner = ranked[1] if len(ranked) > 1 else 0.0
        clear = bool(info["active"] and info["score"] >= CLEAR_TOP and runner <= CLEAR_RUNNER_UP)
        text, certainty = reported.get(i, (None, 0.0))
        if certainty < threshold:
            text = None
        named = tuple(family.named_factors(text)) if text else ()
        out.append(LatentOutcome(i, active[i], info["factor"], float(info["score"]), float(runner),
                                 clear, text, certainty, named, info["factor"] in named))
    return tuple(out)


def _score(family: Family, explainer: str, variant: str, outcomes: tuple[LatentOutcome, ...],
           judge: Any, views: _Views | None, active: list[int], seed: int,
           note: str = "") -> VariantResult:
    clear = [o for o in outcomes if o.clear]
    acc = sum(o.correct for o in clear) / len(clear) if clear else None
    roc = auroc([o.clear for o in outcomes], [o.certainty for o in outcomes])
    texts = {o.index: o.explanation for o in outcomes if o.explanation}
    det = chance = dirn = cov = None
    basis, tallies = "", [Tally(judge), Tally(judge)]
    if judge is not None and views is not None:
        basis = judge_basis(judge)
        det, chance = detection_score(tallies[0], texts, views, active, seed)
        dirn, cov = direction_score(tallies[1], texts, views)
        det, dirn = tallies[0].unless_all_failed(det), tallies[1].unless_all_failed(dirn)
    return VariantResult(family.name, explainer, variant, outcomes, acc, len(clear), roc, det,
                         chance, dirn, cov, len(texts), note, basis, sum(t.asked for t in tallies),
                         sum(t.unavailable for t in tallies))


def run_family(family: Family, model: Any, *, explainer: str = "measure", rows: int = 4,
               samples: int = 5, threshold: float = 0.5, seed: int = 0, eval_n: int = 4000,
               variants: tuple[str, ...] = VARIANTS, judge: bool = True,
               options: dict[str, Any] | None = None) -> FamilyRun:
    """Every variant of the suite for one trained model of ``family``; ``options``: explainer
    options, as ``lexflow explain -o key=value`` gives them."""
    from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
    from lexflow.config import ExplainConfig
    from lexflow.engine import explain_measured, latent_prepared, measure_latents
    from lexflow.errors import LexflowError
    from lexflow.explainers.base import get_explainer
    from lexflow.families.train import factor_map
    from lexflow.quality.judge import judge_for
    from lexflow.tracking.job import explainer_options
    from lexflow.uncertainty import bow_similarity, consensus, similarity_for, with_readback

    config = ExplainConfig(explainer=explainer, rows=rows, samples=samples, threshold=threshold,
                           seed=seed, device="cpu", extra=dict(options or {}))
    exp = get_explainer(explainer, explainer_options(config))
    run = FamilyRun(family.name, exp.uri, self_consistency=not exp.is_mllm)
    the_judge = None
    if judge:
        try:
            the_judge = judge_for(exp)
        except LexflowError as exc:
            run.skipped["detection/direction"] = str(exc)
    run.factor_map = factor_map(model, family, family.generate(eval_n, seed=seed + 1000))
    decoder = PyTorchVAEAdapter(model, device="cpu")
    d = decoder.latent_dim
    indices = tuple(range(d))
    measured, _, values = measure_latents(decoder, config, indices, bias="disentanglement",
                                          output_range=(0.0, 1.0), progress=False)
    active = {i: measured[i].evidence.active for i in indices}
    active_list = [i for i in indices if active[i]]
    views = _views(decoder, config, indices) if the_judge is not None else None

    def explain(meas: dict[int, Any], bias: str) -> dict[int, Any]:
        return explain_measured(exp, meas, latent_prepared(d, config, bias), config)

    full = explain(measured, "disentanglement")

    def reported(responses: dict[int, Any], similarity: Any = bow_similarity,
                 first_only: bool = False, read_back: bool = True,
                 ) -> dict[int, tuple[str | None, float]]:
        """Latent -> (consensus answer, certainty), before any threshold: the agreement, times
        the read-back (as ``lexflow explain`` reports it) unless ``read_back`` is False."""
        out: dict[int, tuple[str | None, float]] = {}
        for i, resp in responses.items():
            answers = resp.answers[:1] if first_only else resp.answers
            c = consensus(answers, threshold=0.0, similarity=similarity)
            if read_back:
                c = with_readback(c, measured[i].evidence.readback, 0.0)
            out[i] = (c.medoid, c.certainty)
        return out

    for variant in variants:
        note = ""
        if variant == "full":
            rep = reported(full)
        elif variant == "no_bias":
            plain = {i: replace(m, comparison=None, comparison_grid=None, partner=None)
                     for i, m in measured.items()}
            try:
                rep = reported(explain(plain, "none"))
            except LexflowError as exc:
                run.skipped[variant] = f"the explainer failed without a bias: {exc}"
                continue
            note = "no comparison rows, bias 'none'"
        elif variant == "no_uncertainty":
            rep = reported(full, first_only=True)
            note = "first answer only"
        elif variant == "dominance":
            rep = {i: (text, certainty * dominance(measured[i].evidence))
                   for i, (text, certainty) in reported(full).items()}
            note = "certainty x dominance of the largest measured change"
        elif variant == "no_readback":
            rep = reported(full, read_back=False)
            note = "agreement alone, without the encoder's read-back"
        elif variant == "semantic":
            try:
                sim = similarity_for("semantic")
                rep = reported(full, similarity=sim)
            except LexflowError as exc:
                run.skipped[variant] = f"semantic certainty unavailable: {exc}"
                continue
            except Exception as exc:  # an optional model failing to load must not end the suite
                run.skipped[variant] = f"semantic certainty failed ({type(exc).__name__}): {exc}"
                continue
        else:
            raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
        run.answers[variant] = rep
        run.notes[variant] = note
    run._context = (family, active, the_judge, views, active_list, seed)
    run.variants = rescore(run, {v: threshold for v in run.answers})
    return run


def rescore(run: FamilyRun, thresholds: dict[str, float]) -> list[VariantResult]:
    """The run's variants scored at ``thresholds`` (variant -> certainty threshold).

    The answers and certainties are the run's own; only which explanations stand changes, so a
    calibrated threshold is compared with the default on exactly the same answers.
    """
    family, active, judge, views, active_list, seed = run._context
    out = []
    for variant, threshold in thresholds.items():
        outcomes = _outcomes(family, run.factor_map, active, run.answers[variant], threshold)
        out.append(_score(family, run.explainer, variant, outcomes, judge, views, active_list,
                          seed, run.notes[variant]))
    return out


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.0f}%" if pct else f"{v:.2f}"


def markdown_table(runs: list[FamilyRun]) -> str:
    """One row per family x explainer x variant, then what was skipped and why."""
    lines = [
        "| family | explainer | variant | factor acc. (clear) | abstention AUROC | detection (chance) "
        "| direction (coverage) | judged | explained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for v in run.variants:
            det = f"{_fmt(v.detection)} ({_fmt(v.detection_chance)})" if v.detection is not None else "n/a"
            dirn = (f"{_fmt(v.direction)} ({_fmt(v.direction_coverage)})"
                    if v.direction_coverage is not None else "n/a")
            judged = v.judge or "n/a"
            if v.judge_unavailable:
                judged += f" ({v.judge_unavailable} of {v.judge_asked} unanswered)"
            lines.append(
                f"| {v.family} | `{v.explainer}` | {v.variant} | {_fmt(v.factor_accuracy)} of {v.clear} "
                f"| {_fmt(v.auroc, pct=False)} | {det} | {dirn} | {judged} "
                f"| {v.explained}/{len(v.latents)} |")
    skipped = [f"- {run.family} / {name}: {why}" for run in runs for name, why in run.skipped.items()]
    if skipped:
        lines += ["", "Skipped:", *skipped]
    return "\n".join(lines)
