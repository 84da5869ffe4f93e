"""The thin interface between model flavors and the rest of lexflow."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lexflow.errors import ConfigError, ModelContractError
from lexflow.names import EP_ADAPTERS as ENTRY_POINT_GROUP

# Flavors tried in this order when a model carries several (a pytorch model also has pyfunc).
FLAVOR_PREFERENCE = ("pytorch", "onnx", "python_function")


@runtime_checkable
class Decoder(Protocol):
    """What every adapter provides.

    Attributes:
        flavor: the MLflow flavor it was loaded from.
        latent_dim: number of latent variables d.
        device: where decoding runs (``cpu``, ``cuda:0``, ``CUDAExecutionProvider`` ...).
    """

    flavor: str
    latent_dim: int
    device: str

    def decode(self, z: np.ndarray) -> np.ndarray:
        """float32 [N, latent_dim] (prior std units) -> float32 [N, C, H, W] in the model's range."""
        ...


@runtime_checkable
class PlannedDecoder(Protocol):
    """An optional capability: a decoder that makes its own traversal plan (a diffusion
    pipeline's h-space directions) instead of one latent at a time."""

    def traversal_plan(self, config: Any) -> Any:
        """A :class:`lexflow.stages.plan.Plan` for ``config`` (checks options; computes lazily)."""
        ...


@runtime_checkable
class EncodingDecoder(Protocol):
    """An optional capability: a model with an encoder (a VAE), so lexflow can check that the
    model itself reads back the value a traversal set (:mod:`lexflow.stages.readback`).

    Attributes:
        has_encoder: whether :meth:`encode` works for this model.
    """

    has_encoder: bool

    def encode(self, images: np.ndarray) -> np.ndarray:
        """float32 [N, C, H, W] in the model's range (what decode returns) -> float32
        [N, latent_dim] posterior means (prior std units)."""
        ...


@runtime_checkable
class RangedDecoder(Protocol):
    """An optional capability: a decoder that knows its pixel range (else it is detected)."""

    output_range: tuple[float, float] | None


@dataclass(frozen=True)
class ModelInfo:
    """What lexflow knows about the model besides its decoder.

    Attributes:
        flavors: flavor names present in the MLmodel file.
        metadata: the ``lexflow`` key of the MLmodel metadata (may be empty). Recognised keys:
            ``output_range`` ([0, 1] or [-1, 1]), ``latent_names`` (list of str), ``bias``,
            ``condition``, ``latent_dim`` (for pyfunc models without a signature).
    """

    flavors: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def output_range(self) -> tuple[float, float] | None:
        value = self.metadata.get("output_range")
        if value is None:
            return None
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ModelContractError(
                f"MLmodel metadata lexflow.output_range must be [low, high], got {value!r}."
            ) from None
        if (lo, hi) not in ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)):
            raise ModelContractError(
                f"MLmodel metadata lexflow.output_range must be [0, 1], [-1, 1] or [0, 255]; "
                f"got {value!r}."
            )
        return lo, hi

    def latent_names(self, latent_dim: int) -> tuple[str, ...] | None:
        names = self.metadata.get("latent_names")
        if names is None:
            return None
        if not isinstance(names, (list, tuple)) or len(names) != latent_dim:
            raise ModelContractError(
                f"MLmodel metadata lexflow.latent_names must list {latent_dim} names (one per "
                f"latent); got {names!r}."
            )
        return tuple(str(n) for n in names)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other values pass through."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _adapter_classes() -> dict[str, Any]:
    from lexflow.plugins import registry

    return registry(ENTRY_POINT_GROUP)


def load_decoder(local_dir: str, info: ModelInfo, *, device: str) -> Decoder:
    """Build the decoder for a model downloaded to ``local_dir``, choosing the flavor."""
    available = _adapter_classes()
    # A model whose lexflow metadata names an adapter (lexflow.log_diffusers writes
    # "diffusers_pipeline") is loaded by that adapter, and an mlflow.diffusers model by the
    # "diffusers" adapter, not as a plain pyfunc.
    chosen = info.metadata.get("adapter") or ("diffusers" if "diffusers" in info.flavors else None)
    if chosen:
        info = ModelInfo((str(chosen),), info.metadata)
    order = [f for f in FLAVOR_PREFERENCE if f in info.flavors]
    order += [f for f in info.flavors if f not in order and f in available]
    for flavor in order:
        if flavor in available:
            cls = available[flavor].load()
            decoder: Decoder = cls.from_local(local_dir, info, device=device)
            return decoder
    raise ModelContractError(
        f"lexflow cannot decode a model with flavors {list(info.flavors)}. Supported flavors: "
        f"{', '.join(sorted(available))}. Log a VAE with mlflow.pytorch (pickle serialization), "
        "a decoder with mlflow.onnx, or a pyfunc whose predict maps [N, d] to [N, C, H, W]."
    )


def check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={device!r} but torch sees no CUDA GPU here. Use device=auto or cpu."
            )


def flavor_conf(local_dir: str, flavor: str) -> dict[str, Any]:
    from mlflow.models import Model

    return dict(Model.load(os.path.join(local_dir, "MLmodel")).flavors.get(flavor, {}))
