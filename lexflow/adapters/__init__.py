"""Adapters: one file per MLflow model flavor, each turning a loaded model into a `Decoder`.

A decoder maps latent codes ``float32 [N, latent_dim]`` to images ``float32 [N, C, H, W]`` in the
model's own pixel range; the decode stage checks and normalises what comes back. Adapters are found
through the ``lexflow.adapters`` entry-point group (keyed by flavor name), so the built-ins are
registered the same way a third-party flavor would be.
"""

from lexflow.adapters.base import Decoder, ModelInfo, load_decoder

__all__ = ["Decoder", "ModelInfo", "load_decoder"]
