"""VAEs with a label subspace (CSVAE-like): attribute directions from labelled data.

A CSVAE splits its latent into z (free) and w (the label subspace, the latents listed in
``subspace``). The direction of attribute y is ``mean(w | y = 1) - mean(w | y = 0)`` over a
labelled data set encoded by the model; a traversal adds a * direction to a base code
(a = 0 .. 4 in the paper) and is explained with the conditional bias, naming y. Groups of
latents that move together (``groups`` metadata) are explained with the combination bias.

Typical use, when registering the model::

    w = lexflow.csvae.encode(model, images)                  # [N, d] posterior means
    meta = lexflow.csvae.csvae_metadata(
        lexflow.csvae.attribute_directions(w, labels, subspace=[4, 5], names=["smiling"]),
        groups=[[4, 5]])
    mlflow.pytorch.log_model(model, ..., metadata={"lexflow": meta})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lexflow.errors import ConfigError, ModelContractError


def encode(model: Any, images: Any, batch_size: int = 256) -> np.ndarray:
    """Posterior means [N, d] from ``model.encode(x)`` (a mean, or a (mean, logvar) pair)."""
    from lexflow.adapters.pytorch_vae import posterior_means

    if not callable(getattr(model, "encode", None)):
        raise ModelContractError(
            f"{type(model).__name__} has no encode(x); attribute directions need the posterior "
            "means of labelled images. Pass codes you computed to attribute_directions instead."
        )
    return posterior_means(model, images, batch_size=batch_size)


def attribute_directions(
    codes: Any, labels: Any, subspace: Sequence[int], names: Sequence[str] | None = None,
) -> dict[str, list[float]]:
    """{label name: direction over all d latents}: mean(w | y=1) - mean(w | y=0) in ``subspace``,
    zero elsewhere. ``codes`` [N, d]; ``labels`` [N] or [N, A] of 0/1."""
    z = np.asarray(codes, dtype=np.float64)
    y = np.asarray(labels)
    if y.ndim == 1:
        y = y[:, None]
    if z.ndim != 2 or y.ndim != 2 or len(z) != len(y):
        raise ConfigError(
            f"codes must be [N, d] and labels [N] or [N, A] for the same N; got {z.shape} and "
            f"{np.asarray(labels).shape}."
        )
    sub = [int(i) for i in subspace]
    if not sub or any(not 0 <= i < z.shape[1] for i in sub):
        raise ConfigError(f"subspace must list latent indices in 0..{z.shape[1] - 1}; got {list(subspace)}.")
    names = list(names) if names is not None else [f"attribute_{a}" for a in range(y.shape[1])]
    if len(names) != y.shape[1]:
        raise ConfigError(f"names: {len(names)} given for {y.shape[1]} label columns.")
    if not np.isin(y, (0, 1)).all():
        raise ConfigError("labels must be 0 or 1.")
    out = {}
    for a, name in enumerate(names):
        pos, neg = y[:, a] == 1, y[:, a] == 0
        if not pos.any() or not neg.any():
            raise ConfigError(f"attribute {name!r}: labels need both y=1 and y=0 examples.")
        direction = np.zeros(z.shape[1])
        direction[sub] = z[pos][:, sub].mean(axis=0) - z[neg][:, sub].mean(axis=0)
        out[str(name)] = [float(v) for v in direction]
    return out


def csvae_metadata(attributes: dict[str, list[float]], *, groups: Sequence[Sequence[int]] | None = None,
                   group_names: Sequence[str] | None = None, attribute_span: float = 4.0
                   ) -> dict[str, Any]:
    """The ``lexflow`` MLmodel metadata of a CSVAE: conditional bias over the attributes; with
    ``groups``, ``lexflow explain --bias combination`` explains each group as one item."""
    meta: dict[str, Any] = {"bias": "conditional", "attributes": attributes,
                            "attribute_span": float(attribute_span)}
    if groups is not None:
        meta["groups"] = [[int(i) for i in g] for g in groups]
    if group_names is not None:
        meta["group_names"] = [str(n) for n in group_names]
    return meta
