"""Models logged with MLflow's own ``mlflow.diffusers`` flavor (a LoRA adapter on a base pipeline).

Such a model holds only the adapter weights and a reference (``base_model``) to the base pipeline:
a Hugging Face Hub id or a local path. lexflow never downloads weights at run time, so the base
pipeline must be on this machine: a local directory, or already in the Hugging Face cache. It is
loaded with ``local_files_only=True``, the LoRA weights are applied (this needs ``peft``), and
the result is explained like any pipeline of :mod:`lexflow.adapters.diffusers_pipeline`.
"""

from __future__ import annotations

import os

from lexflow.adapters.base import ModelInfo, flavor_conf
from lexflow.adapters.diffusers_pipeline import DiffusionPipelineAdapter
from lexflow.errors import ModelContractError, require


class MlflowDiffusersAdapter(DiffusionPipelineAdapter):
    flavor = "diffusers"

    @classmethod
    def from_local(cls, local_dir: str, info: ModelInfo, *, device: str) -> MlflowDiffusersAdapter:
        diffusers = require("diffusers", extra="diffusion", purpose="Loading an mlflow.diffusers model")
        conf = flavor_conf(local_dir, "diffusers")
        base = str(conf.get("base_model") or "")
        if not base:
            raise ModelContractError("The mlflow.diffusers model names no base_model in its MLmodel file.")
        kwargs = {"revision": conf["base_model_revision"]} if conf.get("base_model_revision") else {}
        try:
            pipe = diffusers.DiffusionPipeline.from_pretrained(base, local_files_only=True, **kwargs)
        except (OSError, ValueError) as exc:
            where = "directory does not exist" if os.path.isabs(base) and not os.path.exists(base) \
                else "is not in the local Hugging Face cache"
            raise ModelContractError(
                f"This mlflow.diffusers model is a LoRA adapter on the base pipeline {base!r}, "
                f"which is not available here (the {where}); lexflow never downloads weights at "
                "run time. Put the base pipeline on this machine (e.g. `hf download "
                f"{base}` where it is a Hub id, or copy the directory to that path), or log the "
                "whole pipeline with lexflow.log_diffusers(pipeline, name=...)."
            ) from exc
        weights = os.path.join(local_dir, str(conf.get("adapter_weights", "adapter_weights")))
        require("peft", extra="diffusion", purpose="Applying the LoRA weights of an mlflow.diffusers model")
        lora = {"weight_name": conf["weight_name"]} if conf.get("weight_name") else {}
        if not hasattr(pipe, "load_lora_weights"):
            raise ModelContractError(
                f"The base pipeline {type(pipe).__name__} cannot take LoRA weights (no load_lora_weights)."
            )
        try:
            pipe.load_lora_weights(weights, **lora)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelContractError(f"Could not apply the LoRA weights at {weights}: {exc}") from exc
        return cls(pipe, device=device, metadata=info.metadata)
