"""Train a family's VAE, cache it, and find which factor each latent tracks.

The training loop is lexflow.demo.train's (Adam, cosine decay, beta-TCVAE loss with
minibatch-stratified sampling, 2 CPU threads, deterministic in the seed), taking any family's
generator and either model. :func:`factor_map` generalises lexflow.demo.train.factor_map to any
family's factors and their kinds.

Checkpoints: ``lexflow/families/checkpoints/<family>.pt`` when shipped (seed 0, the family's
default settings; package data, so an installed wheel never trains), else
``~/.cache/lexflow/families/<family>-<hash of settings, seed and code version>.pt``.

Every checkpoint records the settings, the seed and the *code version* it was trained with: a hash
of the model and training-loop source (:func:`code_version`). A shipped checkpoint whose record
does not match the code as it is raises one :class:`~lexflow.errors.CheckpointError` naming the
command that retrains it, instead of a ``load_state_dict`` traceback (the failure mode of the
batch-norm change, which left every shipped checkpoint unloadable while the suite stayed green).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from lexflow.demo.scores import correlation_ratio, spearman
from lexflow.errors import CheckpointError, ConfigError
from lexflow.families.base import SUPERVISION, Family, TrainSettings

SHIPPED = Path(__file__).with_name("checkpoints")
CACHE = Path.home() / ".cache" / "lexflow" / "families"
DATA_SEED_OFFSET = 0
"""Training images come from ``generate(n, seed=seed)``; evaluation uses other seeds."""
SHIPPED_SEED = 0
"""The shipped checkpoints are seed 0 of each family's default settings."""
FORMAT = "lexflow.family-checkpoint/1"
_MODEL_SOURCES = {
    "mask": ("lexflow/demo/vae.py",),
    "layered": ("lexflow/demo/vae.py", "lexflow/families/vae.py"),
}
"""Per model kind, the files whose text decides its weights' layout (a change there may break
``load_state_dict``): an edit to the layered model leaves the mask model's checkpoints valid."""


@cache
def code_version(model: str) -> str:
    """12 hex digits: a hash of model kind ``model``'s source files and the training loop's source.

    What makes a checkpoint stale is a change to its model class or to how it is trained, not a
    release: the lexflow version is recorded next to it but is not part of the key, so a version
    bump does not force retraining, while any edit to the model's code does.
    """
    import inspect

    from lexflow.demo import vae as demo_vae
    from lexflow.families.vae import share_unchanged

    if model not in _MODEL_SOURCES:
        raise _unknown_model(model)
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for rel in _MODEL_SOURCES[model]:
        h.update(rel.encode())
        h.update((root / rel).read_bytes().replace(b"\r\n", b"\n"))
    for fn in (train, demo_vae.beta_tcvae_loss, share_unchanged):
        h.update(inspect.getsource(fn).encode())
    return h.hexdigest()[:12]


def retrain_command(family: str) -> str:
    """The shell command that rebuilds a family's shipped checkpoint."""
    return f"python -m lexflow.families train --family {family} --ship"


def build_model(settings: TrainSettings) -> Any:
    """An untrained model of the settings' kind."""
    from lexflow.demo.vae import BetaTCVAE
    from lexflow.families.vae import LayeredVAE

    if settings.model == "mask":
        return BetaTCVAE(latent_dim=settings.latent_dim)
    if settings.model == "layered":
        return LayeredVAE(latent_dim=settings.latent_dim, layers=settings.layers)
    raise _unknown_model(settings.model)


def _unknown_model(model: str) -> ValueError:
    """The error for a model kind that is not one of _MODEL_SOURCES (the kinds build_model makes)."""
    return ValueError(f"unknown model kind {model!r}; use one of {', '.join(_MODEL_SOURCES)}")


def train(family: Family, settings: TrainSettings, *, seed: int = 0, progress: bool = True) -> Any:
    """Train the family's VAE (lexflow.demo.train's loop); deterministic in ``seed`` on CPU.

    ``supervision="pairs"``: each step takes ``batch_size / 2`` of ``n`` pairs that differ in one
    factor (:meth:`Family.pairs`), shares the posteriors of the latents the pair did not move
    (:func:`lexflow.families.vae.share_unchanged`) and applies the beta-TCVAE loss to both images.
    ``"none"``: ``batch_size`` of ``n`` independent images and the plain beta-TCVAE loss.
    """
    import torch
    from tqdm import tqdm

    from lexflow.demo.vae import beta_tcvae_loss
    from lexflow.families.vae import share_unchanged

    if settings.supervision not in SUPERVISION:
        raise ConfigError(f"Unknown supervision {settings.supervision!r}; use one of "
                          f"{', '.join(SUPERVISION)}.")
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    paired = settings.supervision == "pairs"
    n = settings.n
    if paired:
        first, second = family.pairs(n, seed=seed + DATA_SEED_OFFSET)
        data = torch.from_numpy(first)
        partner = torch.from_numpy(second)
        bs = max(1, settings.batch_size // 2)
    else:
        data = torch.from_numpy(family.generate(n, seed=seed + DATA_SEED_OFFSET).images)
        bs = settings.batch_size
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
            rows = perm[step * bs : (step + 1) * bs]
            x = torch.cat([data[rows], partner[rows]]) if paired else data[rows]
            mean, logvar = model.encode(x)
            if paired:
                mean, logvar = share_unchanged(mean, logvar)
            z = model.reparameterize(mean, logvar)
            terms = beta_tcvae_loss(x, model.decode(z), mean, logvar, z,
                                    dataset_size=2 * n if paired else n, beta=settings.beta)
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


def is_shipped(family: Family, settings: TrainSettings, seed: int) -> bool:
    """Whether these are the settings and seed of the family's shipped checkpoint."""
    return seed == SHIPPED_SEED and settings == family.train


def cache_path(family: Family, settings: TrainSettings, seed: int,
               cache_dir: Path | None = None) -> Path:
    """The cache file of these settings, seed and the current code version."""
    key = {**_config(family, settings, seed), "code_version": code_version(settings.model)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return (cache_dir or CACHE) / f"{family.name}-{digest}.pt"


def checkpoint_paths(family: Family, settings: TrainSettings, seed: int,
                     cache_dir: Path | None = None) -> list[Path]:
    """Where a checkpoint of these settings may be: shipped (seed 0, defaults) first, then the cache."""
    shipped = [SHIPPED / f"{family.name}.pt"] if is_shipped(family, settings, seed) else []
    return [*shipped, cache_path(family, settings, seed, cache_dir)]


@dataclass(frozen=True)
class Checkpoint:
    """What a family checkpoint file holds besides the weights.

    Attributes:
        config: family, seed and every TrainSettings field.
        code_version: :func:`code_version` when it was trained.
        lexflow_version: the lexflow release that trained it (information only).
        train_seconds: wall time of the training run (s), or None when unknown.
    """

    config: dict[str, Any]
    code_version: str
    lexflow_version: str
    train_seconds: float | None


def save_checkpoint(model: Any, path: Path, family: Family, settings: TrainSettings, seed: int,
                    train_seconds: float | None) -> Checkpoint:
    """Write ``{"format", "config", "code_version", "lexflow_version", "train_seconds", "state_dict"}``."""
    import torch

    from lexflow._version import __version__

    meta = Checkpoint(_config(family, settings, seed), code_version(settings.model), __version__,
                      train_seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, **asdict(meta), "state_dict": model.state_dict()}, path)
    return meta


def read_checkpoint(path: Path, family: Family, settings: TrainSettings, seed: int) -> tuple[Any, Checkpoint]:
    """(model, record) of the checkpoint at ``path``, checked against these settings and the code.

    Raises CheckpointError (naming the command that retrains it) when the file was trained with
    other settings or another code version, or does not load into the model as it is.
    """
    import torch

    config = _config(family, settings, seed)
    fix = (f"Retrain it with: {retrain_command(family.name)}" if is_shipped(family, settings, seed)
           else f"Delete it and run: python -m lexflow.families train --family {family.name} "
                f"--seed {seed} (with the same settings)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: torch raises many kinds
        raise CheckpointError(f"Checkpoint {path} could not be read ({type(exc).__name__}: {exc}). "
                              f"{fix}") from exc
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise CheckpointError(f"Checkpoint {path} has no code-version record (it predates "
                              f"{FORMAT}). {fix}")
    if saved.get("config") != config:
        raise CheckpointError(f"Checkpoint {path} was trained with {saved.get('config')}, not "
                              f"{config}. {fix}")
    now = code_version(settings.model)
    if saved.get("code_version") != now:
        raise CheckpointError(
            f"Checkpoint {path} was trained by model code {saved.get('code_version')} (lexflow "
            f"{saved.get('lexflow_version')}); the code is now {now}. {fix}")
    model = build_model(settings)
    try:
        model.load_state_dict(saved["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"Checkpoint {path} does not load into the model code "
                              f"({str(exc).splitlines()[0]}). {fix}") from exc
    meta = Checkpoint(config, str(saved["code_version"]), str(saved.get("lexflow_version")),
                      saved.get("train_seconds"))
    return model.eval(), meta


def display_path(path: Path) -> str:
    """``path`` for messages: relative to the directory holding the lexflow package (the
    repository in a checkout), else under ``~``, else as it is."""
    home, root = Path.home(), Path(__file__).resolve().parents[2]
    if path.is_relative_to(root):
        return str(path.relative_to(root))
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def load_or_train(family: Family, settings: TrainSettings | None = None, *, seed: int = 0,
                  progress: bool = True, cache_dir: Path | None = None, force: bool = False,
                  save: bool = True, allow_train: bool = True,
                  train_flag: str | None = None) -> tuple[Any, str]:
    """(model, where it came from): a matching checkpoint, else a fresh training run (cached).

    ``where``: the checkpoint and how long its training took ("<path> (training time: 220 s)"),
    or "<path> (trained now in 220 s)", or "trained now in 220 s (not saved)" with ``save=False``.

    The shipped checkpoint is never silently replaced by a training run: when it exists for these
    settings but is stale, CheckpointError says how to retrain it. With ``allow_train=False`` a
    missing checkpoint is a ConfigError listing the seeds that have one (the suite's "seed not
    available"); ``train_flag`` names the caller's option that would train it (``--train``).
    """
    import time

    settings = settings or family.train
    paths = checkpoint_paths(family, settings, seed, cache_dir)
    if not force:
        for path in paths:
            if path.exists():
                model, meta = read_checkpoint(path, family, settings, seed)
                spent = f"{meta.train_seconds:.0f} s" if meta.train_seconds is not None else "not recorded"
                return model, f"{display_path(path)} (training time: {spent})"
    if not allow_train:
        command = f"python -m lexflow.families train --family {family.name} --seed {seed}"
        how = (f"Pass {train_flag} to train and cache it, or run: {command}" if train_flag
               else f"Train it with: {command}")
        raise ConfigError(
            f"No checkpoint of {family.name} seed {seed} for these settings and the current code. "
            f"Available seeds: {', '.join(map(str, available_seeds(family, cache_dir))) or 'none'}. "
            f"{how}")
    start = time.perf_counter()
    model = train(family, settings, seed=seed, progress=progress)
    took = time.perf_counter() - start
    if save:
        save_checkpoint(model, paths[-1], family, settings, seed, took)
        return model, f"{display_path(paths[-1])} (trained now in {took:.0f} s)"
    return model, f"trained now in {took:.0f} s (not saved)"


def available_seeds(family: Family, cache_dir: Path | None = None,
                    settings: TrainSettings | None = None) -> list[int]:
    """Seeds with a checkpoint for ``settings`` (default: the family's) and the current code."""
    settings = settings or family.train
    found = []
    for seed in range(0, 100):
        if any(p.exists() for p in checkpoint_paths(family, settings, seed, cache_dir)):
            found.append(seed)
    return found


def with_overrides(settings: TrainSettings, **overrides: Any) -> TrainSettings:
    """``settings`` with the given (non-None) fields replaced."""
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


# --- which factor each latent tracks ---------------------------------------------------------------


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
