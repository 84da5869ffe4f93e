"""``transformers:/<dir>``: a tiny, randomly initialised LLaVA built here and saved to disk.

The model is gibberish by design (a 1-layer Llama over a 20-word vocabulary, a 2-layer CLIP vision
tower on 28 px images); the tests check the plumbing: it loads from disk, the grid goes through the
processor, ``samples`` answers come back, and empty answers are failures, not explanations.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from lexflow.config import ExplainConfig  # noqa: E402
from lexflow.errors import ConfigError  # noqa: E402
from lexflow.explainers import get_explainer  # noqa: E402
from lexflow.explainers.base import ExplainRequest  # noqa: E402
from lexflow.explainers.transformers_local import (  # noqa: E402
    TransformersExplainer,
    read_answers,
)
from lexflow.stages.evidence import measure_traversal  # noqa: E402
from lexflow.stages.render import png_bytes, traversal_grid  # noqa: E402

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "as", "z_0", "increases", "the", "shape",
         "moves", "right", "left", "grows", "colour", "turns", "red", "blue", "bigger", "smaller"]
IMAGE_SIDE, PATCH = 28, 14
IMAGE_TOKENS = (IMAGE_SIDE // PATCH) ** 2  # CLS dropped by the "default" feature strategy


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub access: every model here is loaded from a local directory."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def build_tiny_llava(directory: Path) -> Path:
    """Save a tiny LlavaForConditionalGeneration and its processor, built offline."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
        eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    image_processor_cls = (getattr(transformers, "CLIPImageProcessorPil", None)
                           or transformers.CLIPImageProcessor)  # the PIL one needs no torchvision
    image_processor = image_processor_cls(
        size={"shortest_edge": IMAGE_SIDE}, crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE})
    vision = transformers.CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        image_size=IMAGE_SIDE, patch_size=PATCH, projection_dim=16)
    text = transformers.LlamaConfig(
        vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
        pad_token_id=0, bos_token_id=2, eos_token_id=3)
    config = transformers.LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=WORDS.index("<image>"),
        vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    transformers.LlavaForConditionalGeneration(config).save_pretrained(directory)
    chat = ("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
            "<image> {% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}")
    transformers.LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=chat).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny-llava")


def request(samples: int = 3, *, index: int = 0, comparison: bool = False) -> ExplainRequest:
    """A latent whose traversal moves a bright square to the right (2 rows x 5 frames, 16 px)."""
    frames = np.zeros((2, 5, 3, 16, 16), dtype=np.float32)
    for k in range(5):
        frames[:, k, :, 5:10, 2 + 2 * k : 6 + 2 * k] = 1.0
    ev = measure_traversal(index, frames)
    grid = png_bytes(traversal_grid(frames, (-3.0, -1.5, 0.0, 1.5, 3.0)))
    return ExplainRequest(index=index, label=f"{index:02d}", bias="disentanglement",
                          values=(-3.0, -1.5, 0.0, 1.5, 3.0), grid_png=grid, evidence=ev,
                          samples=samples, comparison_png=grid if comparison else None,
                          comparison_evidence=ev if comparison else None)


def test_loads_from_disk_and_returns_samples_answers(tiny_llava: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    explainer = get_explainer(f"transformers:/{tiny_llava}", {"seed": 1, "max_new_tokens": 6,
                                                               "concurrency": 8, "cache": "none"})
    assert isinstance(explainer, TransformersExplainer) and explainer.is_mllm
    assert explainer.model_dir == tiny_llava.resolve() and explainer.device == "cpu"
    processor, model = explainer.load()
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    seen: list[Any] = []
    original = processor.image_processor.preprocess

    def spy(images: Any, *args: Any, **kwargs: Any) -> Any:
        seen.extend(images if isinstance(images, list) else [images])
        return original(images, *args, **kwargs)

    monkeypatch.setattr(processor.image_processor, "preprocess", spy)
    req = request(samples=4, comparison=True)
    response = explainer.explain(req)
    from PIL import Image

    grid = Image.open(io.BytesIO(req.grid_png))
    assert [getattr(im, "size", None) for im in seen] == [grid.size, grid.size]  # grid + comparison
    assert response.index == 0 and len(response.answers) == 4
    assert all(isinstance(a, str) for a in response.answers)
    assert len(response.failures) == sum(1 for a in response.answers if not a)
    assert all(set(a.split()) <= set(WORDS) for a in response.answers)  # decoded from the vocab
    assert response.calls == 1 and response.cost_usd == 0.0 and response.input_tokens > 0
    again = explainer.explain(req)
    assert again.answers == response.answers  # seeded per latent: reruns match


def test_model_inputs_carry_the_images_and_the_prompt(tiny_llava: Path) -> None:
    explainer = TransformersExplainer.from_uri(str(tiny_llava), {})
    prompt = explainer.prompt(request(comparison=True))
    assert "z_0" in prompt.text and len(prompt.images) == 2
    inputs = explainer.model_inputs(prompt)
    assert tuple(inputs["pixel_values"].shape) == (2, 3, IMAGE_SIDE, IMAGE_SIDE)
    image_id = WORDS.index("<image>")
    assert int((inputs["input_ids"] == image_id).sum()) == 2 * IMAGE_TOKENS


def test_sample_batches_and_empty_answers_are_failures(tiny_llava: Path) -> None:
    explainer = TransformersExplainer.from_uri(str(tiny_llava), {"sample_batch": 2, "max_new_tokens": 4})
    _, model = explainer.load()
    # Only the end-of-sequence token may be generated: every answer comes back empty.
    model.generation_config.suppress_tokens = [i for i in range(len(WORDS)) if i != WORDS.index("</s>")]
    try:
        response = explainer.explain(request(samples=5))
    finally:
        model.generation_config.suppress_tokens = None
    assert response.answers == ("",) * 5
    assert response.failures == ("empty answer",) * 5
    assert response.calls == 3  # 2 + 2 + 1


def test_refusals_are_failures_not_explanations() -> None:
    answers, failures = read_answers([
        "I'm sorry, but I can't help with identifying that.",
        '{"label": "x position", "sentence": "As z_0 increases, the shape moves right."}',
        "   ",
    ])
    assert answers == ["", "As z_0 increases, the shape moves right.", ""]
    assert failures[0].startswith("refusal") and failures[1] == "empty answer"


def test_bad_directories_and_options_are_config_errors(tmp_path: Path, tiny_llava: Path) -> None:
    missing = tmp_path / "no-model-here"
    with pytest.raises(ConfigError, match="no-model-here"):
        get_explainer(f"transformers:/{missing}")
    with pytest.raises(ConfigError, match="holds no config.json"):
        get_explainer(f"transformers:/{tmp_path}")
    with pytest.raises(ConfigError, match="unknown option 'temprature'.*Did you mean 'temperature'"):
        get_explainer(f"transformers:/{tiny_llava}", {"temprature": 0.5})
    with pytest.raises(ConfigError, match="device"):
        get_explainer(f"transformers:/{tiny_llava}", {"device": "tpu"})
    # transformers:/rel/dir is tried relative first, then absolute
    relative = TransformersExplainer.from_uri(str(tiny_llava).lstrip("/"), {})
    assert relative.model_dir == tiny_llava.resolve()


def test_missing_transformers_names_the_extra(tiny_llava: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from lexflow.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lexflow\[transformers\]'"):
        TransformersExplainer.from_uri(str(tiny_llava), {})


def test_a_full_run_with_the_local_explainer(tiny_llava: Path, sqlite_tracking: str,
                                              register_blob: Any, no_progress: None) -> None:
    from lexflow.tracking.job import explain

    version = register_blob("blob-transformers")
    config = ExplainConfig(explainer=f"transformers:/{tiny_llava}", samples=3, latents=(0, 4),
                           rows=1, extra={"max_new_tokens": 5})
    result = explain(f"models:/blob-transformers/{version}", config, progress=False)
    by_index = {r.index: r for r in result.latents}
    assert by_index[4].status == "inactive"
    assert len(by_index[0].answers) == 3 and by_index[0].status in ("explained", "unclear", "failed")
    assert result.explainer == f"transformers:/{tiny_llava}"
