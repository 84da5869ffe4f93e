"""Train a family's VAE, cache it, and find which factor each latent tracks.

The training loop is lexflow.demo.train's (Adam, cosine decay, beta-TCVAE loss with
minibatch-stratified sampling, 2 CPU threads, deterministic in the seed), taking any family's
generator and either model. :func:`factor_map` generalises lexflow.demo.train.factor_map to any
family's factors and their kinds.

Checkpoints: ``lexflow/families/checkpoints/<family>.pt`` when shipped (trained with the family's
default settings), else ``~/.cache/lexflow/families/<family>-<hash of the settings>.pt``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from lexflow.families.base import Family, TrainSettings

SHIPPED = Path(__file__).with_name("checkpoints")
CACHE = Path.home() / ".cache" / "lexflow" / "families"
DATA_SEED_OFFSET = 0
"""Training images come from ``generate(n, seed=seed)``; evaluation uses other seeds."""


def build_model(settings: TrainSettings) -> Any:
    """An untrained model of the settings' kind."""
    from lexflow.demo.vae import BetaTCVAE
    from lexflow.families.vae import LayeredVAE

    if settings.model == "mask":
        return BetaTCVAE(latent_dim=settings.latent_dim)
    if settings.model == "layered":
        return LayeredVAE(latent_dim=settings.latent_dim, layers=settings.layers)
    raise ValueError(f"unknown model kind {settings.model!r}; use 'mask' or 'layered'")


def train(family: Family, settings: TrainSettings, *, seed: int = 0, progress: bool = True) -> Any:
    """Train the family's VAE (lexflow.demo.train's loop); deterministic in ``seed`` on CPU."""
    import torch
    from tqdm import tqdm

    from lexflow.demo.vae import beta_tcvae_loss

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    n, bs = settings.n, settings.batch_size
    data = torch.from_numpy(family.generate(n, seed=seed + DATA_SEED_OFFSET).images)
    model = build_model(settings)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    steps = max(1, n // bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.epochs * steps)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=settings.epochs * steps, disable=not progress, file=sys.stderr,
               desc=f"train {family.name}")
    model.train()
    for _ in range(settings.epochs):
        perm = torch.randperm(n, generator=gen)
        for step in range(steps):
            x = data[perm[step * bs : (step + 1) * bs]]
            mean, logvar = model.encode(x)
            z = model.reparameterize(mean, logvar)
            terms = beta_tcvae_loss(x, model.decode(z), mean, logvar, z, dataset_size=n,
                                    beta=settings.beta)
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(rec=f"{terms.recon.item():.0f}", tc=f"{terms.total_correlation.item():.2f}",
                            refresh=False)
    bar.close()
    return model.eval()


def _config(family: Family, settings: TrainSettings, seed: int) -> dict[str, Any]:
    return {"family": family.name, "seed": seed, **asdict(settings)}


def checkpoint_paths(family: Family, settings: TrainSettings, seed: int,
                     cache_dir: Path | None = None) -> list[Path]:
    """Where a checkpoint of these settings may be: shipped first, then the cache."""
    key = hashlib.sha256(json.dumps(_config(family, settings, seed), sort_keys=True).encode())
    return [SHIPPED / f"{family.name}.pt",
            (cache_dir or CACHE) / f"{family.name}-{key.hexdigest()[:12]}.pt"]


def load_or_train(family: Family, settings: TrainSettings | None = None, *, seed: int = 0,
                  progress: bool = True, cache_dir: Path | None = None, force: bool = False,
                  save: bool = True) -> tuple[Any, str]:
    """(model, where it came from): a matching checkpoint, else a fresh training run (cached)."""
    import torch

    settings = settings or family.train
    config = _config(family, settings, seed)
    paths = checkpoint_paths(family, settings, seed, cache_dir)
    if not force:
        for path in paths:
            if path.exists():
                saved = torch.load(path, map_location="cpu", weights_only=True)
                if saved.get("config") == config:
                    model = build_model(settings)
                    model.load_state_dict(saved["state_dict"])
                    return model.eval(), str(path)
    model = train(family, settings, seed=seed, progress=progress)
    if save:
        paths[1].parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": config, "state_dict": model.state_dict()}, paths[1])
        return model, f"trained, saved to {paths[1]}"
    return model, "trained (not saved)"


def with_overrides(settings: TrainSettings, **overrides: Any) -> TrainSettings:
    """``settings`` with the given (non-None) fields replaced."""
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


# --- which factor each latent tracks ---------------------------------------------------------------


def _rank(a: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _rank(a), _rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def correlation_ratio(categories: np.ndarray, values: np.ndarray) -> float:
    """Eta: sqrt(between-group variance / total variance), in [0, 1]."""
    total = ((values - values.mean()) ** 2).sum()
    if total <= 0:
        return 0.0
    between = sum((categories == c).sum() * (values[categories == c].mean() - values.mean()) ** 2
                  for c in np.unique(categories))
    return float(np.sqrt(between / total))


def factor_scores(latent: np.ndarray, factors: dict[str, np.ndarray], family: Family) -> dict[str, float]:
    """How strongly one latent's posterior means follow each factor, each in [0, 1] (see Factor)."""
    scores = {}
    for fac in family.factors:
        f = np.asarray(factors[fac.name], dtype=np.float64)
        if fac.kind == "categorical":
            scores[fac.name] = correlation_ratio(f, latent)
        elif fac.kind == "periodic":
            angle = 2.0 * np.pi * f
            scores[fac.name] = max(abs(spearman(latent, g)) for g in (f, np.cos(angle), np.sin(angle)))
        else:
            scores[fac.name] = abs(spearman(latent, f))
    return scores


def encode_means(model: Any, images: np.ndarray, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means [N, d] and the mean KL to the prior per latent [d] (nats)."""
    import torch

    model.eval()
    means, kls = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            m, lv = model.encode(torch.from_numpy(images[i : i + batch_size]))
            means.append(m)
            kls.append(0.5 * (m**2 + lv.exp() - 1.0 - lv))
    return torch.cat(means).numpy().astype(np.float64), torch.cat(kls).mean(0).numpy()


def factor_map(model: Any, family: Family, batch: Any) -> dict[int, dict[str, Any]]:
    """Per latent: activity (variance of the posterior mean), active, best factor and all scores.

    The same record as lexflow.demo.train.factor_map, for any family.
    """
    from lexflow.demo.train import ACTIVE_THRESHOLD

    mean, kl = encode_means(model, batch.images)
    out: dict[int, dict[str, Any]] = {}
    for j in range(mean.shape[1]):
        scores = factor_scores(mean[:, j], batch.factors, family)
        best = max(scores, key=scores.__getitem__)
        activity = float(mean[:, j].var())
        out[j] = {"activity": activity, "kl": float(kl[j]), "active": activity > ACTIVE_THRESHOLD,
                  "factor": best, "score": scores[best], "scores": scores}
    return out
