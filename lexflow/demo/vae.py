"""A small convolutional beta-TCVAE for 3x32x32 images (torch only, picklable).

The module is logged to MLflow by pickling, so this file must import nothing but torch
and ``math``: the unpickling side only has ``lexflow/demo`` on its path.

Contract relied on by the rest of lexflow:

* ``latent_dim``: int attribute, the number of latents;
* ``encode(x) -> (mean, logvar)`` of the diagonal Gaussian posterior q(z|x);
* ``decode(z) -> images`` in ``[0, 1]`` (sigmoid of :meth:`BetaTCVAE.decode_logits`);
* ``forward(x) -> (recon, mean, logvar, z)`` with ``z`` a reparameterised posterior sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

_LOG_2PI = math.log(2.0 * math.pi)


def _block(layer: nn.Conv2d | nn.ConvTranspose2d, norm: bool) -> list[nn.Module]:
    """A hidden conv layer followed by (optional) batch norm and ReLU."""
    return [layer, nn.BatchNorm2d(layer.out_channels), nn.ReLU()] if norm else [layer, nn.ReLU()]


class BetaTCVAE(nn.Module):
    """Conv encoder, "mask times colour" decoder, diagonal Gaussian latent.

    The decoder paints one colour through one soft mask: a transposed-conv net maps ``z``
    to a 1-channel mask, a small MLP maps ``z`` to an RGB colour, and the image is their
    product (black where the mask is 0).  That matches how the shapes data is made, and
    it matters in practice: a plain 3-channel conv decoder has to learn the multiplicative
    colour-times-shape interaction itself, and in a CPU-minute of training it does not,
    so hue ends up not encoded at all.  The encoder is a generic conv net.

    Args:
        latent_dim: number of latent variables.
        channels: conv channels at resolutions 16, 8 and 4 (encoder; mirrored in the decoder).
        hidden: width of the fully connected layer between the 4x4 feature map and z.
        colour_hidden: width of the colour MLP's hidden layer.
        norm: batch-normalise the hidden conv layers; it speeds up training a lot, which
            counts when the whole run has to fit in a CPU minute and a half.
    """

    def __init__(
        self,
        latent_dim: int = 8,
        channels: tuple[int, int, int] = (16, 32, 64),
        hidden: int = 128,
        colour_hidden: int = 32,
        norm: bool = True,
    ) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.channels = tuple(int(c) for c in channels)
        self.hidden = int(hidden)
        self.colour_hidden = int(colour_hidden)
        self.norm = bool(norm)
        c1, c2, c3 = self.channels
        self.encoder = nn.Sequential(
            *_block(nn.Conv2d(3, c1, 4, 2, 1), norm),  # 16x16
            *_block(nn.Conv2d(c1, c2, 4, 2, 1), norm),  # 8x8
            *_block(nn.Conv2d(c2, c3, 4, 2, 1), norm),  # 4x4
            nn.Flatten(),
            nn.Linear(c3 * 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * self.latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(self.latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, c3 * 16),
            nn.ReLU(),
            nn.Unflatten(1, (c3, 4, 4)),
            *_block(nn.ConvTranspose2d(c3, c2, 4, 2, 1), norm),  # 8x8
            *_block(nn.ConvTranspose2d(c2, c1, 4, 2, 1), norm),  # 16x16
            nn.ConvTranspose2d(c1, 1, 4, 2, 1),  # 32x32 mask logits
        )
        self.colour = nn.Sequential(
            nn.Linear(self.latent_dim, colour_hidden), nn.ReLU(), nn.Linear(colour_hidden, 3)
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """He init keeps activations from shrinking layer by layer (torch's default init
        loses ~3x variance per layer, so on sparse images the encoder starts out nearly
        constant and the posterior collapses before it learns anything).  The output bias
        starts at the logit of a dark background so the first steps are not spent on it."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        out = self.decoder[-1]
        if isinstance(out, nn.ConvTranspose2d) and out.bias is not None:
            nn.init.constant_(out.bias, -3.0)

    def config(self) -> dict[str, object]:
        """Constructor arguments, so a state dict can be matched to the model that made it."""
        return {
            "latent_dim": self.latent_dim,
            "channels": list(self.channels),
            "hidden": self.hidden,
            "colour_hidden": self.colour_hidden,
            "norm": self.norm,
        }

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior ``q(z|x)`` parameters: ``(mean, logvar)``, each ``[N, latent_dim]``."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar

    def decode(self, z: Tensor) -> Tensor:
        """Decoded images ``[N, 3, 32, 32]`` in ``[0, 1]`` (the Bernoulli means)."""
        mask = torch.sigmoid(self.decoder(z))  # [N, 1, 32, 32]
        # Chromaticity: brightest channel fixed at 1, so brightness lives only in the mask and
        # the mask/colour split is unique (else a latent can trade one against the other).
        rgb = torch.sigmoid(self.colour(z))
        rgb = rgb / rgb.amax(dim=1, keepdim=True)
        return mask * rgb[:, :, None, None]

    @staticmethod
    def reparameterize(mean: Tensor, logvar: Tensor) -> Tensor:
        """Sample ``z = mean + std * eps`` so gradients flow through the posterior parameters."""
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(recon, mean, logvar, z)``: reconstruction in ``[0, 1]`` of a posterior sample."""
        mean, logvar = self.encode(x)
        z = self.reparameterize(mean, logvar)
        return self.decode(z), mean, logvar, z


def gaussian_log_density(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise ``log N(z; mean, exp(logvar))`` (broadcasting)."""
    return -0.5 * (_LOG_2PI + logvar + (z - mean) ** 2 * torch.exp(-logvar))


def _log_importance_weights(batch: int, dataset_size: int, device: torch.device) -> Tensor:
    """Log weights of minibatch-stratified sampling (Chen et al. 2018, appendix C.2).

    Entry ``[i, j]`` weights ``q(z_i | x_j)`` when estimating ``q(z_i)``: sample ``i``'s
    own data point has weight ``1/N``, one neighbour carries the stratum of the data set not
    covered by the minibatch, ``(N - M) / (N M)``, and the rest ``1/M`` (``M = batch - 1``).
    """
    n, m = float(dataset_size), float(batch - 1)
    w = torch.full((batch, batch), 1.0 / m, device=device)
    w.view(-1)[:: batch + 1] = 1.0 / n
    w.view(-1)[1 :: batch + 1] = (n - m) / (n * m)
    w[batch - 1, 0] = (n - m) / (n * m)
    return w.log()


@dataclass
class LossTerms:
    """Per-example averages of the objective's terms (nats), for logging."""

    loss: Tensor
    recon: Tensor
    mutual_info: Tensor
    total_correlation: Tensor
    dimwise_kl: Tensor


def beta_tcvae_loss(
    x: Tensor,
    recon: Tensor,
    mean: Tensor,
    logvar: Tensor,
    z: Tensor,
    *,
    dataset_size: int,
    beta: float = 6.0,
    alpha: float = 1.0,
    gamma: float = 1.0,
    stratified: bool = True,
) -> LossTerms:
    """Negative beta-TCVAE ELBO (Chen et al. 2018, "Isolating Sources of Disentanglement").

    The KL term of the ELBO, averaged over data, splits into three parts::

        E_x KL(q(z|x) || p(z)) =  I_q(x; z)                       (index-code MI, alpha)
                                + KL(q(z) || prod_j q(z_j))       (total correlation, beta)
                                + sum_j KL(q(z_j) || p(z_j))      (dimension-wise KL, gamma)

    Only the total correlation (TC) is penalised harder (``beta > 1``): that pushes the
    aggregate posterior to factorise, i.e. towards one independent latent per factor,
    without the blurrier reconstructions that a larger weight on the MI term causes.

    ``q(z)`` and ``q(z_j)`` are intractable; they are estimated on the minibatch, using
    each sample ``z_i`` against every posterior ``q(.|x_j)`` in the batch, with either
    minibatch-weighted sampling (``stratified=False``, weights ``1/(N M)``) or the
    lower-variance minibatch-stratified sampling (default).

    Reconstruction is Bernoulli (binary cross-entropy of the decoded means ``recon`` in
    ``[0, 1]``, summed over pixels), fine for images in ``[0, 1]``.  All terms are summed
    over latents and pixels, and averaged over the batch.
    """
    batch = x.shape[0]
    nll = F.binary_cross_entropy(recon, x, reduction="sum") / batch

    log_qz_given_x = gaussian_log_density(z, mean, logvar).sum(1)  # [B]
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)  # [B]
    # mat[i, j, d] = log q(z_i[d] | x_j)
    mat = gaussian_log_density(z[:, None, :], mean[None, :, :], logvar[None, :, :])
    if stratified and batch > 2:
        log_w = _log_importance_weights(batch, dataset_size, z.device)
        log_qz = torch.logsumexp(log_w + mat.sum(2), dim=1)
        log_prod_qzj = torch.logsumexp(log_w[:, :, None] + mat, dim=1).sum(1)
    else:
        log_nm = math.log(batch * dataset_size)
        log_qz = torch.logsumexp(mat.sum(2), dim=1) - log_nm
        log_prod_qzj = (torch.logsumexp(mat, dim=1) - log_nm).sum(1)

    mutual_info = (log_qz_given_x - log_qz).mean()
    total_correlation = (log_qz - log_prod_qzj).mean()
    dimwise_kl = (log_prod_qzj - log_pz).mean()
    loss = nll + alpha * mutual_info + beta * total_correlation + gamma * dimwise_kl
    return LossTerms(loss, nll, mutual_info, total_correlation, dimwise_kl)
