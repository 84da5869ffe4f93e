"""``python -m lexflow.families train|show|factors``: the synthetic families from the shell."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from lexflow.families import FAMILY_NAMES
from lexflow.families.base import SUPERVISION


@click.group()
def main() -> None:
    """Synthetic data families with known factors, and their VAEs."""


def _family_option(f: Any) -> Any:
    return click.option("--family", required=True, type=click.Choice(FAMILY_NAMES))(f)


@main.command()
@_family_option
@click.option("--epochs", type=int, default=None, help="Override the family's default.")
@click.option("--n", type=int, default=None, help="Training images (default: the family's).")
@click.option("--latent-dim", type=int, default=None)
@click.option("--beta", type=float, default=None)
@click.option("--supervision", type=click.Choice(SUPERVISION), default=None,
              help="pairs: weakly supervised (image pairs that differ in one factor, Ada-GVAE); "
                   "none: unsupervised beta-TCVAE (default: the family's, pairs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Train even when a matching checkpoint exists.")
@click.option("--ship", is_flag=True,
              help="Retrain the shipped checkpoint: the family's defaults, seed 0, written to "
                   "lexflow/families/checkpoints/NAME.pt (implies --force).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also save the checkpoint here.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Checkpoint cache (default ~/.cache/lexflow/families).")
def train(family: str, epochs: int | None, n: int | None, latent_dim: int | None,
          beta: float | None, supervision: str | None, seed: int, force: bool, ship: bool, out: Path | None,
          cache_dir: Path | None) -> None:
    """Train (or load) the VAE of a family, then print which factor each latent tracks."""
    from lexflow.errors import LexflowError
    from lexflow.families import get_family
    from lexflow.families.train import (
        SHIPPED,
        SHIPPED_SEED,
        factor_map,
        load_or_train,
        save_checkpoint,
        with_overrides,
    )
    from lexflow.families.train import (
        train as train_model,
    )

    fam = get_family(family)
    settings = with_overrides(fam.train, epochs=epochs, n=n, latent_dim=latent_dim, beta=beta,
                              supervision=supervision)
    if ship:
        if settings != fam.train or seed != SHIPPED_SEED:
            raise click.UsageError("--ship trains the shipped checkpoint: the family's default "
                                   "settings and seed 0; drop --epochs/--n/--latent-dim/--beta/"
                                   "--supervision/--seed.")
        start = time.perf_counter()
        model = train_model(fam, settings, seed=seed)
        took = time.perf_counter() - start
        out = SHIPPED / f"{fam.name}.pt"
        save_checkpoint(model, out, fam, settings, seed, took)
        click.echo(f"{fam.name}: trained in {took:.0f} s, saved {out} "
                   f"({out.stat().st_size / 1e6:.2f} MB)", err=True)
    else:
        start = time.perf_counter()
        try:
            model, where = load_or_train(fam, settings, seed=seed, cache_dir=cache_dir, force=force)
        except LexflowError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        took = time.perf_counter() - start
        click.echo(f"{fam.name}: {where} ({took:.1f} s)", err=True)
        if out is not None:
            save_checkpoint(model, out, fam, settings, seed, None)
            click.echo(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB)", err=True)
    fmap = factor_map(model, fam, fam.generate(4000, seed=seed + 1000))
    click.echo(f"{'latent':>6} {'activity':>8}  {'factor':<12} {'score':>5}  runner-up")
    for j, info in fmap.items():
        ranked = sorted(info["scores"].items(), key=lambda kv: -kv[1])
        mark = "" if info["active"] else "  (collapsed)"
        click.echo(f"{j:>6} {info['activity']:8.2f}  {info['factor']:<12} {info['score']:5.2f}  "
                   f"{ranked[1][0]} {ranked[1][1]:.2f}{mark}")


@main.command()
@_family_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="PNG path (default: <family>.png).")
@click.option("--seed", type=int, default=0, show_default=True)
def show(family: str, out: str | None, seed: int) -> None:
    """Write a 4 x 8 grid of generated images."""
    from lexflow.families import get_family
    from lexflow.stages.render import png_bytes, traversal_grid

    batch = get_family(family).generate(32, seed=seed)
    path = out or f"{family}.png"
    Path(path).write_bytes(png_bytes(traversal_grid(batch.images.reshape(4, 8, 3, 32, 32))))
    click.echo(path)


if __name__ == "__main__":
    sys.exit(main())
