"""BlobDecoder with one (grey) or four (RGBA) channels: the pictures for people must cope."""

from __future__ import annotations

import torch

from models.blob import BlobDecoder


class ChannelBlob(BlobDecoder):
    def __init__(self, channels: int, latent_dim: int = 4, size: int = 16) -> None:
        super().__init__(latent_dim=latent_dim, size=size)
        self.channels = channels

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        rgb = super().decode(z)
        if self.channels == 1:
            return rgb.mean(dim=1, keepdim=True)
        alpha = torch.ones_like(rgb[:, :1])
        return torch.cat([rgb, alpha], dim=1)
