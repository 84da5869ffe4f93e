"""lexflow: explain the latent variables of generative models in the MLflow Model Registry.

``import lexflow`` is cheap: torch, onnxruntime, mlflow and provider SDKs load only when used.

    >>> import lexflow
    >>> result = lexflow.explain("models:/vae/3")          # doctest: +SKIP
    >>> result.latents[0].explanation                        # doctest: +SKIP
    'moves the object from left to right'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lexflow._version import __version__
from lexflow.config import ExplainConfig
from lexflow.errors import LexflowError

if TYPE_CHECKING:
    from lexflow.record import ExplainResult

__all__ = ["ExplainConfig", "LexflowError", "__version__", "explain"]


def explain(model_uri: str, config: ExplainConfig | None = None, **kwargs: Any) -> ExplainResult:
    """Explain a registered model's latents; see :func:`lexflow.pipeline.explain`."""
    from lexflow.pipeline import explain as _explain

    return _explain(model_uri, config, **kwargs)
