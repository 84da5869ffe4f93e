"""The ``transformers:/<dir>`` explainer (issue 14): prompts batched into one ``generate`` call up
to ``batch_size``, and the on-disk answer cache keyed by the model's files."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")

from test_transformers_explainer import build_tiny_llava, request  # noqa: E402

from lexflow.explainers import get_explainer  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny-llava")


def counting(explainer: Any) -> list[int]:
    """Counts generate calls and the prompts in each."""
    _, model = explainer.load()
    calls: list[int] = []
    original = model.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(int(kwargs["input_ids"].shape[0]))
        return original(*args, **kwargs)

    model.generate = spy
    return calls


def test_prompts_share_generate_calls_up_to_batch_size(tiny: Path) -> None:
    explainer = get_explainer(f"transformers:/{tiny}", {"max_new_tokens": 4, "batch_size": 3,
                                                         "cache": "none"})
    calls = counting(explainer)
    reqs = [request(samples=2, index=i, comparison=i % 2 == 0) for i in range(5)]
    responses = list(explainer.explain_many(reqs))
    assert calls == [3, 2]  # 5 prompts: a batch of 3, then 2
    assert [r.index for r in responses] == [0, 1, 2, 3, 4]
    assert all(len(r.answers) == 2 for r in responses)
    assert all(r.details.get("batch") in (3, 2) for r in responses)


def test_answers_are_cached_by_the_model_files(tiny: Path, tmp_path: Path) -> None:
    options = {"max_new_tokens": 4, "batch_size": 4, "cache": str(tmp_path / "cache")}
    reqs = [request(samples=2, index=i) for i in range(3)]
    first = get_explainer(f"transformers:/{tiny}", options)
    first_calls = counting(first)
    answers = [r.answers for r in first.explain_many(reqs)]
    assert first_calls == [3]
    assert all(any(a.strip() for a in r) for r in answers)  # seeded: these are stored

    again = get_explainer(f"transformers:/{tiny}", options)
    again_calls = counting(again)
    assert [r.answers for r in again.explain_many(reqs)] == answers
    assert again_calls == [] and again.cache.hits == 3

    # A changed prompt misses; so does the same model directory with a changed file.
    assert len(list(again.explain_many([replace(reqs[0], samples=3)]))) == 1
    assert again_calls == [1]
    copy = shutil.copytree(tiny, tmp_path / "copy")
    (copy / "generation_config.json").write_text(
        (copy / "generation_config.json").read_text().replace("}", ', "lexflow_note": 1}', 1))
    changed = get_explainer(f"transformers:/{copy}", options)
    changed_calls = counting(changed)
    list(changed.explain_many(reqs))
    assert changed_calls == [3]
