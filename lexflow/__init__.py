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

__all__ = ["ExplainConfig", "LexflowError", "__version__", "explain", "log_diffusers"]


def explain(model_uri: str, config: ExplainConfig | None = None, **kwargs: Any) -> ExplainResult:
    """Explain a registered model's latents and record them in MLflow; see
    :func:`lexflow.tracking.job.explain`.

    Called inside your own ``mlflow.start_run()``, the explanation is logged into a new run
    nested under yours (tagged ``mlflow.parentRunId``, in your run's experiment); your run stays
    the active one and is not written to.
    """
    from lexflow.tracking.job import explain as _explain

    return _explain(model_uri, config, **kwargs)


def log_diffusers(pipeline: Any, name: str = "model", registered_model_name: str | None = None,
                  **kwargs: Any) -> Any:
    """Log a whole diffusers pipeline as an MLflow model lexflow can explain; see
    :func:`lexflow.logging_helpers.log_diffusers` (imports mlflow and diffusers on first use)."""
    from lexflow.logging_helpers import log_diffusers as _log

    return _log(pipeline, name=name, registered_model_name=registered_model_name, **kwargs)
