"""Train the demo beta-TCVAE on procedural shapes, and check which factor each latent tracks.

``python -m lexflow.demo.train --out lexflow/demo/checkpoint.pt`` retrains and saves the
shipped checkpoint; ``--check`` prints :func:`factor_map` next to a latent-traversal
measurement so the two can be compared by eye.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lexflow.demo import shapes
from lexflow.demo.scores import correlation_ratio, spearman
from lexflow.demo.vae import BetaTCVAE, beta_tcvae_loss

CHECKPOINT = Path(__file__).with_name("checkpoint.pt")
"""Shipped weights: ``{"config": {...}, "state_dict": {...}}`` saved with ``torch.save``."""

DEFAULTS: dict[str, Any] = {
    "latent_dim": 8,
    "n": 40_000,
    "epochs": 8,
    "beta": 16.0,
    "batch_size": 256,
    "lr": 2e-3,
    "beta_warmup": 0.5,
    "seed": 0,
}
"""Training configuration of the shipped checkpoint (also the defaults of :func:`train`)."""

ACTIVE_THRESHOLD = 0.1
"""A latent whose posterior mean varies less than this across data (prior variance is 1)
counts as collapsed: it carries (almost) no information about the input."""


def _seed_everything(seed: int) -> None:
    """Make training reproducible on CPU: fixed seeds, 2 threads, deterministic kernels."""
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True, warn_only=True)


def train(
    *,
    latent_dim: int = DEFAULTS["latent_dim"],
    n: int = DEFAULTS["n"],
    epochs: int = DEFAULTS["epochs"],
    beta: float = DEFAULTS["beta"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    beta_warmup: float = DEFAULTS["beta_warmup"],
    seed: int = 0,
    progress: bool = True,
) -> BetaTCVAE:
    """Train a :class:`BetaTCVAE` on ``shapes.generate(n, seed=seed)``; deterministic in ``seed``.

    Adam with a cosine learning-rate decay: the decay lets a short (CPU-minute) run settle
    into a clean solution instead of jittering around it at the end.  The total-correlation
    weight ramps linearly from 1 to ``beta`` over the first ``beta_warmup`` of the run: with
    the full weight from the start, the slow-to-learn factors (scale, rotation) tend never
    to get a latent; once every factor is encoded, the TC penalty rotates them onto axes.
    """
    _seed_everything(seed)
    data = torch.from_numpy(shapes.generate(n, seed=seed).images)
    model = BetaTCVAE(latent_dim=latent_dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = n // batch_size
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=total, disable=not progress, file=sys.stderr, desc="train")
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for step in range(steps_per_epoch):
            x = data[perm[step * batch_size : (step + 1) * batch_size]]
            mean, logvar = model.encode(x)
            z = model.reparameterize(mean, logvar)
            ramp = min(1.0, (epoch * steps_per_epoch + step) / max(beta_warmup * total, 1.0))
            terms = beta_tcvae_loss(
                x, model.decode(z), mean, logvar, z, dataset_size=n, beta=1.0 + (beta - 1.0) * ramp
            )
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            opt.step()
            sched.step()
            bar.update()
            shown = ("recon", "mutual_info", "total_correlation", "dimwise_kl")
            bar.set_postfix({k[:3]: f"{getattr(terms, k).item():.2f}" for k in shown}, False)
    bar.close()
    model.eval()
    return model


def _config(latent_dim: int, n: int, epochs: int, beta: float, seed: int) -> dict[str, Any]:
    cfg = dict(DEFAULTS, latent_dim=latent_dim, n=n, epochs=epochs, beta=float(beta), seed=seed)
    cfg["model"] = BetaTCVAE(latent_dim=latent_dim).config()
    return cfg


def save(model: BetaTCVAE, path: Path, config: dict[str, Any]) -> None:
    """Save ``{"config", "state_dict"}``: plain tensors and builtins, loadable with weights_only."""
    torch.save({"config": config, "state_dict": model.state_dict()}, path)


def load_or_train(
    *,
    latent_dim: int = DEFAULTS["latent_dim"],
    n: int = DEFAULTS["n"],
    epochs: int = DEFAULTS["epochs"],
    beta: float = DEFAULTS["beta"],
    seed: int = 0,
    progress: bool = True,
    path: Path = CHECKPOINT,
) -> BetaTCVAE:
    """Load the shipped checkpoint if it was trained with this configuration, else train.

    Loading takes milliseconds while training takes about a minute and a half, so demos
    and tests should go through here rather than :func:`train`.
    """
    config = _config(latent_dim, n, epochs, beta, seed)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("config") == config:
            return _load_state(saved["state_dict"], latent_dim, path)
    if path == CHECKPOINT and config == _config(DEFAULTS["latent_dim"], DEFAULTS["n"], DEFAULTS["epochs"],
                                                DEFAULTS["beta"], DEFAULTS["seed"]):
        return load_shipped(path)  # the shipped model is never replaced by a silent training run
    return train(latent_dim=latent_dim, n=n, epochs=epochs, beta=beta, seed=seed, progress=progress)


RETRAIN = "python -m lexflow.demo.train --out lexflow/demo/checkpoint.pt"
"""The command that rebuilds the shipped demo checkpoint."""


def _load_state(state: dict[str, Any], latent_dim: int, path: Path) -> BetaTCVAE:
    """The model with ``state`` loaded, or one CheckpointError naming the retrain command."""
    from lexflow.errors import CheckpointError

    model = BetaTCVAE(latent_dim=latent_dim)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"Checkpoint {path} does not load into the model code as it is "
                              f"({str(exc).splitlines()[0]}). Retrain it with: {RETRAIN}") from exc
    return model.eval()


def load_shipped(path: Path = CHECKPOINT) -> BetaTCVAE:
    """The shipped demo model, never a training run: CheckpointError when it is missing or stale."""
    from lexflow.errors import CheckpointError

    config = _config(DEFAULTS["latent_dim"], DEFAULTS["n"], DEFAULTS["epochs"], DEFAULTS["beta"],
                     DEFAULTS["seed"])
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # missing, truncated or foreign file: torch raises many kinds
        raise CheckpointError(f"Could not read the demo checkpoint {path} ({exc}). "
                              f"Retrain it with: {RETRAIN}") from exc
    if saved.get("config") != config:
        raise CheckpointError(f"The demo checkpoint {path} was trained with {saved.get('config')}, "
                              f"not the defaults {config}. Retrain it with: {RETRAIN}")
    return _load_state(saved["state_dict"], DEFAULTS["latent_dim"], path)


@torch.no_grad()
def encode_posterior(
    model: BetaTCVAE, images: np.ndarray, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior ``(mean, logvar)``, each ``[N, latent_dim]``, of images ``[N, 3, 32, 32]``."""
    model.eval()
    parts = [
        model.encode(torch.from_numpy(images[i : i + batch_size])) for i in range(0, len(images), batch_size)
    ]
    means, logvars = zip(*parts, strict=True)
    return torch.cat(means).numpy(), torch.cat(logvars).numpy()


def factor_scores(latent: np.ndarray, factors: dict[str, np.ndarray]) -> dict[str, float]:
    """How strongly one latent's posterior means follow each factor, each score in [0, 1].

    ``scale``, ``x``, ``y`` and ``rotation`` (in [0, 90), not periodic): |Spearman|.
    ``colour`` is a periodic hue, so a latent may encode it as cos or sin of the angle,
    or as the raw hue with a cut somewhere: the max |Spearman| over the three.
    ``shape`` is categorical: the correlation ratio eta.
    """
    scores = {}
    for name in shapes.FACTORS:
        f = np.asarray(factors[name], dtype=np.float64)
        if name == "shape":
            scores[name] = correlation_ratio(f, latent)
        elif name == "colour":
            angle = 2.0 * np.pi * f
            scores[name] = max(abs(spearman(latent, g)) for g in (f, np.cos(angle), np.sin(angle)))
        else:
            scores[name] = abs(spearman(latent, f))
    return scores


def factor_map(model: BetaTCVAE, batch: shapes.ShapesBatch) -> dict[int, dict[str, Any]]:
    """Per latent: activity, whether active, the factor it tracks best, and all scores.

    Activity is the variance of the posterior mean across ``batch``: a latent the encoder
    ignores has (near-)constant mean.  The mean KL to the prior of that dimension is
    reported too (``kl``, nats).
    """
    mean, logvar = encode_posterior(model, batch.images)
    kl = (0.5 * (mean**2 + np.exp(logvar) - 1.0 - logvar)).mean(0)
    mean_np = mean.astype(np.float64)
    result: dict[int, dict[str, Any]] = {}
    for j in range(model.latent_dim):
        scores = factor_scores(mean_np[:, j], batch.factors)
        best = max(scores, key=scores.__getitem__)
        activity = float(mean_np[:, j].var())
        result[j] = {
            "activity": activity,
            "kl": float(kl[j]),
            "active": activity > ACTIVE_THRESHOLD,
            "factor": best,
            "score": scores[best],
            "scores": scores,
        }
    return result


PROPERTIES = {"cx": "x", "cy": "y", "area": "scale", "orient": "rotation", "hue": "colour"}
"""Measured image property -> the factor it reveals."""


def measure(images: np.ndarray) -> dict[str, np.ndarray]:
    """Measure the object in images ``[N, 3, 32, 32]``: what a latent traversal should move.

    Weights are the HSV value (max over RGB; the objects have value 1), with faint
    background (< 0.1) ignored.  ``cx``/``cy``: weighted centroid (px); ``area``: total
    weight (px); ``orient``: doubled-angle second-moment orientation (degrees, period 180);
    ``hue``: weighted circular mean hue (period 1).
    """
    value = images.max(1).astype(np.float64)
    w = np.where(value > 0.1, value, 0.0)
    mass = np.maximum(w.sum((1, 2)), 1e-8)
    yy, xx = np.mgrid[0 : shapes.SIZE, 0 : shapes.SIZE] + 0.5
    cx = (w * xx).sum((1, 2)) / mass
    cy = (w * yy).sum((1, 2)) / mass
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    mxx, myy, mxy = ((w * a * b).sum((1, 2)) for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    orient = np.degrees(0.5 * np.arctan2(2.0 * mxy, mxx - myy))
    r, g, b = (images[:, c].astype(np.float64) for c in range(3))
    # Hue angle from the RGB "colour hexagon" projection: 0 = red, 1/3 = green, 2/3 = blue.
    hue_angle = np.arctan2(np.sqrt(3.0) * (g - b), 2.0 * r - g - b)
    hue = np.angle((w * np.exp(1j * hue_angle)).sum((1, 2))) / (2.0 * np.pi) % 1.0
    return {"cx": cx, "cy": cy, "area": mass, "orient": orient, "hue": hue}


def _net_change(values: np.ndarray, period: float | None) -> np.ndarray:
    """Unwrapped change from the first to the last traversal step, along the last axis."""
    steps = np.diff(values, axis=-1)
    if period is not None:
        steps = (steps + period / 2.0) % period - period / 2.0
    return steps.sum(-1)


@torch.no_grad()
def traversal_check(model: BetaTCVAE, n: int = 4000, bases: int = 8, seed: int = 123) -> None:
    """Print factor_map next to what traversing each active latent does to decoded images.

    For each active latent, ``z_i`` sweeps ``linspace(-3, 3, 5)`` around ``bases`` posterior
    means of random images; each property's mean |net change| is divided by its spread in
    real data, and the largest names the factor the traversal moves.
    """
    batch = shapes.generate(n, seed=seed)
    fmap = factor_map(model, batch)
    real = measure(batch.images)
    spread = {k: float(np.std(v)) for k, v in real.items()}
    spread["hue"] = 1.0 / np.sqrt(12.0)  # uniform hue on the circle
    periods = {"orient": 180.0, "hue": 1.0}
    base = torch.from_numpy(encode_posterior(model, batch.images[:bases])[0])
    values = torch.linspace(-3.0, 3.0, 5)
    print(
        f"{'z':>2} {'act':>5} {'kl':>5} {'factor_map':>16} | "
        + " ".join(f"{k:>7}" for k in PROPERTIES)
        + " | traversal     match"
    )
    agree = active = 0
    for j, info in fmap.items():
        label = f"{info['factor']}({info['score']:.2f})"
        head = f"{j:>2} {info['activity']:5.2f} {info['kl']:5.2f} {label:>16}"
        if not info["active"]:
            print(f"{head} | (collapsed)")
            continue
        z = base[:, None, :].repeat(1, len(values), 1)
        z[:, :, j] = values
        props = measure(model.decode(z.reshape(-1, model.latent_dim)).numpy())
        change = {
            k: float(np.abs(_net_change(v.reshape(bases, -1), periods.get(k))).mean())
            for k, v in props.items()
        }
        moved = max(change, key=lambda k: change[k] / spread[k])
        ok = PROPERTIES[moved] == info["factor"]
        active += 1
        agree += ok
        cols = " ".join(f"{change[k]:7.2f}" for k in PROPERTIES)
        print(f"{head} | {cols} | {PROPERTIES[moved]:>9} {'yes' if ok else 'NO':>9}")
    print(f"traversal agrees with factor_map for {agree}/{active} active latents")
    print("(changes: cx, cy, area in px; orient in degrees; hue as a fraction of the circle)")


def main(argv: list[str] | None = None) -> None:
    """CLI: retrain and save the checkpoint (``--out``), and/or check it (``--check``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="train and save the checkpoint here")
    parser.add_argument("--check", action="store_true", help="print factor map and traversals")
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT, help="model to check")
    for key in ("latent_dim", "n", "epochs", "seed"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=DEFAULTS[key])
    parser.add_argument("--beta", type=float, default=DEFAULTS["beta"])
    args = parser.parse_args(argv)
    cfg = {k: getattr(args, k) for k in ("latent_dim", "n", "epochs", "beta", "seed")}
    if args.out is not None:
        start = time.perf_counter()
        model = train(**cfg)
        print(f"trained in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        save(model, args.out, _config(**cfg))
        print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    else:
        model = load_or_train(**cfg, path=args.checkpoint)
    if args.check or args.out is None:
        traversal_check(model)


if __name__ == "__main__":
    main()
