"""Diffusion models end to end on CPU: tiny U-Nets built here (no downloads), DDIM inversion,
matrix-free h-space directions checked against the dense Jacobian SVD, guidance traversals,
lexflow.log_diffusers into a throwaway SQLite store, lexflow.explain and `mlflow run`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from conftest import subprocess_env  # noqa: E402
from helpers import REPO_ROOT, VENV_BIN, lexflow_tags, run_command  # noqa: E402
from models.tiny_diffusion import FAST, tiny_ddim, tiny_unet  # noqa: E402

import lexflow  # noqa: E402
from lexflow.adapters.diffusers_pipeline import DiffusionPipelineAdapter  # noqa: E402
from lexflow.config import ExplainConfig  # noqa: E402
from lexflow.diffusion import ddim  # noqa: E402
from lexflow.diffusion.guidance import guide  # noqa: E402
from lexflow.diffusion.hspace import (  # noqa: E402
    classic_attention,
    dense_directions,
    mid_block_fn,
    principal_angles,
    pullback_directions,
)
from lexflow.errors import ConfigError, ModelContractError  # noqa: E402
from lexflow.logging_helpers import diffusion_metadata  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_tokenizer(tmp: Path) -> Any:
    """A CLIP tokenizer over single letters, written here (no download)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    letters = "abcdefghijklmnopqrstuvwxyz"
    for suffix in ("", "</w>"):
        for c in letters:
            vocab[c + suffix] = len(vocab)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "vocab.json").write_text(json.dumps(vocab))
    (tmp / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(tmp / "vocab.json"), str(tmp / "merges.txt"), model_max_length=8)


def tiny_stable_diffusion(tmp: Path) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(tmp / "tokenizer")
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2,
        num_hidden_layers=1, max_position_embeddings=8, bos_token_id=0, eos_token_id=1,
        pad_token_id=1, projection_dim=16))
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
        norm_num_groups=4, attention_head_dim=2)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
        norm_num_groups=4, sample_size=16)
    return diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
        scheduler=diffusers.DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def write_images(folder: Path, n: int, size: int) -> str:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        yy, xx = np.mgrid[0:size, 0:size]
        blob = ((xx - size * (0.3 + 0.4 * i / max(n - 1, 1))) ** 2 + (yy - size / 2) ** 2) < (size / 4) ** 2
        img = np.where(blob[..., None], [220, 60, 40], [30, 30, 60]) + rng.integers(0, 10, (size, size, 3))
        Image.fromarray(img.astype(np.uint8)).save(folder / f"img_{i}.png")
    return str(folder)


def log_pipeline(pipe: Any, name: str, **kwargs: Any) -> str:
    import mlflow

    with mlflow.start_run():
        info = lexflow.log_diffusers(pipe, name="model", registered_model_name=name, **kwargs)
    return str(info.registered_model_version)


def read_explanations(run_id: str) -> dict[str, Any]:
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="lexflow/explanations.json")
    return json.loads(Path(path).read_text())


# --- the pieces -------------------------------------------------------------------------------

def test_ddim_inversion_then_sampling_gives_the_image_back() -> None:
    pipe = tiny_ddim()
    schedule = ddim.DDIMSchedule.from_scheduler(pipe.scheduler, 10)
    assert schedule.timesteps[-1] == 900 and schedule.edit_index(1.0) == 9
    assert schedule.edit_index(0.7) == 6
    fixed = torch.randn(1, 3, 16, 16)

    def model(x: Any, t: int) -> Any:  # eps independent of x: inversion is then exact
        return fixed * (1 + t / 1000)

    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    xt = ddim.invert(model, x0, schedule, schedule.edit_index(0.5))
    back = ddim.sample(model, xt, schedule, schedule.edit_index(0.5))
    assert (back - x0).abs().max() < 1e-4 < 0.1 < (xt - x0).abs().mean()


def test_matrix_free_directions_span_the_dense_svd_subspace() -> None:
    unet = tiny_unet(size=8)
    h = mid_block_fn(unet, lambda x: unet(x, 500))
    xs = torch.randn(2, 3, 8, 8)
    with classic_attention(unet):
        free = pullback_directions(h, xs, 3, iterations=60, tol=1e-7, oversample=6)
        dense = dense_directions(h, xs, 3)
    angles = principal_angles(free.vectors, dense.vectors)
    assert float(angles.max()) < 0.05, angles
    assert np.allclose(free.singular_values, dense.singular_values, rtol=1e-3)
    assert free.method in ("jvp", "double-vjp")
    # orthonormal rows, largest entry positive (the sign convention)
    gram = free.vectors @ free.vectors.T
    assert torch.allclose(gram, torch.eye(3), atol=1e-4)
    idx = free.vectors.abs().argmax(dim=1)
    assert (free.vectors.gather(1, idx[:, None]) > 0).all()


def test_bad_inputs_fail_with_a_clear_message(tmp_path: Path) -> None:
    config = ExplainConfig(directions=2, rows=1, steps=3)
    with pytest.raises(ModelContractError, match="no mid-block"):
        DiffusionPipelineAdapter(tiny_ddim(mid=False), device="cpu", metadata={"diffusion": FAST}
                                 ).traversal_plan(config)
    # DDIMPipeline would turn any scheduler into a DDIMScheduler; DDPMPipeline keeps it
    cannot = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=diffusers.ScoreSdeVeScheduler())
    with pytest.raises(ModelContractError, match="cannot be inverted by DDIM"):
        DiffusionPipelineAdapter(cannot, device="cpu", metadata={"diffusion": FAST}).traversal_plan(config)
    adapter = DiffusionPipelineAdapter(tiny_ddim(), device="cpu", metadata={"diffusion": FAST})
    folder = write_images(tmp_path / "big", 1, 20)
    with pytest.raises(ConfigError, match=r"is 20x20 px; this pipeline makes 16x16 px"):
        adapter.traversal_plan(ExplainConfig(image=folder, steps=3))
    with pytest.raises(ConfigError, match="unconditional diffusion model"):
        adapter.traversal_plan(ExplainConfig(edit_prompt="smile", steps=3))
    with pytest.raises(ConfigError, match="unconditional"):
        diffusion_metadata(tiny_ddim(), edit_prompt="smile")
    with pytest.raises(ConfigError, match="float16.*needs a CUDA device"):
        adapter.traversal_plan(ExplainConfig(dtype="float16", steps=3))
    with pytest.raises(ConfigError, match="dtype must be one of"):
        ExplainConfig(dtype="float8")
    with pytest.raises(ModelContractError, match="Unknown keys"):
        DiffusionPipelineAdapter(tiny_ddim(), device="cpu", metadata={"diffusion": {"ddim_step": 3}})


def test_guidance_traversal_reads_minus_base_plus() -> None:
    adapter = DiffusionPipelineAdapter(tiny_ddim(), device="auto", metadata={"diffusion": FAST})
    assert adapter.device == ("cuda" if torch.cuda.is_available() else "cpu")
    plan = adapter.traversal_plan(ExplainConfig(directions=2, rows=2, steps=5))
    assert plan.values == (-4.0, -2.0, 0.0, 2.0, 4.0) and plan.items == 2
    codes = plan.codes(1).reshape(2, 5, -1)
    base = plan.base.reshape(2, -1).numpy()
    assert np.allclose(codes[:, 2], base, atol=1e-6)  # the middle column is the base latent
    v = plan.directions.vectors[1].reshape(1, 3, 16, 16).expand(2, -1, -1, -1)
    for sign, column in ((1, 4), (-1, 0)):  # +v steps on the right, -v steps on the left
        path = guide(plan.eps_at, plan.base, sign * v, steps=4, scale=FAST["guidance_scale"],
                     delta=1.0, keep={2, 4})
        assert np.allclose(codes[:, column], path[4].reshape(2, -1).numpy(), atol=1e-5)
        assert np.allclose(codes[:, column // 2 + 1 if sign > 0 else 1],
                           path[2].reshape(2, -1).numpy(), atol=1e-5)
    moved = np.linalg.norm(codes - base[:, None], axis=2)
    assert (moved[:, [0, 4]] > moved[:, [1, 3]]).all() and (moved[:, [1, 3]] > 0).all()
    images = adapter.decode(codes.reshape(10, -1))
    assert images.shape == (10, 3, 16, 16) and np.isfinite(images).all()
    assert plan.comparison_codes(0, 1).shape == (10, 768)


# --- registered and explained -------------------------------------------------------------------

def test_unconditional_pipeline_explained_end_to_end(sqlite_tracking: str, no_progress: None,
                                                     tmp_path: Path) -> None:
    version = log_pipeline(tiny_ddim(), "tiny-ddpm", diffusion=FAST)
    images = write_images(tmp_path / "images", 2, 16)
    result = lexflow.explain("models:/tiny-ddpm/" + version,
                             ExplainConfig(directions=3, steps=5, image=images), progress=False)
    assert result.latent_dim == 3 and [r.kind for r in result.latents] == ["direction"] * 3
    doc = read_explanations(result.run_id)
    assert doc["traversal"]["kind"] == "direction"
    assert doc["traversal"]["values"] == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert "-direction through the base image to +direction" in doc["traversal"]["sign_convention"]
    assert doc["traversal"]["base"] == "inverted images"
    assert [r["kind"] for r in doc["latents"]] == ["direction"] * 3
    tags = lexflow_tags("tiny-ddpm", version)
    assert tags["lexflow.status"] == "complete"
    assert {"lexflow.latent.00", "lexflow.latent.01", "lexflow.latent.02"} <= set(tags)
    import mlflow

    grid = mlflow.artifacts.download_artifacts(run_id=result.run_id,
                                               artifact_path="lexflow/traversals/latent_00.png")
    from PIL import Image

    w, h = Image.open(grid).size
    assert w > 5 * 64 and h > 2 * 64  # 5 columns, 2 rows (one per image), cells upscaled to 64 px
    report = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id,
                                                      artifact_path="lexflow/report.html")).read_text()
    assert "Direction 00" in report and "+direction" in report


def test_stable_diffusion_explained_under_an_edit_prompt(sqlite_tracking: str, no_progress: None,
                                                         tmp_path: Path) -> None:
    version = log_pipeline(tiny_stable_diffusion(tmp_path), "tiny-sd",
                           diffusion={"ddim_steps": 5, "guidance_steps": 2, "guidance_scale": 50.0,
                                      "power_iterations": 4})
    with pytest.raises(lexflow.LexflowError, match="edit prompt"):
        lexflow.explain(f"models:/tiny-sd/{version}", ExplainConfig(steps=3), progress=False)
    result = lexflow.explain(f"models:/tiny-sd/{version}",
                             ExplainConfig(directions=2, rows=2, steps=3, edit_prompt="smile"),
                             progress=False)
    doc = read_explanations(result.run_id)
    assert doc["traversal"]["model"] == "stable-diffusion"
    assert doc["traversal"]["t_fraction"] == 0.7 and doc["traversal"]["condition"] == "smile"
    assert all(r["condition"] == "smile" for r in doc["latents"])
    assert result.config["edit_prompt"] == "smile"


def test_mlflow_run_explains_a_diffusion_model(sqlite_tracking: str, tmp_path: Path) -> None:
    version = log_pipeline(tiny_ddim(), "tiny-ddpm-run", diffusion=FAST)
    env = subprocess_env(sqlite_tracking, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = run_command(
        [str(VENV_BIN / "mlflow"), "run", str(REPO_ROOT), "--env-manager", "local",
         "-P", f"model_uri=models:/tiny-ddpm-run/{version}", "-P", "directions=2",
         "-P", "rows=1", "-P", "steps=3", "-P", "ddim_steps=3",
         "--experiment-name", "diffusion-run"], env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.describe()
    tags = lexflow_tags("tiny-ddpm-run", version)
    assert tags["lexflow.status"] == "complete", tags
    doc = read_explanations(tags["lexflow.run_id"])
    assert doc["traversal"]["ddim_steps"] == 3 and len(doc["latents"]) == 2


def test_mlflow_diffusers_flavor_needs_its_base_model_locally(sqlite_tracking: str, no_progress: None,
                                                              tmp_path: Path) -> None:
    """MLflow's own mlflow.diffusers flavor (a LoRA adapter + a base model reference)."""
    import mlflow
    import mlflow.diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    base_dir = tmp_path / "base"
    pipe = tiny_stable_diffusion(tmp_path)
    pipe.save_pretrained(base_dir)
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v"]))
    lora_dir = tmp_path / "lora"
    diffusers.StableDiffusionPipeline.save_lora_weights(
        lora_dir, unet_lora_layers=get_peft_model_state_dict(pipe.unet))
    meta = {"lexflow": {"edit_prompt": "smile", "bias": "conditional",
                        "diffusion": {"ddim_steps": 4, "guidance_steps": 2, "power_iterations": 3}}}
    with mlflow.start_run():
        ok = mlflow.diffusers.log_model(str(lora_dir), base_model=str(base_dir), name="model",
                                        registered_model_name="lora-ok", metadata=meta)
        missing = mlflow.diffusers.log_model(str(lora_dir), base_model=str(tmp_path / "gone"),
                                             name="model2", registered_model_name="lora-missing",
                                             metadata=meta)
    result = lexflow.explain(f"models:/lora-ok/{ok.registered_model_version}",
                             ExplainConfig(directions=2, rows=1, steps=3), progress=False)
    assert [r.kind for r in result.latents] == ["direction", "direction"]
    with pytest.raises(ModelContractError, match="not available here.*never downloads"):
        lexflow.explain(f"models:/lora-missing/{missing.registered_model_version}",
                        ExplainConfig(directions=2, rows=1, steps=3), progress=False)


def test_logged_pipeline_predicts_through_pyfunc(sqlite_tracking: str) -> None:
    import mlflow.pyfunc

    version = log_pipeline(tiny_ddim(), "tiny-ddpm-pyfunc", diffusion=FAST)
    model = mlflow.pyfunc.load_model(f"models:/tiny-ddpm-pyfunc/{version}")
    out = model.predict(np.zeros(2), params={"num_inference_steps": 2})
    assert out.shape == (2, 3, 16, 16)
