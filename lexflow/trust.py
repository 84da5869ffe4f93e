"""Which models lexflow loads without a person deciding to: the trust contract.

Loading a pickled model runs code its author wrote: ``mlflow.pytorch`` with pickle serialization
and a pyfunc's ``python_model`` (cloudpickle) execute on load, with this process's environment,
MLLM keys included. An ONNX model is a graph of operators: loading and running it executes no
code of the author's, which makes ONNX the safe contract for automatic runs.

A person who runs ``lexflow explain`` chose the model; an automatic run (the webhook receiver)
did not, so it loads only models lexflow would decode through the ONNX adapter, unless started
with ``--allow-pickle``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from lexflow import names
from lexflow.errors import ConfigError, TrackingError

SAFE_FLAVOR = "onnx"


class UntrustedModelError(ConfigError):
    """An automatic run was asked to load a model whose loading runs code (exit 2)."""


def code_on_load(flavors: Sequence[str], metadata: Mapping[str, Any]) -> str | None:
    """Why loading a model with these flavors would run its author's code, or None (ONNX)."""
    if metadata.get("adapter") or "diffusers" in flavors:
        return "a diffusion pipeline (loaded through Python code shipped with the model)"
    if "pytorch" in flavors:
        return "a pickled PyTorch model (unpickling runs code)"
    if SAFE_FLAVOR in flavors:
        return None
    if "python_function" in flavors:
        return "a pyfunc model (its python_model is unpickled, which runs code)"
    return f"a model with flavors {list(flavors)}"


def check_automatic(model_uri: str, *, allow_pickle: bool) -> None:
    """Refuse, before anything of it is loaded, a model an automatic run may not load."""
    if allow_pickle:
        return
    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="lexflow-trust-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"{model_uri}/MLmodel",
                                                        dst_path=tmp)
            m = Model.load(local if local.endswith("MLmodel") else os.path.join(local, "MLmodel"))
        except Exception as exc:  # MlflowException, OSError: the MLmodel file is not readable
            raise TrackingError(f"Could not read the MLmodel file of {model_uri}: {exc}") from exc
    meta = (m.metadata or {}).get(names.METADATA_KEY) or {}
    reason = code_on_load(tuple(m.flavors), meta if isinstance(meta, dict) else {})
    if reason:
        raise UntrustedModelError(
            f"{model_uri} is {reason}. Automatic runs load only ONNX models (mlflow.onnx), whose "
            "loading runs no code of the model's author; start the receiver with --allow-pickle "
            "to load this model anyway (see 'Trust' in the README).")
