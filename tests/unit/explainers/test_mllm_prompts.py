"""The pure parts of the MLLM explainers: prompt text per bias (exact), answer reading, grounding,
the cache, prices, and what from_uri checks before any work. No network."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest
from models.blob import BlobDecoder

from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
from lexflow.cache import AnswerCache, cache_key
from lexflow.config import ExplainConfig
from lexflow.engine import build_requests, latent_prepared, measure_latents
from lexflow.errors import ConfigError, MissingDependencyError
from lexflow.explainers import get_explainer
from lexflow.explainers.answers import AnswerRejected, parse_answer
from lexflow.explainers.base import ExplainRequest
from lexflow.explainers.grounding import contradictions, evidence_summary
from lexflow.explainers.mllm import MLLMOptions, sample_seed
from lexflow.explainers.pricing import image_tokens, png_size, price_for
from lexflow.explainers.prompts import (
    COMBINATION,
    build_prompt,
    get_bias,
    load_biases,
    prompt_writing_request,
)

INTRO = ("Image 1 is a grid of images decoded by a generative model. In every row the latent variable "
         "z_0 increases from left to right, from -3 to 3 prior standard deviations; each row starts "
         "from a different random sample, and everything else is held fixed.")
FORMAT = ('Answer with one JSON object and nothing else: {"label": "<a name of at most four words>", '
          '"sentence": "<one sentence: as z_0 increases, ...>", '
          '"increases": "<what becomes larger or stronger as z_0 increases>"}')


@pytest.fixture(scope="module")
def requests() -> list[ExplainRequest]:
    decoder = PyTorchVAEAdapter(BlobDecoder(), device="cpu")
    config = ExplainConfig(rows=2, samples=3)
    measured, _, values = measure_latents(decoder, config, tuple(range(5)), bias="disentanglement",
                                          output_range=None, progress=False)
    return build_requests(measured, latent_prepared(5, config), config)


# --- prompts: exact text ---------------------------------------------------------------------

def test_disentanglement_prompt_states_the_method_sentence_and_shows_the_comparison(requests) -> None:
    prompt = build_prompt(requests[0])
    assert prompt.text == "\n".join([
        INTRO,
        "Image 2 has two rows with the same change of z_0; in the second row another latent "
        "variable is set to a different value.",
        "These two rows of images show the same pattern of change despite other variations.",
        "Describe the pattern of change that z_0 controls.",
        FORMAT,
    ])
    assert prompt.images == (requests[0].grid_png, requests[0].comparison_png)


def test_combination_prompt_names_the_group(requests) -> None:
    prompt = build_prompt(replace(requests[0], bias="combination", group=(0, 1, 2)))
    assert prompt.text == "\n".join([
        INTRO,
        "In these images the latent variables z_0, z_1 and z_2 jointly control one property.",
        "Describe the property that the latent variables z_0, z_1 and z_2 jointly control, as seen "
        "when z_0 changes.",
        FORMAT,
    ])
    assert prompt.images == (requests[0].grid_png,)
    with pytest.raises(ConfigError, match="needs a group"):
        build_prompt(replace(requests[0], bias="combination"))


def test_conditional_prompt_names_the_condition(requests) -> None:
    prompt = build_prompt(replace(requests[0], bias="conditional", condition="smile"))
    assert prompt.text == "\n".join([
        INTRO,
        'These images show a pattern of change given the condition "smile".',
        'Describe the pattern of change that z_0 controls given the condition "smile".',
        FORMAT,
    ])


def test_no_bias_prompt_is_the_grid_and_the_task_only(requests) -> None:
    """The paper's ablation: no bias statement and no comparison row, even when one was made."""
    prompt = build_prompt(replace(requests[0], bias="none"))
    assert prompt.text == "\n".join([
        INTRO,
        "Describe the pattern of change that z_0 controls.",
        FORMAT,
    ])
    assert prompt.images == (requests[0].grid_png,)


def test_grounding_puts_the_measurements_in_the_prompt(requests) -> None:
    summary = evidence_summary(requests[0].evidence, requests[0].comparison_evidence)
    assert summary.startswith("horizontal position goes from 0.2")
    assert "(2 of 2 rows agree)" in summary and "Unchanged:" in summary and "colour (hue)" in summary
    assert summary.endswith("The comparison rows change the same property.")
    text = build_prompt(requests[0], grounding=summary).text.splitlines()
    assert text[3] == f"Measurements of the images, for reference: {summary}"
    assert text[4] == "Describe the pattern of change that z_0 controls."


def test_user_bias_from_yaml_is_written_from_its_mapping(tmp_path, requests) -> None:
    path = tmp_path / "bias.yaml"
    path.write_text(
        "name: monotonic\n"
        'formula: "d x / d z_i > 0"\n'
        "mapping: {z_i: 'the latent variable {latent}', '>': steadily}\n"
        "statement: 'Along each row the images change {>} as {z_i} increases.'\n"
        "task: 'Describe what {z_i} changes.'\n"
    )
    (bias,) = load_biases(path, replace=True)
    assert get_bias("monotonic") is bias
    text = build_prompt(requests[0], bias=bias).text.splitlines()
    assert text[1:3] == ["Along each row the images change steadily as the latent variable z_0 increases.",
                         "Describe what the latent variable z_0 changes."]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nformula: f\nmaping: {}\nstatement: '{zz}'\ntask: t\n")
    with pytest.raises(ConfigError, match=r"field 'maping' Did you mean 'mapping'.*missing 'mapping'"):
        load_biases(bad)
    with pytest.raises(ConfigError, match=r"Unknown bias 'disentangle'.*Did you mean 'disentanglement'"):
        get_bias("disentangle")


def test_prompt_writing_request_holds_formula_mapping_and_one_example() -> None:
    assert prompt_writing_request(COMBINATION) == (
        "You write one sentence for a prompt that asks a multimodal model to explain a latent variable "
        "of a generative model. The sentence states an inductive bias, given as a formula, in plain "
        "words, using the symbol-to-word mapping. Write only the sentence.\n\n"
        "Example.\nFormula: p(z_i | z_i' = a) = p(z_i | z_i' = b) for all i != i', a != b\n"
        "Mapping: z_i -> pattern of change; = -> same; z_i' -> other variations\n"
        "Sentence: These two rows of images show the same pattern of change despite other variations.\n\n"
        "Now this one.\nFormula: y = f(z_G), G = {group}\n"
        "Mapping: z_G -> the latent variables {group}; f -> jointly control; y -> one property\n"
        "Sentence:"
    )


# --- answers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    '{"label": "x position", "sentence": "The blob moves right.", "increases": "x"}',
    'Sure! Here it is:\n```json\n{"label": "x position", "sentence": "The blob moves right.",'
    ' "increases": "x",}\n```\nHope this helps.',
    "{'label': 'x position', 'sentence': 'The blob moves right.', 'increases': 'x'}",
    'The answer: {"Label": "x position", "Sentence": "The blob moves right.", "increases": "x"} done',
])
def test_structured_answers_are_read_robustly(text: str) -> None:
    answer = parse_answer(text)
    assert (answer.sentence, answer.label, answer.increases, answer.structured) == (
        "The blob moves right.", "x position", "x", True)


def test_free_text_fallback_takes_the_first_paragraph() -> None:
    answer = parse_answer("Sentence: As z_0 increases, the blob\nmoves right.\n\nMore prose.")
    assert answer.sentence == "As z_0 increases, the blob moves right." and not answer.structured


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty answer"), ("   \n", "empty answer"), (None, "empty answer"), ("{}", "empty answer"),
    ("I'm sorry, but I can't help with that.", "refusal"),
    ("I cannot assist with identifying people in images.", "refusal"),
    ('{"label": "", "sentence": "I can\'t help with that request."}', "refusal"),
])
def test_empty_answers_and_refusals_are_rejected(text: str | None, why: str) -> None:
    with pytest.raises(AnswerRejected, match=why):
        parse_answer(text)


def test_can_not_inside_an_explanation_is_not_a_refusal() -> None:
    assert parse_answer('{"sentence": "The blob moves right; it cannot leave the frame."}').sentence


# --- grounding -------------------------------------------------------------------------------

def test_answer_naming_an_unmoved_property_is_flagged(requests) -> None:
    x_moves = requests[0].evidence
    found = contradictions(["The blob turns red.", "It moves from left to right.", ""], x_moves)
    assert [(c.answer, c.property, c.words) for c in found] == [(0, "hue", ("red",))]
    assert found[0].message().startswith("answer 1 names colour (hue) ('red'), but the measured colour")
    hue_moves = requests[3].evidence
    assert contradictions(["The colour changes from blue to green."], hue_moves) == []


# --- cache -----------------------------------------------------------------------------------

def test_cache_key_covers_what_changes_an_answer_and_writes_atomically(tmp_path) -> None:
    base = {"uri": "openai:/m", "prompt": "p", "images": [b"png"], "sample": 0}
    key = cache_key(base)
    assert key == cache_key(dict(reversed(list(base.items()))))
    for change in ({"prompt": "q"}, {"images": [b"png2"]}, {"sample": 1}, {"uri": "openai:/n"}):
        assert cache_key({**base, **change}) != key
    cache = AnswerCache(tmp_path)
    assert cache.get(key) is None
    cache.put(key, {"text": "hello"})
    assert cache.get(key) == {"text": "hello"} and cache.contains(key)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{key}.json"]  # no temp left
    cache.path(key).write_text("{broken")
    assert cache.get(key) is None  # a corrupt entry is a miss, not an error
    off = AnswerCache.from_option("none")
    off.put(key, {"text": "x"})
    assert not off.enabled and off.get(key) is None


def test_image_key_is_the_pixels_not_the_png_encoding() -> None:
    """A grid encoded another way (zlib level, filters) keys the same cached answers; other
    pixels, another size or mode do not."""
    import io
    import zlib

    import numpy as np
    from PIL import Image

    from lexflow.cache import image_digest
    from lexflow.stages.render import png_bytes

    rng = np.random.default_rng(0)
    grid = (rng.random((40, 60, 3)) * 255).astype(np.uint8)

    def pil_png(a: np.ndarray, level: int, mode: str = "RGB") -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).convert(mode).save(buf, format="PNG", compress_level=level)
        return buf.getvalue()

    encodings = {png_bytes(grid), pil_png(grid, 1), pil_png(grid, 9)}
    assert len(encodings) == 3  # three different files...
    assert len({image_digest(b) for b in encodings}) == 1  # ...one key
    other = grid.copy()
    other[0, 0, 0] ^= 1
    assert image_digest(png_bytes(other)) != image_digest(png_bytes(grid))
    assert image_digest(pil_png(grid, 6, "RGBA")) != image_digest(pil_png(grid, 6))
    assert image_digest(png_bytes(grid[:, :30].copy())) != image_digest(png_bytes(grid))
    broken = b"\x89PNG\r\n\x1a\n" + zlib.compress(b"not a png")
    assert image_digest(broken) == __import__("hashlib").sha256(broken).hexdigest()
    from lexflow.explainers.prompts import Prompt

    ex = get_explainer("ollama:/llava")
    keys = {ex.key_for(Prompt("p", (b, b)), 0, 0, "id") for b in encodings}
    assert len(keys) == 1
    assert ex.key_for(Prompt("p", (png_bytes(other),)), 0, 0, "id") not in keys


def test_default_cache_dir_honours_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LEXFLOW_CACHE_DIR", str(tmp_path / "c"))
    assert AnswerCache.from_option(None).directory == tmp_path / "c"
    assert AnswerCache.from_option(str(tmp_path / "d")).directory == tmp_path / "d"


# --- construction: keys, SDKs, options ---------------------------------------------------------

@pytest.mark.parametrize(("uri", "variable"), [
    ("openai:/gpt-4o", "OPENAI_API_KEY"), ("anthropic:/claude-sonnet-4", "ANTHROPIC_API_KEY"),
    ("gemini:/gemini-2.5-flash", "GEMINI_API_KEY or GOOGLE_API_KEY"),
])
def test_missing_key_fails_at_construction_naming_the_variable(monkeypatch, uri: str, variable: str) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
                 "GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=f"set the environment variable {variable}"):
        get_explainer(uri)
    get_explainer(uri, {"dry_run": True})  # a dry run needs no key
    get_explainer("ollama:/llava")  # a local server needs none


def test_missing_sdk_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lexflow\[anthropic\]'"):
        get_explainer("anthropic:/claude-sonnet-4")


def test_options_are_typed_and_unknown_ones_rejected() -> None:
    given = {"temperature": "0.7", "max_attempts": "3", "grounding": "true"}
    opts = MLLMOptions.from_mapping(given, "openai")
    assert (opts.temperature, opts.max_attempts, opts.grounding) == (0.7, 3, True)
    with pytest.raises(ConfigError, match=r"unknown option 'temprature' Did you mean 'temperature'"):
        MLLMOptions.from_mapping({"temprature": 1}, "openai")
    with pytest.raises(ConfigError, match="'concurrency' must be >= 1"):
        MLLMOptions.from_mapping({"concurrency": 0}, "openai")


def test_per_sample_seeds_differ_and_repeat() -> None:
    seeds = {sample_seed(0, i, k) for i in range(10) for k in range(5)}
    assert len(seeds) == 50 and sample_seed(0, 3, 1) == sample_seed(0, 3, 1)


def test_prices_match_model_families_and_unknown_models_cost_nothing(requests) -> None:
    assert price_for("openai", "gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_for("openai", "gpt-4o-mini") == (0.15, 0.60)
    assert price_for("ollama", "llava") == (0.0, 0.0) == price_for("openai", "my-local-model")
    w, h = png_size(requests[0].grid_png)
    assert (w, h) != (0, 0) and png_size(b"not a png") == (0, 0)
    assert image_tokens("openai", 512, 512) == 85 + 170
    json.dumps(requests[0].evidence.to_dict())
