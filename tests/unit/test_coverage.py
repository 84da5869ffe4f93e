"""Coverage is part of the verdict: a run over a subset of the latents (--latents, --top-k) is
recorded as such, and the gate's min_coverage, explainable fraction and review see all latents."""

from __future__ import annotations

from typing import Any

import pytest

from lexflow import names
from lexflow.coverage import Coverage, subset_of
from lexflow.gate import VersionEvidence, evaluate, parse_policy


def _rec(i: int, status: str, text: str | None = None) -> dict[str, Any]:
    return {"index": i, "label": f"{i:02d}", "status": status, "explainable": status == "explained",
            "certainty": 0.9 if status == "explained" else 0.0, "explanation": text, "name": None}


def _doc(latents: list[dict[str, Any]], *, latent_dim: int = 8, skipped: tuple[int, ...] = (),
         config: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": names.EXPLANATIONS_SCHEMA, "lexflow_version": "0.1.0", "run_id": "r1",
        "model": {"name": "m", "version": "3"}, "status": "complete", "latent_dim": latent_dim,
        "explainer": {"uri": "measure", "is_mllm": False}, "config": config or {},
        "summary": {"explainable_fraction": 1.0, "mean_certainty": 0.9}, "latents": latents}
    if skipped:
        doc["skipped"] = [{"index": i, "label": f"{i:02d}", "status": "skipped"} for i in skipped]
    return doc


def _judge(policy: str, doc: dict[str, Any]):  # noqa: ANN202 - GateResult
    tags = {names.TAG_STATUS: "complete", names.TAG_RUN_ID: "r1"}
    return evaluate(parse_policy(policy), VersionEvidence("m", "3", tags, doc, 2_000, 1_000))


def test_coverage_counts_and_tag_round_trip() -> None:
    c = Coverage.of(8, ["explained", "skipped", "skipped", "inactive", "failed", "unclear"],
                    {"latents": "all", "top_k": "1"})
    assert (c.measured, c.not_measured, c.subset) == (6, 2, "top_k=1")
    assert c.measured_fraction == pytest.approx(6 / 8)
    assert c.fraction(count_skipped=False) == pytest.approx(4 / 8)
    assert c.tag() == ("measured 6/8: 1 explained, 1 unclear, 1 inactive, 1 failed, 2 skipped; "
                       "subset top_k=1")
    assert Coverage.from_tag(c.tag()) == c
    assert Coverage.from_tag("measured 9/8: 1 explained, 0 unclear, 0 inactive, 0 failed, "
                             "0 skipped") is None  # counts that do not add up
    assert Coverage.from_tag(None) is None and Coverage.from_tag("all of them") is None
    assert c.metrics()[names.METRIC_COVERAGE] == pytest.approx(0.75)
    assert c.metrics()[names.METRIC_LATENTS_SKIPPED] == 2.0
    assert subset_of({"latents": "0,3", "top_k": "all"}) == "latents=0,3"
    assert subset_of({"latents": "all", "top_k": "all"}) is None


def test_a_one_latent_run_fails_the_default_coverage_check_and_the_fraction() -> None:
    doc = _doc([_rec(0, "explained", "moves the object from left to right")],
               config={"latents": "0", "top_k": "all"})
    result = _judge("thresholds: {min_explainable_fraction: 0.5}", doc)
    failed = {c.name: c.message for c in result.failures}
    assert set(failed) == {"coverage", "explainable_fraction"}
    assert failed["coverage"].startswith(
        "Coverage check failed: 1 of 8 latents measured, subset latents=0; coverage = 0.125")
    assert "not measured: 01, 02, 03, 04, 05, 06, 07" in failed["coverage"]
    assert "count_skipped" not in failed["coverage"]  # nothing was skipped
    assert "explainable_fraction = 0.125" in failed["explainable_fraction"]  # of all 8 latents


def test_top_k_counts_skipped_latents_only_when_the_policy_allows_it() -> None:
    doc = _doc([_rec(0, "explained", "makes it larger"), _rec(5, "inactive")], skipped=(1, 2, 3, 4, 6, 7),
               config={"latents": "all", "top_k": "1"})
    strict = _judge("{}", doc)
    assert [c.name for c in strict.failures] == ["coverage"]
    assert "skipped by top_k: 01, 02, 03, 04, 06, 07" in strict.failures[0].message
    assert "or set thresholds.count_skipped: true" in strict.failures[0].message
    allowed = _judge("thresholds: {count_skipped: true}", doc)
    assert allowed.passed, allowed.message()
    # the fraction stays over all latents, whatever the coverage policy
    frac = _judge("thresholds: {count_skipped: true, min_explainable_fraction: 0.5}", doc)
    assert [c.name for c in frac.failures] == ["explainable_fraction"]
    lower = _judge("thresholds: {min_coverage: 0.25}", doc)  # 2 of 8 covered without skipped
    assert lower.passed, lower.message()


def test_review_terms_see_every_latent() -> None:
    doc = _doc([_rec(0, "explained", "moves the object")], latent_dim=3,
               config={"latents": "0", "top_k": "all"})
    result = _judge("thresholds: {min_coverage: 0}\nreview: {terms: [skin tone]}", doc)
    assert [c.name for c in result.failures] == ["review.coverage"]
    assert ("2 latent(s) were not explained (01, 02), so the review terms could not be checked"
            in result.failures[0].message)
    warned = _judge("thresholds: {min_coverage: 0}\nreview: {terms: [age], action: warn}", doc)
    assert warned.passed and [c.name for c in warned.warnings] == ["review.coverage"]


def test_a_complete_run_passes_and_the_policy_is_validated() -> None:
    doc = _doc([_rec(i, "explained", "x") for i in range(4)], latent_dim=4)
    assert _judge("{}", doc).passed
    from lexflow.gate import PolicyError

    with pytest.raises(PolicyError) as err:
        parse_policy("thresholds: {min_coverage: 1.5, count_skipped: maybe}")
    assert "thresholds.min_coverage must be a number between 0 and 1" in str(err.value)
    assert "thresholds.count_skipped must be true or false" in str(err.value)
    assert parse_policy("{}").min_coverage == 1.0 and not parse_policy("{}").count_skipped


def _result(statuses: dict[int, str], latent_dim: int, config: dict[str, str],
            skipped: tuple[int, ...] = ()) -> Any:
    from lexflow.record import ExplainResult, LatentResult

    def rec(i: int, status: str) -> LatentResult:
        return LatentResult(index=i, label=names.latent_label(i, latent_dim), status=status,
                            explanation="moves it" if status == "explained" else None,
                            explainable=status == "explained", certainty=0.9, answers=(),
                            evidence={}, image=names.traversal_path(i, latent_dim))

    return ExplainResult(model_uri="models:/m/1", model_name="m", model_version="1", run_id="r",
                         explainer="measure", explainer_is_mllm=False, latent_dim=latent_dim,
                         config=config, latents=tuple(rec(i, s) for i, s in statuses.items()),
                         output_range=(0.0, 1.0), skipped=tuple(rec(i, "skipped") for i in skipped))


def test_a_subset_run_records_its_coverage_everywhere() -> None:
    from lexflow.record import ExplainResult, description_section, report_html, version_tags

    r = _result({0: "explained"}, 8, {"latents": "0", "top_k": "all"})
    assert r.explainable_fraction == pytest.approx(1 / 8)  # over all latents, not the subset
    doc = r.to_dict()
    assert doc["coverage"]["measured"] == 1 and doc["coverage"]["latent_dim"] == 8
    assert doc["coverage"]["subset"] == "latents=0" and doc["coverage"]["not_measured"] == 7
    assert doc["summary"]["explainable_fraction"] == pytest.approx(0.125)
    metrics = r.metrics()
    assert metrics[names.METRIC_COVERAGE] == pytest.approx(0.125)
    assert metrics[names.METRIC_LATENTS_EXPLAINED] == 1.0
    assert metrics[names.METRIC_LATENTS_MEASURED] == 1.0
    tag = version_tags(r)[names.TAG_COVERAGE]
    assert tag == ("measured 1/8: 1 explained, 0 unclear, 0 inactive, 0 failed, 0 skipped; "
                   "subset latents=0")
    assert "Coverage: 1 of 8 latents measured, subset latents=0" in description_section(r)
    assert "coverage: 1 of 8 latents measured, subset latents=0" in report_html(r, {})
    assert ExplainResult.from_dict(doc).coverage == r.coverage  # the one reader reads it back

    top = _result({0: "explained", 5: "inactive"}, 8, {"latents": "all", "top_k": "1"},
                  skipped=(1, 2, 3, 4, 6, 7))
    assert top.explainable_fraction == pytest.approx(1 / 8)
    assert top.coverage.tag().endswith("6 skipped; subset top_k=1")
    assert top.metrics()[names.METRIC_LATENTS_SKIPPED] == 6.0
    assert top.metrics()[names.METRIC_COVERAGE] == 1.0  # every latent was measured
    assert ExplainResult.from_dict(top.to_dict()).coverage == top.coverage
