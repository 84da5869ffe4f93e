"""pyfunc decoders: ``predict(array [N, d]) -> array [N, C, H, W]``.

``latent_dim`` comes from the ``lexflow`` metadata (``latent_dim``) or the model signature's
input shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lexflow.adapters.base import ModelInfo
from lexflow.errors import ModelContractError


def _signature_latent_dim(model: Any) -> int | None:
    sig = getattr(getattr(model, "metadata", None), "signature", None)
    if sig is None or sig.inputs is None:
        return None
    try:
        spec = sig.inputs.inputs[0]
        shape = getattr(spec, "shape", None)
        if shape is not None and len(shape) == 2 and int(shape[1]) > 0:
            return int(shape[1])
        if len(sig.inputs.inputs) > 1:  # column-based signature: one column per latent
            return len(sig.inputs.inputs)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return None


class PyfuncDecoderAdapter:
    flavor = "python_function"

    def __init__(self, model: Any, info: ModelInfo) -> None:
        self.model = model
        self.device = "cpu"
        latent_dim = info.metadata.get("latent_dim") or _signature_latent_dim(model)
        if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim < 1:
            raise ModelContractError(
                "lexflow cannot tell how many latents this pyfunc model takes. Log it with a "
                "signature whose input is a tensor of shape (-1, d), or with "
                "metadata={'lexflow': {'latent_dim': d}}."
            )
        self.latent_dim = latent_dim

    @classmethod
    def from_local(cls, local_dir: str, info: ModelInfo, *, device: str) -> PyfuncDecoderAdapter:
        import mlflow.pyfunc

        try:
            model = mlflow.pyfunc.load_model(local_dir)
        except Exception as exc:  # user code can raise anything while loading
            raise ModelContractError(f"Could not load the pyfunc model: {exc}") from exc
        return cls(model, info)

    def decode(self, z: np.ndarray) -> np.ndarray:
        out = self.model.predict(z.astype(np.float32))
        if hasattr(out, "to_numpy"):
            out = out.to_numpy()
        return np.array(out, dtype=np.float32)  # a copy: lexflow normalises it in place
