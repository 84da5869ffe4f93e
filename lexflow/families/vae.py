"""A beta-TCVAE whose decoder paints several coloured layers (for scenes such as shapes3d).

:class:`lexflow.demo.vae.BetaTCVAE` paints one colour through one mask onto black, which is how
dSprites-like images and the coloured digits are made. A 3DShapes-like scene has three coloured
regions (wall, floor, object), so :class:`LayeredVAE` paints ``layers`` colours through a softmax
over ``layers`` masks: the same "mask times colour" idea, generalised. The encoder, the loss
(lexflow.demo.vae.beta_tcvae_loss) and the decoder contract are unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lexflow.demo.vae import BetaTCVAE


class LayeredVAE(BetaTCVAE):
    """BetaTCVAE with ``layers`` soft masks (softmax over layers) each filled with one colour."""

    def __init__(self, latent_dim: int = 10, layers: int = 3, channels: tuple[int, int, int] = (16, 32, 64),
                 hidden: int = 128, colour_hidden: int = 32) -> None:
        super().__init__(latent_dim=latent_dim, channels=channels, hidden=hidden,
                         colour_hidden=colour_hidden)
        self.layers = int(layers)
        c1 = self.channels[0]
        self.decoder[-1] = nn.ConvTranspose2d(c1, self.layers, 4, 2, 1)
        self.colour = nn.Sequential(nn.Linear(self.latent_dim, colour_hidden), nn.ReLU(),
                                    nn.Linear(colour_hidden, 3 * self.layers))
        for module in (self.decoder[-1], self.colour[0], self.colour[2]):
            assert isinstance(module, nn.ConvTranspose2d | nn.Linear)  # for mypy; built just above
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def config(self) -> dict[str, object]:
        return {**super().config(), "layers": self.layers}

    def decode(self, z: Tensor) -> Tensor:
        """Images [N, 3, 32, 32] in [0, 1]: sum over layers of softmax weight x layer colour."""
        weights = torch.softmax(self.decoder(z), dim=1)  # [N, L, 32, 32]
        rgb = torch.sigmoid(self.colour(z)).view(-1, self.layers, 3)  # [N, L, 3]
        return torch.einsum("nlhw,nlc->nchw", weights, rgb).clamp(1e-6, 1 - 1e-6)


def share_unchanged(mean: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
    """Ada-GVAE's posterior sharing (Locatello et al. 2020, "Weakly-Supervised Disentanglement
    Without Compromises") for a batch of pairs: rows ``[:B]`` and ``[B:]`` are the two images of
    each pair, which differ in one factor.

    Per pair and latent, the KL divergence between the two posteriors says how much the latent
    moved; latents below the midpoint of that pair's smallest and largest divergence are taken as
    unchanged, and both images get the average of the two posteriors there (mean of the means and
    of the variances). Returns the new (mean, logvar), same shapes.
    """
    m1, m2 = mean.chunk(2)
    l1, l2 = logvar.chunk(2)
    v1, v2 = l1.exp(), l2.exp()
    kl = 0.5 * (v1 / v2 + (m2 - m1) ** 2 / v2 - 1.0 + l2 - l1)
    cut = 0.5 * (kl.max(dim=1, keepdim=True).values + kl.min(dim=1, keepdim=True).values)
    shared = kl < cut
    avg_mean, avg_logvar = 0.5 * (m1 + m2), (0.5 * (v1 + v2)).log()
    return (torch.cat([torch.where(shared, avg_mean, m1), torch.where(shared, avg_mean, m2)]),
            torch.cat([torch.where(shared, avg_logvar, l1), torch.where(shared, avg_logvar, l2)]))
