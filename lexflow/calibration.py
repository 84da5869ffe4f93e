"""Choosing the certainty threshold from human labels, and measuring it without a leak.

The method (METHOD.md, section 3) keeps an explanation when its certainty reaches a threshold
epsilon. The paper picked epsilon to maximise balanced accuracy against human "is there a clear
pattern?" labels and then reported AUC, precision, recall and F1 on the same latents, so its numbers
are optimistic. Here the labelled latents are split first (stratified by label, seeded): the
threshold is chosen on the calibration split only, and every reported metric is computed on the
held-out split only. The two splits never share a latent.

Labels come as JSONL, a JSON list or CSV, one latent per row::

    {"source": "runs:/<run id>", "latent": 3, "clear": true}
    {"source": "out/explanations.json", "latent": "04", "clear": false}
    {"id": "celeba-17", "answers": ["smile grows", "the mouth opens into a smile"], "clear": true}

``source`` is an MLflow run id (bare or ``runs:/``) whose ``lexflow/explanations.json`` is read, a
path to an explanations.json, or a directory holding one; it may be left out when exactly one
``--answers SOURCE`` is given. Certainty is recomputed from the stored answers with the chosen
comparison (``bow`` or ``semantic[:...]``), so one set of answers calibrates either, times the
latent's encoder read-back when the run has one (as ``explain`` does). Latents the run
found inactive are skipped: ``explain`` never applies the threshold to them.

The result (``--out calibration.json``) is read back with :func:`load_threshold`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np

from lexflow import names
from lexflow.errors import ConfigError, LexflowError, TrackingError
from lexflow.record import ExplainResult
from lexflow.uncertainty import Similarity, consensus, similarity_for, with_readback

SCHEMA = "lexflow.calibration/1"
DEFAULT_EXPERIMENT = "lexflow-calibration"
RUN_TAG_KIND = names.RUN_TAG_KIND
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_TRUE = {"true", "1", "yes", "y", "clear", "explainable"}
_FALSE = {"false", "0", "no", "n", "unclear", "not clear", "unexplainable"}


@dataclass(frozen=True)
class LabelledLatent:
    """One labelled latent with the answers its certainty is computed from.

    Attributes:
        key: a unique name: ``<source>#<latent>`` or the row's ``id``.
        answers: the explainer's sampled answers ("" for failed ones).
        clear: the human label: True when the latent shows a clear pattern.
        readback: the encoder's read-back of the latent (explanations.json ``readback``, or a
            row's own), which scales the certainty as in ``explain``; None when there is none.
    """

    key: str
    answers: tuple[str, ...]
    clear: bool
    readback: float | None = None


@dataclass(frozen=True)
class Metrics:
    """Quality of the keep/abstain decision on one split ("clear" is the positive class).

    Attributes:
        n, positives: latents in the split, and how many are labelled clear.
        auroc: area under the ROC curve of certainty vs label (threshold-free); None when the split
            holds one class only.
        precision, recall, f1, balanced_accuracy: of ``certainty >= threshold`` as a prediction.
    """

    n: int
    positives: int
    auroc: float | None
    precision: float
    recall: float
    f1: float
    balanced_accuracy: float


@dataclass(frozen=True)
class Calibration:
    """A chosen threshold and how well it does on latents it was not chosen on.

    Attributes:
        threshold: certainty in [0, 1]; ``explain --threshold`` takes it.
        certainty: the comparison it applies to (``bow``, ``semantic``, ...).
        holdout, seed: fraction of latents held out, and the seed of the stratified split.
        calibration: metrics on the calibration split (in-sample: the threshold was fit there).
        heldout: metrics on the held-out split: the numbers to report.
        calibration_keys, heldout_keys: which latents went where (disjoint).
        certainties: key -> recomputed certainty of every latent used.
        skipped: keys of labelled latents left out (inactive in their run).
    """

    threshold: float
    certainty: str
    holdout: float
    seed: int
    calibration: Metrics
    heldout: Metrics
    calibration_keys: tuple[str, ...]
    heldout_keys: tuple[str, ...]
    certainties: Mapping[str, float] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "threshold": self.threshold, "certainty": self.certainty,
            "objective": "balanced_accuracy", "holdout": self.holdout, "seed": self.seed,
            "heldout": asdict(self.heldout), "calibration": asdict(self.calibration),
            "note": "threshold chosen on the calibration split only; 'heldout' metrics are "
                    "computed on the held-out split only (the splits are disjoint)",
            "splits": {"calibration": list(self.calibration_keys),
                       "heldout": list(self.heldout_keys)},
            "certainties": dict(self.certainties), "skipped": list(self.skipped),
        }


# --- reading labels ----------------------------------------------------------------------------

def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where}: label {value!r} is not a yes/no value; use true/false (or 1/0).")


def read_label_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSONL, JSON-list or CSV labels file, as dicts (CSV answers parsed)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # a binary or non-UTF-8 file is bad input
        raise ConfigError(f"Could not read the labels file {str(p)!r} as UTF-8 text: "
                          f"{exc}") from exc
    rows: list[Any]
    if p.suffix.lower() == ".csv":
        rows = []
        for row in csv.DictReader(io.StringIO(text)):
            out: dict[str, Any] = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            answer_cols = sorted(k for k in out if k.startswith("answer") and k != "answers")
            if out.get("answers"):
                try:
                    out["answers"] = json.loads(out["answers"])
                except ValueError:
                    out["answers"] = [a.strip() for a in out["answers"].split("||")]
            elif answer_cols:
                out["answers"] = [out.pop(k) for k in answer_cols]
            rows.append({k: v for k, v in out.items() if v not in ("", None)})
    elif text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{p}: not valid JSON: {exc}") from exc
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise ConfigError(f"{p}, line {n}: not a JSON object: {exc}") from exc
    bad = [i + 1 for i, r in enumerate(rows) if not isinstance(r, dict)]
    if bad:
        raise ConfigError(f"{p}: rows {bad[:5]} are not objects with 'latent'/'answers' and 'clear'.")
    if not rows:
        raise ConfigError(f"{p}: no labelled latents.")
    return rows


def load_explanations(source: str, base: Path | None = None) -> ExplainResult:
    """explanations.json of a run id (``runs:/<id>`` or bare), a file, or a directory holding one."""
    from lexflow.tracking.explanations import explanations_file, read_file_doc, read_run_doc

    run_id = source[len("runs:/"):].strip("/") if source.startswith("runs:/") else source
    path = Path(source).expanduser()
    if base is not None and not path.is_absolute() and not path.exists():
        path = base / path
    path = explanations_file(path)
    if path.is_file():
        doc = read_file_doc(path)
    elif source.startswith("runs:/") or _RUN_ID.match(run_id):
        doc = read_run_doc(run_id)
    else:
        raise ConfigError(
            f"Answers source {source!r} is neither an explanations.json file, a directory holding "
            "one, nor an MLflow run id (32 hex digits or runs:/<id>)."
        )
    return ExplainResult.from_dict(doc, source)


def _latent_entry(result: ExplainResult, latent: Any, where: str) -> Mapping[str, Any]:
    for entry in result.latents:
        if str(latent) in (str(entry.index), entry.label):
            return asdict(entry)
    have = ", ".join(str(e.index) for e in result.latents) or "none"
    raise ConfigError(f"{where}: latent {latent!r} is not in that explanations.json (latents: {have}).")


def collect(rows: Sequence[Mapping[str, Any]], *, sources: Sequence[str] = (),
            base: Path | None = None, where: str = "labels") -> tuple[list[LabelledLatent], list[str]]:
    """Labelled latents with their answers, and the keys of the skipped (inactive) ones."""
    docs: dict[str, ExplainResult] = {}
    items: list[LabelledLatent] = []
    skipped: list[str] = []
    seen: set[str] = set()
    problems: list[str] = []
    for n, row in enumerate(rows, 1):
        try:
            _collect_row(n, row, docs, items, skipped, seen, sources, base, where)
        except ConfigError as exc:  # every row's problem is listed, not just the first
            problems.append(str(exc))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{where}: {len(problems)} problems:\n  - " + "\n  - ".join(problems))
    return items, skipped


def _collect_row(n: int, row: Mapping[str, Any], docs: dict[str, ExplainResult],
                 items: list[LabelledLatent], skipped: list[str], seen: set[str],
                 sources: Sequence[str], base: Path | None, where: str) -> None:
    """Append one labels row to ``items`` (or ``skipped``); ConfigError naming the row if bad."""
    at = f"{where}, row {n}"
    label = row.get("clear", row.get("label"))
    if label is None:
        raise ConfigError(f"{at}: no 'clear' (or 'label') value; say true or false.")
    clear = _as_bool(label, at)
    if "answers" in row:
        answers = row["answers"]
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise ConfigError(f"{at}: 'answers' must be a list of strings.")
        named = row.get("source") is not None and row.get("latent") is not None
        key = str(row.get("id") or (f"{row['source']}#{row['latent']}" if named else f"row {n}"))
        entry: Mapping[str, Any] = {"answers": answers}
    else:
        source = row.get("source") or row.get("run_id") or row.get("explanations")
        if not source:
            if len(sources) != 1:
                raise ConfigError(
                    f"{at}: no 'source' and {len(sources)} --answers sources; name the "
                    "explanations.json or run per row, or give exactly one --answers.")
            source = sources[0]
        if "latent" not in row:
            raise ConfigError(f"{at}: no 'latent' (index or label) and no 'answers'.")
        source = str(source)
        if source not in docs:
            docs[source] = load_explanations(source, base)
        entry = _latent_entry(docs[source], row["latent"], at)
        key = str(row.get("id") or f"{source}#{entry.get('index', row['latent'])}")
    if key in seen:
        raise ConfigError(f"{at}: latent {key!r} is labelled twice.")
    seen.add(key)
    if entry.get("status") == "inactive":
        skipped.append(key)
        return
    items.append(LabelledLatent(key, tuple(str(a) for a in entry.get("answers") or ()), clear,
                                _readback(entry.get("readback", row.get("readback")), at)))


def _readback(value: Any, at: str) -> float | None:
    """A row's read-back: None when absent or empty, else a number from 0 to 1 (CSV gives text)."""
    if value is None or value == "":
        return None
    try:
        back = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        back = math.nan
    if not 0.0 <= back <= 1.0:
        raise ConfigError(f"{at}: 'readback' must be a number from 0 to 1 (the encoder's "
                          f"read-back, as explanations.json has it); got {value!r}.")
    return back


# --- choosing and measuring ----------------------------------------------------------------------

def certainties(items: Sequence[LabelledLatent], similarity: Similarity) -> np.ndarray:
    """Each latent's certainty, recomputed from its answers exactly as ``explain`` computes it
    (the agreement, times the read-back when the latent has one)."""
    return np.array([with_readback(consensus(it.answers, threshold=0.0, similarity=similarity),
                                   it.readback, 0.0).certainty
                     for it in items], dtype=float)


def split_indices(labels: Sequence[bool], holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held-out) indices: disjoint, stratified by label, reproducible from ``seed``."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels, dtype=bool)
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"holdout must be a fraction between 0 and 1 (exclusive); got {holdout!r}.")
    counts = {"clear": int(y.sum()), "unclear": int((~y).sum())}
    few = [f"{k} ({v})" for k, v in counts.items() if v < 2]
    if few:
        raise ConfigError(
            "Calibration needs at least 2 latents of each label so that both splits hold both; "
            f"too few: {', '.join(few)}."
        )
    idx = np.arange(len(y))
    n_held = int(round(holdout * len(y)))
    n_held = min(max(n_held, 2), len(y) - 2)
    cal, held = train_test_split(idx, test_size=n_held, stratify=y, random_state=seed)
    return np.sort(cal), np.sort(held)


def choose_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising balanced accuracy of ``score >= threshold`` on these latents.

    Candidates are the observed scores; the chosen one is moved down to the midpoint with the
    next lower score, which predicts the same on these latents but leaves a margin for new ones.
    Ties go to the lowest candidate (keep more explanations).
    """
    from sklearn.metrics import balanced_accuracy_score

    y = np.asarray(labels, dtype=bool)
    values = np.unique(np.asarray(scores, dtype=float))
    best, best_ba = 0, -1.0
    for j, t in enumerate(values):
        ba = float(balanced_accuracy_score(y, scores >= t))
        if ba > best_ba + 1e-12:
            best, best_ba = j, ba
    threshold = values[best] if best == 0 else (values[best - 1] + values[best]) / 2
    return float(np.clip(threshold, 0.0, 1.0))


def measure(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Metrics:
    """AUROC, precision, recall, F1 and balanced accuracy of ``score >= threshold``."""
    from sklearn import metrics as m

    y = np.asarray(labels, dtype=bool)
    pred = np.asarray(scores) >= threshold
    both = 0 < y.sum() < len(y)
    return Metrics(
        n=len(y), positives=int(y.sum()),
        auroc=float(m.roc_auc_score(y, scores)) if both else None,
        precision=float(m.precision_score(y, pred, zero_division=0)),
        recall=float(m.recall_score(y, pred, zero_division=0)),
        f1=float(m.f1_score(y, pred, zero_division=0)),
        balanced_accuracy=float(m.balanced_accuracy_score(y, pred)) if both else float((y == pred).mean()),
    )


def fit(items: Sequence[LabelledLatent], scores: np.ndarray, cal: np.ndarray, held: np.ndarray, *,
        certainty: str, holdout: float, seed: int, skipped: Sequence[str] = ()) -> Calibration:
    """Choose the threshold on ``cal`` and measure it on ``held`` (which it never sees)."""
    if set(cal.tolist()) & set(held.tolist()):
        raise ConfigError("The calibration and held-out splits overlap; refusing to report a leak.")
    y = np.array([it.clear for it in items], dtype=bool)
    threshold = choose_threshold(scores[cal], y[cal])
    return Calibration(
        threshold=threshold, certainty=certainty, holdout=holdout, seed=seed,
        calibration=measure(scores[cal], y[cal], threshold),
        heldout=measure(scores[held], y[held], threshold),
        calibration_keys=tuple(items[i].key for i in cal),
        heldout_keys=tuple(items[i].key for i in held),
        certainties={it.key: float(s) for it, s in zip(items, scores, strict=True)},
        skipped=tuple(skipped),
    )


def calibrate(items: Sequence[LabelledLatent], *, certainty: str = "bow", holdout: float = 0.5,
              seed: int = 0, skipped: Sequence[str] = ()) -> Calibration:
    """Recompute certainties, split, choose the threshold on one split, report on the other."""
    similarity = similarity_for(certainty)
    scores = certainties(items, similarity)
    cal, held = split_indices([it.clear for it in items], holdout, seed)
    return fit(items, scores, cal, held, certainty=certainty, holdout=holdout, seed=seed,
               skipped=skipped)


def load_calibration(path: str | Path) -> dict[str, Any]:
    """A calibration file written by ``lexflow calibrate --out`` (JSON; YAML with the same keys)."""
    from lexflow.safe_yaml import read_yaml

    p = Path(path)
    doc = read_yaml(p, "calibration file")  # JSON is YAML
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ConfigError(f"{p}: not a lexflow calibration file ({SCHEMA}).")
    t = doc.get("threshold")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
        raise ConfigError(f"{p}: threshold must be a number in [0, 1]; got {t!r}.")
    return doc


def load_threshold(path: str | Path, *, certainty: str | None = None) -> float:
    """The calibrated threshold in ``path``; with ``certainty``, checks it was calibrated for it.

    A bag-of-words threshold means nothing for semantic certainty (the scales differ), so pass the
    ``certainty`` you will explain with.
    """
    doc = load_calibration(path)
    if certainty is not None and doc.get("certainty") != certainty:
        raise ConfigError(
            f"{path} was calibrated for certainty={doc.get('certainty')!r}, not {certainty!r}; "
            f"run `lexflow calibrate ... --certainty {certainty}` or explain with "
            f"--certainty {doc.get('certainty')}."
        )
    return float(doc["threshold"])


def log_run(result: Calibration, labels_path: str, experiment: str) -> str:
    """Record the calibration as an MLflow run (params, held-out metrics, the file); its id."""
    from lexflow.tracking import registry, runs

    try:
        with runs.open_run(experiment, run_name="lexflow calibrate") as run:
            c = registry.client()
            runs.set_run_tags(run.run_id, {RUN_TAG_KIND: "calibration"})
            runs.log_params(run.run_id, {
                "certainty": str(result.certainty), "holdout": str(result.holdout),
                "seed": str(result.seed), "labels": labels_path, "objective": "balanced_accuracy"})
            metrics = {"threshold": result.threshold, "n_calibration": result.calibration.n,
                       "n_heldout": result.heldout.n,
                       "calibration_balanced_accuracy": result.calibration.balanced_accuracy}
            for k, v in asdict(result.heldout).items():
                if k not in ("n", "positives") and v is not None:
                    metrics[f"heldout_{k}"] = float(v)
            runs.log_metrics(run.run_id, metrics)
            c.log_dict(run.run_id, result.to_dict(), "lexflow/calibration.json")
            return run.run_id
    except Exception as exc:  # MlflowException or a connection error: say where it went wrong
        raise TrackingError(f"Could not log the calibration to {registry.tracking_uri()}: {exc}") from exc


# --- the command ----------------------------------------------------------------------------------

def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _print(result: Calibration, labels: str, out: str | None, run_id: str | None) -> None:
    h, c = result.heldout, result.calibration
    n = h.n + c.n
    click.echo(f"labels {labels}: {n} latents ({h.positives + c.positives} clear)"
               f" · certainty {result.certainty}"
               + (f" · {len(result.skipped)} inactive skipped" if result.skipped else ""))
    click.echo(f"split (stratified, seed {result.seed}): {c.n} calibration / {h.n} held-out, disjoint")
    click.echo(f"threshold {result.threshold:.4f}  (max balanced accuracy on the calibration split: "
               f"{c.balanced_accuracy:.3f}, in-sample)")
    click.echo("held-out split only (the threshold never saw these latents):")
    click.echo(f"  AUROC {_fmt(h.auroc)}  precision {_fmt(h.precision)}  recall {_fmt(h.recall)}"
               f"  F1 {_fmt(h.f1)}  balanced accuracy {_fmt(h.balanced_accuracy)}"
               f"  (n={h.n}, {h.positives} clear)")
    if out:
        click.echo(f"wrote {out}; explain with it:\n  lexflow explain MODEL_URI --certainty "
                   f"{result.certainty} --threshold \"$(jq .threshold {out})\"")
    if run_id:
        click.echo(f"logged MLflow run {run_id}")


@click.command("calibrate")
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--answers", "sources", multiple=True, metavar="SOURCE",
              help="Where rows without a 'source' find their answers: an explanations.json, a "
                   "directory holding one, or an MLflow run id (runs:/<id>). Repeatable.")
@click.option("--certainty", default="bow", show_default=True,
              help="Answer agreement to calibrate: bow, semantic, semantic:<model path or package>.")
@click.option("--holdout", default=0.5, show_default=True, type=float,
              help="Fraction of latents held out for the reported metrics.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the stratified split.")
@click.option("--out", default="calibration.json", show_default=True,
              help="Where to write the threshold and metrics ('-' or '' to skip).")
@click.option("--log", "log", is_flag=True, help="Also record the calibration as an MLflow run.")
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True,
              help="MLflow experiment of the --log run.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(labels: str, sources: tuple[str, ...], certainty: str, holdout: float, seed: int,
            out: str, log: bool, experiment: str, as_json: bool) -> None:
    """Choose the certainty threshold from LABELS (latents labelled clear or not).

    The threshold maximises balanced accuracy on a calibration split; AUROC, precision, recall,
    F1 and balanced accuracy are reported on a disjoint held-out split.
    """
    out_path = out if out and out != "-" else None
    try:
        rows = read_label_rows(labels)
        items, skipped = collect(rows, sources=sources, base=Path(labels).resolve().parent,
                                 where=labels)
        result = calibrate(items, certainty=certainty, holdout=holdout, seed=seed, skipped=skipped)
        doc = result.to_dict()
        doc.update(labels=labels, labels_sha256=hashlib.sha256(Path(labels).read_bytes()).hexdigest(),
                   created=datetime.now(UTC).isoformat(timespec="seconds"),
                   lexflow_version=_version())
        if out_path:
            try:
                Path(out_path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"Could not write {out_path!r}: {exc}") from exc
        run_id = log_run(result, labels, experiment) if log else None
    except LexflowError as exc:
        if as_json:
            click.echo(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        click.echo(f"lexflow calibrate: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if as_json:
        click.echo(json.dumps({**doc, "out": out_path, "run_id": run_id}))
    else:
        _print(result, labels, out_path, run_id)


def _version() -> str:
    from lexflow._version import __version__

    return __version__
