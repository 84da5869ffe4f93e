"""Golden prompt texts per request kind: each prompt says what moves (a latent, a group, a CSVAE
attribute direction, a diffusion direction) and in which unit (prior std, multiples of the
direction, guidance steps). An MLLM is never told that a diffusion direction moves by prior
standard deviations."""

from __future__ import annotations

import pytest

from lexflow.explainers.base import ExplainRequest
from lexflow.explainers.prompts import build_prompt
from lexflow.stages.evidence import Evidence

EVIDENCE = Evidence(index=1, active=True, total_change=0.5, step_change=(0.1, 0.2),
                    region="centre", properties=())


def _answer(symbol: str) -> str:
    return ('Answer with one JSON object and nothing else: {"label": "<a name of at most four '
            f'words>", "sentence": "<one sentence: as {symbol} increases, ...>", "increases": '
            f'"<what becomes larger or stronger as {symbol} increases>"}}')


GOLDEN = {
    ("latent", "disentanglement"): [
        "Image 1 is a grid of images decoded by a generative model. In every row the latent "
        "variable z_1 increases from left to right, from -3 to 3 prior standard deviations; each "
        "row starts from a different random sample, and everything else is held fixed.",
        "Image 2 has two rows with the same change of z_1; in the second row another latent "
        "variable is set to a different value.",
        "These two rows of images show the same pattern of change despite other variations.",
        "Describe the pattern of change that z_1 controls.",
        _answer("z_1"),
    ],
    ("group", "combination"): [
        "Image 1 is a grid of images decoded by a generative model. In every row the latent "
        "variables z_0, z_1 and z_2 (together called g_1) are set together to values increasing "
        "from left to right, from -3 to 3 prior standard deviations; each row starts from a "
        "different random sample, and everything else is held fixed.",
        "In these images the latent variables z_0, z_1 and z_2 jointly control one property.",
        "Describe the property that the latent variables z_0, z_1 and z_2 jointly control, as "
        "seen when g_1 changes.",
        _answer("g_1"),
    ],
    ("attribute", "conditional"): [
        "Image 1 is a grid of images decoded by a generative model. In every row the latent code "
        "moves along the direction a_1 of an attribute, from left to right, from 0 to 4 "
        "multiples of the attribute direction; each row starts from a different random sample, "
        "and everything else is held fixed.",
        "These images show a pattern of change given the condition \"attribute label 'large' "
        "(y = 1)\".",
        "Describe the pattern of change that a_1 controls given the condition \"attribute label "
        "'large' (y = 1)\".",
        _answer("a_1"),
    ],
    ("direction", "disentanglement"): [
        "Image 1 is a grid of images made by a diffusion model. In every row the image is moved "
        "along the direction d_1 of the model's internal space, from left to right, from -4 to 4 "
        "guidance steps (negative values move the opposite way; the middle column is the "
        "unchanged image); each row starts from a different random sample, and everything else "
        "is held fixed.",
        "Image 2 has two rows with the same change along d_1; in the second row the starting "
        "image was first moved along another direction.",
        "These two rows of images show the same pattern of change despite other variations.",
        "Describe the pattern of change that d_1 controls.",
        _answer("d_1"),
    ],
    ("direction", "conditional"): [
        "Image 1 is a grid of images made by a diffusion model. In every row the image is moved "
        "along the direction d_1 of the model's internal space, from left to right, from -4 to 4 "
        "guidance steps (negative values move the opposite way; the middle column is the "
        "unchanged image); each row starts from a different random sample, and everything else "
        "is held fixed.",
        'These images show a pattern of change given the condition "smile".',
        'Describe the pattern of change that d_1 controls given the condition "smile".',
        _answer("d_1"),
    ],
}

REQUESTS = {
    ("latent", "disentanglement"): dict(unit="prior std", values=(-3.0, -1.5, 0.0, 1.5, 3.0)),
    ("group", "combination"): dict(unit="prior std", values=(-3.0, 0.0, 3.0), group=(0, 1, 2)),
    ("attribute", "conditional"): dict(unit="multiples of the attribute direction",
                                       values=(0.0, 2.0, 4.0), group=(2,),
                                       condition="attribute label 'large' (y = 1)"),
    ("direction", "disentanglement"): dict(unit="guidance steps", values=(-4.0, 0.0, 4.0)),
    ("direction", "conditional"): dict(unit="guidance steps", values=(-4.0, 0.0, 4.0),
                                       condition="smile"),
}


@pytest.mark.parametrize("kind, bias", list(GOLDEN))
def test_prompt_names_what_moves_and_its_unit(kind: str, bias: str) -> None:
    request = ExplainRequest(index=1, label="01", bias=bias, grid_png=b"grid", evidence=EVIDENCE,
                             samples=1, comparison_png=b"cmp", kind=kind,
                             **REQUESTS[(kind, bias)])  # type: ignore[arg-type]
    prompt = build_prompt(request)
    assert prompt.text == "\n".join(GOLDEN[(kind, bias)])
    assert prompt.images == ((b"grid", b"cmp") if bias == "disentanglement" else (b"grid",))
    if kind == "direction":
        assert "prior standard deviations" not in prompt.text
