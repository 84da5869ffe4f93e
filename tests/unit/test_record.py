"""The written records: description section ownership, escaping of untrusted text, tags."""

from __future__ import annotations

from lexflow import names
from lexflow.record import (
    ExplainResult,
    LatentResult,
    description_section,
    md_escape,
    merge_description,
    report_html,
    version_tags,
)

EVIL = '<script>alert("x")</script> [click](javascript:alert(1)) | **bold**'


def result(explanation: str | None = EVIL, dim: int = 3) -> ExplainResult:
    latents = tuple(
        LatentResult(index=i, label=names.latent_label(i, dim), status="explained" if i == 0 else "inactive",
                     explanation=explanation if i == 0 else None, explainable=i == 0,
                     certainty=0.8 if i == 0 else 0.0, answers=(explanation or "",) if i == 0 else (),
                     evidence={"total_change": 0.1, "region": "centre", "properties": {}},
                     image=names.traversal_path(i, dim))
        for i in range(dim)
    )
    return ExplainResult(model_uri="models:/m/1", model_name="m", model_version="1", run_id="abc",
                         explainer="measure", explainer_is_mllm=False, latent_dim=dim, config={},
                         latents=latents, output_range=(0.0, 1.0), created="2026-01-01T00:00:00+00:00")


def test_merge_description_keeps_user_text_and_replaces_owned_section() -> None:
    user = "My VAE.\n\nTrained on shapes."
    first = merge_description(user, description_section(result("first")))
    second = merge_description(first, description_section(result("second")))
    assert second.startswith(user)
    assert second.count(names.DESCRIPTION_BEGIN) == 1 and second.count(names.DESCRIPTION_END) == 1
    assert "second" in second and "first" not in second
    assert merge_description(None, "S") == "S"


def test_untrusted_text_is_inert_in_markdown_and_html() -> None:
    section = description_section(result())
    assert "<script>" not in section and "&lt;script&gt;" in section
    assert "](javascript" not in section
    html = report_html(result(), {})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Content-Security-Policy" in html
    assert md_escape("a|b\nc") == "a\\|b c"


def test_version_tags_are_bounded_and_named_per_contract() -> None:
    tags = version_tags(result("x" * 9000))
    assert set(tags) == {
        "lexflow.run_id", "lexflow.version", "lexflow.explainer", "lexflow.explainable_fraction",
        "lexflow.latent.00", "lexflow.latent.00.certainty", "lexflow.latent.01",
        "lexflow.latent.01.certainty", "lexflow.latent.02", "lexflow.latent.02.certainty",
        "lexflow.coverage",
    }
    assert tags["lexflow.coverage"] == ("measured 3/3: 1 explained, 0 unclear, 2 inactive, "
                                        "0 failed, 0 skipped")
    assert len(tags["lexflow.latent.00"]) == names.TAG_VALUE_MAX
    assert tags["lexflow.latent.01"] == "No clear explanation"
    assert tags["lexflow.explainable_fraction"] == "0.333"


def test_explanations_json_schema() -> None:
    d = result().to_dict()
    assert d["schema"] == names.EXPLANATIONS_SCHEMA
    rec = d["latents"][0]
    for key in ("index", "explanation", "explainable", "certainty", "answers", "evidence", "image"):
        assert key in rec
