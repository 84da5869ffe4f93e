"""Registering models lexflow can explain: :func:`log_diffusers` stores a whole diffusers pipeline.

The pipeline is saved with ``save_pretrained`` and logged as the artifact ``pipeline`` of a pyfunc
model (:class:`DiffusersPipelineModel`: ``predict`` generates images); its MLmodel metadata under
``lexflow`` says it is a diffusion pipeline, so ``lexflow explain models:/...`` loads it through
:class:`lexflow.adapters.diffusers_pipeline.DiffusionPipelineAdapter`. Loading the pyfunc with
``mlflow.pyfunc.load_model`` needs lexflow installed (the wrapper class lives here).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.pyfunc import PythonModel

from lexflow import names
from lexflow.adapters.diffusers_pipeline import ARTIFACT_KEY, DiffusionSettings
from lexflow.errors import ConfigError, require

ADAPTER_NAME = "diffusers_pipeline"


class DiffusersPipelineModel(PythonModel):
    """pyfunc over a saved pipeline. predict(DataFrame with an optional ``prompt`` column, or a
    number of images) -> float32 [N, C, H, W] in [0, 1]; params ``num_inference_steps``, ``seed``."""

    def load_context(self, context: Any) -> None:
        from lexflow.adapters.diffusers_pipeline import load_pipeline

        self.pipeline = load_pipeline(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 - no hints: MLflow
        # reads predict's type hints as an input schema
        import torch

        params = params or {}
        gen = torch.Generator().manual_seed(int(params.get("seed", 0)))
        steps = int(params.get("num_inference_steps", 50))
        if hasattr(model_input, "columns") and "prompt" in model_input.columns:
            out = self.pipeline(prompt=list(model_input["prompt"]), num_inference_steps=steps,
                                generator=gen, output_type="np")
        else:
            n = len(model_input) if hasattr(model_input, "__len__") else int(model_input)
            out = self.pipeline(batch_size=n, num_inference_steps=steps, generator=gen,
                                output_type="np")
        return np.asarray(out.images, dtype=np.float32).transpose(0, 3, 1, 2)


def diffusion_metadata(pipeline: Any, *, edit_prompt: str | None = None,
                       diffusion: dict[str, Any] | None = None,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``lexflow`` MLmodel metadata of a diffusion pipeline (checked like at explain time)."""
    conditional = getattr(pipeline, "text_encoder", None) is not None
    if edit_prompt and not conditional:
        raise ConfigError(
            f"edit_prompt={edit_prompt!r}, but {type(pipeline).__name__} is unconditional (no text "
            "encoder): it cannot take a prompt."
        )
    meta: dict[str, Any] = {
        "adapter": ADAPTER_NAME, "kind": "diffusion", "conditional": conditional,
        "bias": "conditional" if conditional else "disentanglement", "output_range": [-1, 1],
        "diffusion": dict(diffusion or {}),
    }
    if edit_prompt:
        meta["edit_prompt"] = edit_prompt
        meta["condition"] = edit_prompt
    meta.update(extra or {})
    DiffusionSettings.resolve(meta, None, conditional)  # unknown or bad keys fail now
    return meta


def log_diffusers(pipeline: Any, name: str = "model", registered_model_name: str | None = None, *,
                  edit_prompt: str | None = None, diffusion: dict[str, Any] | None = None,
                  metadata: dict[str, Any] | None = None,
                  pip_requirements: list[str] | None = None) -> Any:
    """Log a whole diffusers pipeline as an MLflow model lexflow can explain; returns MLflow's
    ``ModelInfo`` (``registered_model_version`` set when ``registered_model_name`` is given).

    Args:
        pipeline: a diffusers pipeline with ``unet`` and ``scheduler`` (``DDPMPipeline``,
            ``DDIMPipeline``, ``StableDiffusionPipeline`` ...).
        name: the model's name in the run.
        registered_model_name: register a version under this name.
        edit_prompt: the default edit prompt of a text-conditional pipeline.
        diffusion: settings of :class:`lexflow.adapters.diffusers_pipeline.DiffusionSettings`
            (``ddim_steps``, ``guidance_steps``, ``guidance_scale``, ``t_fraction`` ...).
        metadata: more ``lexflow`` metadata (``latent_names`` ...).
    """
    require("diffusers", extra="diffusion", purpose="Logging a diffusers pipeline")
    if not hasattr(pipeline, "save_pretrained"):
        raise ConfigError(f"log_diffusers takes a diffusers pipeline; got {type(pipeline).__name__}.")
    meta = diffusion_metadata(pipeline, edit_prompt=edit_prompt, diffusion=diffusion, extra=metadata)
    reqs = pip_requirements or ["diffusers", "torch", "transformers", "lexflow"]
    with tempfile.TemporaryDirectory(prefix="lexflow-diffusers-") as tmp:
        path = os.path.join(tmp, ARTIFACT_KEY)
        pipeline.save_pretrained(path, safe_serialization=True)
        return mlflow.pyfunc.log_model(
            name=name, python_model=DiffusersPipelineModel(), artifacts={ARTIFACT_KEY: path},
            pip_requirements=reqs, metadata={names.METADATA_KEY: meta},
            registered_model_name=registered_model_name,
        )
