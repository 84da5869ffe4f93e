"""PyTorch VAEs logged with ``mlflow.pytorch`` (pickle serialization, with ``code_paths``).

Contract: a ``torch.nn.Module`` with an integer attribute ``latent_dim`` and a method
``decode(z)`` mapping a float tensor [N, latent_dim] to images [N, C, H, W].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lexflow.adapters.base import ModelInfo, check_device, resolve_device
from lexflow.errors import ModelContractError, require


class PyTorchVAEAdapter:
    flavor = "pytorch"

    def __init__(self, module: Any, *, device: str = "auto") -> None:
        torch = require("torch", extra="torch", purpose="Decoding a PyTorch model")
        self._torch = torch
        latent_dim = getattr(module, "latent_dim", None)
        if not callable(getattr(module, "decode", None)):
            raise ModelContractError(
                f"The PyTorch model ({type(module).__name__}) has no decode(z) method. lexflow "
                "needs decode(z: Tensor[N, latent_dim]) -> Tensor[N, C, H, W]. If it was logged "
                "with torch.export (MLflow's default), only forward() survives: log it again with "
                "mlflow.pytorch.log_model(..., serialization_format='pickle', code_paths=[...])."
            )
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ModelContractError(
                f"The PyTorch model ({type(module).__name__}) needs an integer attribute "
                f"latent_dim >= 1 (the number of latents decode() takes); got {latent_dim!r}."
            )
        self.device = resolve_device(device)
        check_device(self.device)
        self.latent_dim = latent_dim
        self.module = module.to(self.device).eval()
        self.dtype = next((p.dtype for p in module.parameters()), torch.float32)

    @classmethod
    def from_local(cls, local_dir: str, info: ModelInfo, *, device: str) -> PyTorchVAEAdapter:
        import mlflow.pytorch

        dev = resolve_device(device)
        try:
            module = mlflow.pytorch.load_model(local_dir, map_location=dev)
        except Exception as exc:  # unpickling user code can raise anything
            raise ModelContractError(
                f"Could not load the PyTorch model: {type(exc).__name__}: {exc}. Was it logged "
                "with code_paths that contain the module defining its class?"
            ) from exc
        return cls(module, device=dev)

    def decode(self, z: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(z)).to(self.device, self.dtype)
            out = self.module.decode(t)
            if isinstance(out, (tuple, list)):
                out = out[0]
            if not isinstance(out, torch.Tensor):
                raise ModelContractError(
                    f"decode(z) must return a Tensor [N, C, H, W]; it returned {type(out).__name__}."
                )
            return out.detach().to("cpu", torch.float32).numpy()
