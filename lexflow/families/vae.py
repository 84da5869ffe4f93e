"""A beta-TCVAE whose decoder paints several coloured layers (for scenes such as shapes3d).

:class:`lexflow.demo.vae.BetaTCVAE` paints one colour through one mask onto black, which is how
dSprites-like images and the coloured digits are made. A 3DShapes-like scene has three coloured
regions (wall, floor, object), so :class:`LayeredVAE` paints ``layers`` colours through a softmax
over ``layers`` masks: the same "mask times colour" idea, generalised. The encoder, the loss
(lexflow.demo.vae.beta_tcvae_loss) and the decoder contract are unchanged.

Each layer's colour has its own head: a ``colour_code``-dimensional linear read-out of z, then that
layer's own small MLP. A latent reaches a layer's colour only through that layer's read-out, a
single linear map, so how far a traversal of it repaints the wall is bounded by its weight in the
wall's read-out, even at the ends of a traversal (three prior standard deviations out, where the
data hardly go). One MLP over all of z for every layer's colour, as before, let a traversal of the
object's hue repaint the wall and the floor there. What it does not stop: a latent the encoder
hardly uses (its posterior a narrow band about 0) can keep a small weight in a read-out, and at
three prior standard deviations that still shifts the wall's colour (docs/quality.md, caveats).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lexflow.demo.vae import BetaTCVAE


class LayeredVAE(BetaTCVAE):
    """BetaTCVAE with ``layers`` soft masks (softmax over layers), each filled with its own colour
    (per layer: a ``colour_code``-dim linear read-out of z, then the layer's own MLP)."""

    def __init__(self, latent_dim: int = 10, layers: int = 3, channels: tuple[int, int, int] = (16, 32, 64),
                 hidden: int = 128, colour_hidden: int = 32, colour_code: int = 3) -> None:
        super().__init__(latent_dim=latent_dim, channels=channels, hidden=hidden,
                         colour_hidden=colour_hidden)
        self.layers = int(layers)
        self.colour_code = int(colour_code)
        c1, n, k, h = self.channels[0], self.layers, self.colour_code, self.colour_hidden
        self.decoder[-1] = nn.ConvTranspose2d(c1, n, 4, 2, 1)
        last = self.decoder[-1]
        assert isinstance(last, nn.ConvTranspose2d)  # for mypy; built just above
        nn.init.kaiming_normal_(last.weight, nonlinearity="relu")
        if last.bias is not None:
            nn.init.zeros_(last.bias)
        del self.colour  # the parent's one colour for the whole image: replaced by the read-outs
        self.readout = nn.Linear(self.latent_dim, n * k)  # the layers' read-outs, side by side
        self.colour_w1 = nn.Parameter(torch.randn(n, k, h) * math.sqrt(2.0 / k))
        self.colour_b1 = nn.Parameter(torch.zeros(n, h))
        self.colour_w2 = nn.Parameter(torch.randn(n, h, 3) * math.sqrt(2.0 / h))
        self.colour_b2 = nn.Parameter(torch.zeros(n, 3))

    def config(self) -> dict[str, object]:
        return {**super().config(), "layers": self.layers, "colour_code": self.colour_code}

    def layer_colours(self, z: Tensor) -> Tensor:
        """[N, layers, 3] in [0, 1]: each layer's colour from its own read-out of z."""
        code = self.readout(z).view(-1, self.layers, self.colour_code)
        hidden = torch.relu(torch.einsum("nlk,lkh->nlh", code, self.colour_w1) + self.colour_b1)
        return torch.sigmoid(torch.einsum("nlh,lhc->nlc", hidden, self.colour_w2) + self.colour_b2)

    def decode(self, z: Tensor) -> Tensor:
        """Images [N, 3, 32, 32] in [0, 1]: sum over layers of softmax weight x layer colour."""
        weights = torch.softmax(self.decoder(z), dim=1)  # [N, L, 32, 32]
        return torch.einsum("nlhw,nlc->nchw", weights, self.layer_colours(z)).clamp(1e-6, 1 - 1e-6)


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
