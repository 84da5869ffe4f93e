"""Careless and hostile input: one clear message and exit 2, never a traceback, and nothing of an
earlier explanation touched. Each test reproduces a defect of issue 12 (the number in its name).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import lexflow_tags

from lexflow import names
from lexflow.cli import cli
from lexflow.config import ExplainConfig, parse_latents
from lexflow.errors import ConfigError

GOOD_POLICY = "schema: lexflow.policy/1\nexplanation:\n  status: [complete, partial]\n"
# 554 bytes that grow to 9^9 strings when the aliases are expanded
BOMB = "\n".join(['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
                  'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
                  'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]', 'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
                  'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]', 'g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]',
                  'h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]', 'i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]',
                  'explanation: {status: *i}'])
NOT_UTF8 = b"latent,clear\n\x80\x81,true\n\xff\n"  # Latin-1 bytes, no BOM


def run(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env or None)


def assert_user_error(res: Result, *needles: str) -> None:
    """Exit 2 with one message on stderr naming what was wrong, and no traceback."""
    text = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert res.exit_code == 2, f"exit {res.exit_code}: {text}\n{res.exc_info}"
    assert "Traceback" not in text and not isinstance(res.exception, (MemoryError, RecursionError))
    for needle in needles:
        assert needle in text, f"{needle!r} not in: {text}"


@pytest.fixture
def explained(sqlite_tracking: str, register_blob, no_progress: None) -> dict[str, Any]:
    """A blob version explained by the offline explainer (a good explanation to protect)."""
    version = register_blob("blob-faults")
    res = run("explain", f"models:/blob-faults/{version}", "--rows", "2", "--json", "--no-progress")
    assert res.exit_code == 0, res.output
    return {"uri": f"models:/blob-faults/{version}", "version": version,
            "run_id": json.loads(res.stdout)["run_id"],
            "tags": lexflow_tags("blob-faults", version)}


# --- 5: the gate and a deleted explanation run -------------------------------------------------

def test_5_gate_refuses_a_deleted_explanation_run(explained: dict[str, Any], tmp_path: Path) -> None:
    from mlflow import MlflowClient

    policy = tmp_path / "policy.yaml"
    policy.write_text(GOOD_POLICY)
    assert run("gate", explained["uri"], "--policy", str(policy)).exit_code == 0
    MlflowClient().delete_run(explained["run_id"])
    assert_user_error(run("gate", explained["uri"], "--policy", str(policy)), "deleted")


# --- 6 and 11: ranges and sizes checked before any work ------------------------------------------

def test_6_latent_range_is_checked_before_it_is_expanded() -> None:
    start = time.monotonic()
    with pytest.raises(ConfigError, match="at most"):
        parse_latents("0-99999999999")
    with pytest.raises(ConfigError, match="at most"):
        parse_latents("5,99999999999")
    assert time.monotonic() - start < 1.0
    assert_user_error(run("explain", "models:/x/1", "--latents", "0-99999999999"), "latents")
    config = ExplainConfig(latents=parse_latents("0-5000"))
    with pytest.raises(ConfigError) as info:
        config.latent_indices(8)
    assert len(str(info.value)) < 400  # 4,993 bad indices, named briefly


@pytest.mark.parametrize("option,value,needle", [
    ("--rows", "1000000000", "rows"), ("--steps", "1000000000", "steps"),
    ("--samples", "100000", "samples"), ("--seed", "-1", "seed"), ("--span", "1e308", "span"),
    ("--batch-size", "100000000000", "batch_size"), ("--timeout", "inf", "timeout"),
    ("--concurrency", "1000000", "concurrency"),
])
def test_6_11_13_out_of_range_options_are_user_errors(option: str, value: str, needle: str) -> None:
    assert_user_error(run("explain", "models:/x/1", option, value), needle)


@pytest.mark.parametrize("variable", [names.ENV_CHECKPOINT_INTERVAL, names.ENV_TRACKING_WAIT_S])
def test_11_non_numeric_environment_is_a_user_error_before_the_version_is_touched(
        explained: dict[str, Any], variable: str) -> None:
    res = run("explain", explained["uri"], "--rows", "2", "--no-progress", **{variable: "soon"})
    assert_user_error(res, variable, "soon")
    assert lexflow_tags("blob-faults", explained["version"]) == explained["tags"]


def test_13_bad_options_never_replace_a_good_explanation(explained: dict[str, Any]) -> None:
    for args in (["--span", "1e308"], ["--seed", "-1"], ["--rows", "1000000000"]):
        assert_user_error(run("explain", explained["uri"], *args))
        assert lexflow_tags("blob-faults", explained["version"]) == explained["tags"]


def test_13_invalid_model_names_are_user_errors(sqlite_tracking: str) -> None:
    for uri in ("models:/@x", "models:/@", "models:/a@", "models:/ /1"):
        assert_user_error(run("explain", uri, "--no-progress"), "models:/")


def test_13_reserved_alias_is_refused_before_anything_is_written(
        explained: dict[str, Any], tmp_path: Path) -> None:
    from mlflow import MlflowClient

    policy = tmp_path / "policy.yaml"
    policy.write_text(GOOD_POLICY)
    for alias in ("v3", "V12", "latest", "bad alias!"):
        assert_user_error(run("gate", explained["uri"], "--policy", str(policy), "--promote", alias),
                          "alias")
    assert MlflowClient().get_registered_model("blob-faults").aliases == {}
    assert not [k for k in lexflow_tags("blob-faults", explained["version"])
                if k.startswith(names.TAG_GATE_PREFIX)]


# --- 11: files that are not UTF-8 ----------------------------------------------------------------

def test_11_non_utf8_files_are_user_errors(tmp_path: Path) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_bytes(NOT_UTF8)
    assert_user_error(run("calibrate", str(bad)), "UTF-8")
    cal = tmp_path / "calibration.json"
    cal.write_bytes(NOT_UTF8)
    assert_user_error(run("explain", "models:/x/1", "--threshold", f"calibrated:{cal}"), "UTF-8")
    doc = tmp_path / "explanations.json"
    doc.write_text(json.dumps({"schema": names.EXPLANATIONS_SCHEMA, "latent_dim": 1, "latents": [
        {"index": 0, "label": "00", "status": "explained", "explanation": "x", "answers": ["x"]}]}))
    refs = tmp_path / "refs.jsonl"
    refs.write_bytes(NOT_UTF8)
    assert_user_error(run("evaluate", str(doc), "--references", str(refs), "--no-log"), "UTF-8")


# --- 7: YAML alias bombs and unbounded reprs ------------------------------------------------------

def test_7_alias_bomb_policy_is_refused_at_once(tmp_path: Path) -> None:
    policy = tmp_path / "bomb.yaml"
    policy.write_text(BOMB)
    assert len(BOMB.encode()) < 600
    start = time.monotonic()
    res = run("gate", "models:/x/1", "--policy", str(policy))
    assert time.monotonic() - start < 5
    assert_user_error(res, "alias")
    assert len(res.output) < 2000


def test_7_every_yaml_input_refuses_aliases(tmp_path: Path) -> None:
    from lexflow.calibration import load_calibration
    from lexflow.explainers.prompts import load_biases

    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    for load in (load_calibration, load_biases):
        with pytest.raises(ConfigError, match="alias"):
            load(str(path))


def test_7_messages_quote_values_briefly(tmp_path: Path) -> None:
    policy = tmp_path / "long.yaml"
    policy.write_text("schema: lexflow.policy/1\nreview:\n  action: " + "x" * 200_000 + "\n"
                      "thresholds:\n  min_mean_certainty: [" + ", ".join(["2"] * 50_000) + "]\n")
    res = run("gate", "models:/x/1", "--policy", str(policy))
    assert_user_error(res, "review.action", "min_mean_certainty")
    assert len(res.output) < 3000


# --- risks: review terms --------------------------------------------------------------------------

def test_review_terms_match_variants_in_every_answer() -> None:
    from lexflow.gate.checks import _review
    from lexflow.gate.policy import parse_policy

    policy = parse_policy("review: {terms: [skin tone, gender, age, ethnicity]}\n")
    for text in ("the skin-tone darkens", "SKIN TONES change", "skintone", "genders swap",
                 "the person looks aged", "ageing face", "ethnicities vary", "skin_tone"):
        doc = {"latents": [{"label": "00", "explanation": text, "answers": [text]}]}
        assert [c.outcome for c in _review(policy, doc, None)] == ["fail"], text
    for text in ("the image gets sharper", "a page turns", "engender", "stage lights"):
        doc = {"latents": [{"label": "00", "explanation": text, "answers": [text]}]}
        assert [c.outcome for c in _review(policy, doc, None)] == ["pass"], text
    # a term in an answer that was not chosen as the explanation is reviewed too
    doc = {"latents": [{"label": "03", "explanation": "the blob moves right",
                        "answers": ["the blob moves right", "the face looks older and aged"]}]}
    checks = _review(policy, doc, None)
    assert [c.outcome for c in checks] == ["fail"] and "aged" in checks[0].message


# --- risks: the answer cache is bounded -----------------------------------------------------------

def test_answer_cache_has_a_size_cap_and_evicts_the_least_recently_used(tmp_path: Path) -> None:
    import os

    from lexflow.cache import AnswerCache

    cache = AnswerCache(tmp_path, max_bytes=20_000)
    keys = [f"{i:064x}" for i in range(400)]
    for n, key in enumerate(keys):
        cache.put(key, {"text": "x" * 400})
        os.utime(cache.path(key), (1_000_000 + n, 1_000_000 + n))  # written in this order
        if n == 5:
            assert cache.get(keys[0]) is not None  # used again: the most recent now
    cache.prune()
    total = sum(p.stat().st_size for p in tmp_path.rglob("*.json"))
    assert total <= 20_000 and cache.evicted > 0
    assert cache.contains(keys[-1]) and not cache.contains(keys[1])
    assert cache.contains(keys[0])  # read recently, so kept
