"""Name -> implementation registries for explainers and adapters.

Built-ins are listed here as ``module:attribute`` references and loaded lazily, exactly like the
entry points third parties declare in the ``lexflow.explainers`` and ``lexflow.adapters`` groups;
they work from a source checkout too. A third-party entry point cannot shadow a built-in name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from lexflow.names import EP_ADAPTERS as ADAPTER_GROUP
from lexflow.names import EP_EXPLAINERS as EXPLAINER_GROUP

BUILTIN: dict[str, dict[str, str]] = {
    EXPLAINER_GROUP: {
        "measure": "lexflow.explainers.measure:MeasureExplainer",
        "openai": "lexflow.explainers.openai_api:OpenAIExplainer",
        "anthropic": "lexflow.explainers.anthropic_api:AnthropicExplainer",
        "gemini": "lexflow.explainers.gemini_api:GeminiExplainer",
        "ollama": "lexflow.explainers.ollama_api:OllamaExplainer",
        "transformers": "lexflow.explainers.transformers_local:TransformersExplainer",
    },
    ADAPTER_GROUP: {
        "pytorch": "lexflow.adapters.pytorch_vae:PyTorchVAEAdapter",
        "onnx": "lexflow.adapters.onnx_decoder:OnnxDecoderAdapter",
        "python_function": "lexflow.adapters.pyfunc_decoder:PyfuncDecoderAdapter",
        "diffusers_pipeline": "lexflow.adapters.diffusers_pipeline:DiffusionPipelineAdapter",
        "diffusers": "lexflow.adapters.mlflow_diffusers:MlflowDiffusersAdapter",
    },
}


@dataclass(frozen=True)
class Ref:
    """A lazily imported ``module:attribute`` (the same shape as an entry point)."""

    name: str
    value: str

    def load(self) -> Any:
        module, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


def registry(group: str) -> dict[str, Any]:
    """Built-ins plus installed entry points of ``group``, by name."""
    found: dict[str, Any] = {n: Ref(n, v) for n, v in BUILTIN.get(group, {}).items()}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found
