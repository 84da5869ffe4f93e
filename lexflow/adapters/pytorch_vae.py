"""PyTorch VAEs logged with ``mlflow.pytorch`` (pickle serialization, with ``code_paths``).

Contract: a ``torch.nn.Module`` with an integer attribute ``latent_dim`` and a method
``decode(z)`` mapping a float tensor [N, latent_dim] to images [N, C, H, W]. Optionally
``encode(x)``: images [N, C, H, W] (in decode's range) to the posterior mean [N, latent_dim], a
``(mean, logvar)`` pair, or a distribution with a ``mean`` (``torch.distributions.Normal``);
with it every latent's traversal is read back by the encoder (:mod:`lexflow.stages.readback`).
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
        self.has_encoder = callable(getattr(module, "encode", None))

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

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Posterior means float32 [N, latent_dim] of images [N, C, H, W] in decode's range."""
        if not self.has_encoder:
            raise ModelContractError(f"The PyTorch model ({type(self.module).__name__}) has no "
                                     "encode(x) method.")
        return posterior_means(self.module, images, device=self.device, dtype=self.dtype,
                               latent_dim=self.latent_dim,
                               hint="Fix encode, or run with --readback off (the readback "
                                    "parameter) to skip the encoder's read-back.")


def posterior_means(module: Any, images: Any, *, device: str = "cpu", dtype: Any = None,
                    latent_dim: int | None = None, batch_size: int = 256,
                    hint: str = "Fix encode.") -> np.ndarray:
    """``module.encode(x)`` over ``images`` [N, C, H, W] in batches: the posterior means as float32
    [N, d] (``encode`` returns the mean, a ``(mean, logvar)`` pair or a distribution with a
    ``mean``, like ``torch.distributions.Normal``). ModelContractError when
    it returns anything else, or (given ``latent_dim``) not one mean per latent."""
    import torch

    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size].to(device, dtype or torch.float32)
            try:
                mean = module.encode(chunk)
            except Exception as exc:  # user model code can raise anything
                raise ModelContractError(f"encode(x) of {type(module).__name__} raised "
                                         f"{type(exc).__name__}: {exc}. {hint}") from exc
            if isinstance(mean, (tuple, list)) and mean:
                mean = mean[0]
            elif isinstance(getattr(mean, "mean", None), torch.Tensor):  # a distribution
                mean = mean.mean
            if not isinstance(mean, torch.Tensor) or mean.ndim != 2 or mean.shape[0] != len(chunk) \
                    or (latent_dim is not None and mean.shape[1] != latent_dim):
                got = tuple(mean.shape) if isinstance(mean, torch.Tensor) else type(mean).__name__
                raise ModelContractError(
                    f"encode(x) of {type(module).__name__} must return the posterior mean "
                    f"[N, {latent_dim or 'latent_dim'}] (or a (mean, logvar) pair) for {len(chunk)} "
                    f"images; it returned {got}. {hint}")
            out.append(mean.detach().to("cpu", torch.float32).numpy())
    return np.concatenate(out) if out else np.zeros((0, latent_dim or 0), np.float32)
