"""Score a run's explanations against human-written references (``lexflow evaluate``).

The reference file is JSON Lines, one latent a line::

    {"latent": 0, "references": ["moves the shape from left to right", "horizontal position"]}
    {"latent": 1, "references": ["No clear explanation"]}

It must name every latent of the run, once, each with at least one non-empty reference; anything
else (a missing latent, an index the run does not have, an empty list, a malformed line) is a
:class:`ReferencesError` listing every problem (exit 2) - never a silent zero. A latent the run
reports as "No clear explanation" (unclear or inactive) is scored with exactly that text, so a
reference that says the latent has no clear meaning rewards the abstention.

Metrics are logged as ``quality.<metric>`` (corpus) and ``quality.<metric>.latent_<NN>`` (per
latent) on the run the explanations came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lexflow import names
from lexflow.errors import ConfigError, MissingDependencyError
from lexflow.quality.metrics import CorpusScores, score_corpus

METRIC_PREFIX = "quality."
PRINTED = ("bleu_4", "rouge_l", "meteor", "cider_d", "bertscore_f1")
"""The metrics of the table (every BLEU order is still logged and in --json)."""


class ReferencesError(ConfigError):
    """The reference file does not match the run's latents, or cannot be read (exit 2)."""


@dataclass(frozen=True)
class Explained:
    """The part of an explanations.json that evaluation needs.

    Attributes:
        run_id: the run that wrote it ("" when unknown).
        latent_dim: the model's number of latents.
        latents: index -> the reported text (the explanation, or "No clear explanation").
        status: index -> explained / unclear / inactive / failed.
        source: where it was read from (a path or ``runs:/<id>``).
    """

    run_id: str
    latent_dim: int
    latents: dict[int, str]
    status: dict[int, str]
    source: str


def parse_explanations(doc: Mapping[str, Any], source: str) -> Explained:
    """An :class:`Explained` from a parsed explanations.json (schema lexflow.explanations/1)."""
    from lexflow.record import ExplainResult

    result = ExplainResult.from_dict(doc, source)
    latents = {r.index: r.explanation or names.NO_CLEAR_EXPLANATION for r in result.latents}
    status = {r.index: r.status for r in result.latents}
    return Explained(result.run_id, result.latent_dim, latents, status, source)


def load_explanations(source: str, *, workdir: str | None = None) -> Explained:
    """From a file, a directory holding lexflow/explanations.json, or a run id (``runs:/<id>``)."""
    from lexflow.tracking.explanations import explanations_file, read_file_doc

    path = explanations_file(Path(source))
    if path.is_file():
        return parse_explanations(read_file_doc(path), str(path))
    from lexflow.quality import runs

    run_id = source.removeprefix("runs:/").strip("/")
    return parse_explanations(runs.download_explanations(run_id, workdir), f"runs:/{run_id}")


def read_references(path: str | os.PathLike[str], explained: Explained) -> dict[int, list[str]]:
    """Index -> references, checked against the run's latents (every problem in one error)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:  # a non-UTF-8 file is bad input
        raise ReferencesError(f"Could not read the reference file {path} as UTF-8 text: "
                              f"{exc}") from exc
    refs: dict[int, list[str]] = {}
    problems: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            index, texts = rec["latent"], rec["references"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"line {n}: expected {{\"latent\": <index>, \"references\": [...]}}; "
                            f"got {line[:80]!r}")
            continue
        if isinstance(index, str) and index.isdigit():
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, int):
            problems.append(f"line {n}: latent must be an integer index; got {index!r}")
            continue
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            problems.append(f"line {n} (latent {index}): references must be a list of strings")
            continue
        kept = [t.strip() for t in texts if t.strip()]
        if not kept:
            problems.append(f"line {n} (latent {index}): no non-empty reference")
        if index in refs:
            problems.append(f"line {n}: latent {index} appears twice")
        refs[index] = kept
    unknown = sorted(set(refs) - set(explained.latents))
    missing = sorted(set(explained.latents) - set(refs))
    if unknown:
        problems.append(f"latents {unknown} are not in the run (it has {sorted(explained.latents)})")
    if missing:
        problems.append(f"latents {missing} of the run have no references")
    if problems:
        raise ReferencesError(
            f"The reference file {path} does not match {explained.source}:\n  - "
            + "\n  - ".join(problems)
            + "\nGive every latent of the run one line with at least one reference "
            "(write 'No clear explanation' for a latent without a clear meaning)."
        )
    return refs


@dataclass(frozen=True)
class Evaluation:
    """Scores of one run against references.

    Attributes:
        explained: what was scored.
        indices: the latents, in the order of ``scores.per_item``.
        scores: corpus and per-latent scores (see :mod:`lexflow.quality.metrics` for scales).
        references: index -> the references used.
        logged_to: the run id the metrics were logged to, or None.
    """

    explained: Explained
    indices: tuple[int, ...]
    scores: CorpusScores
    references: dict[int, list[str]]
    logged_to: str | None = None

    def metrics(self) -> dict[str, float]:
        """MLflow metric name -> value (corpus and per latent)."""
        d = self.explained.latent_dim
        out = {f"{METRIC_PREFIX}{k}": v for k, v in self.scores.corpus.items()}
        for k, values in self.scores.per_item.items():
            for i, v in zip(self.indices, values, strict=True):
                out[f"{METRIC_PREFIX}{k}.latent_{names.latent_label(i, d)}"] = v
        return out

    def to_dict(self) -> dict[str, Any]:
        d = self.explained.latent_dim
        return {
            "source": self.explained.source,
            "run_id": self.explained.run_id or None,
            "corpus": self.scores.corpus,
            "unavailable": self.scores.unavailable,
            "notes": self.scores.notes,
            "latents": [
                {"index": i, "label": names.latent_label(i, d), "status": self.explained.status[i],
                 "explanation": self.explained.latents[i], "references": self.references[i],
                 "scores": {k: v[n] for k, v in self.scores.per_item.items()}}
                for n, i in enumerate(self.indices)
            ],
            "logged_to": self.logged_to,
        }


def evaluate(source: str, references: str | os.PathLike[str], *, bertscore_model: str | None = None,
             log: bool | None = None) -> Evaluation:
    """Score the explanations of ``source`` (a file or a run id) against ``references``.

    ``log``: None logs when ``source`` is a run id and not when it is a file; True logs to the
    run named in the file too; False never logs.
    """
    import tempfile

    from lexflow.quality.metrics import BertScorer

    with tempfile.TemporaryDirectory(prefix="lexflow-eval-") as tmp:
        explained = load_explanations(source, workdir=tmp)
    refs = read_references(references, explained)
    bert, bert_missing = None, None
    if bertscore_model:
        try:
            bert = BertScorer(bertscore_model)
        except MissingDependencyError as exc:  # reported as unavailable, never as a score of 0
            bert_missing = str(exc)
    indices = tuple(sorted(explained.latents))
    scores = score_corpus([explained.latents[i] for i in indices], [refs[i] for i in indices],
                          bert=bert)
    if bert_missing is not None:
        scores.unavailable["bertscore_f1"] = bert_missing
    result = Evaluation(explained, indices, scores, refs)
    from_run = explained.source.startswith("runs:/")
    if log or (log is None and from_run):
        if not explained.run_id:
            raise ConfigError(f"--log: {explained.source} names no run_id to log the metrics to.")
        from lexflow.quality import runs

        runs.log_metrics(explained.run_id, result.metrics())
        result = Evaluation(explained, indices, scores, refs, logged_to=explained.run_id)
    return result


def table(result: Evaluation) -> str:
    """A readable table: one line per latent, the corpus line, and what was not computed."""
    shown = [k for k in PRINTED if k in result.scores.corpus]
    d = result.explained.latent_dim
    head = f"{'latent':>6}  " + "  ".join(f"{k:>12}" for k in shown) + "  explanation"
    lines = [f"{result.explained.source}  (scores x100)", head]
    for n, i in enumerate(result.indices):
        vals = "  ".join(f"{100 * result.scores.per_item[k][n]:12.1f}" for k in shown)
        lines.append(f"{names.latent_label(i, d):>6}  {vals}  {result.explained.latents[i]}")
    lines.append(f"{'corpus':>6}  " + "  ".join(f"{100 * result.scores.corpus[k]:12.1f}" for k in shown))
    for k, why in {**result.scores.unavailable, **result.scores.notes}.items():
        lines.append(f"note: {k}: {why}")
    if result.logged_to:
        lines.append(f"logged as {METRIC_PREFIX}* metrics on run {result.logged_to}")
    return "\n".join(lines)
