"""The measure stage against the seed's way and the raw decoder forward, timed side by side.

    python benchmarks/measure_stage.py [--latents 7] [--rows 4] [--steps 5] [--threads 2]
                                       [--repeats 7] [--untrained] [--train-epochs 15]

Workload: a small MLP VAE (7 latents -> 32x32 RGB, fixed seed) trained for about half a minute
on dSprites-like shapes, so the frames are decoded shapes as on a real model (the evidence's scene
analysis depends on what the images show; ``--untrained`` decodes noise instead), ``rows`` x
``steps`` per latent, plus the comparison rows the disentanglement bias decodes.

- the seed's way: one decoder call per image and a matplotlib subplot grid saved as PNG per
  traversal (and per comparison row);
- lexflow's measure stage (:func:`lexflow.engine.measure_latents`: decode, evidence, grids and
  comparison rows);
- the raw decoder forward on the same codes, in the same batches;
- only what the seed's way makes (the grid PNGs of the traversals and comparison rows), made
  the lexflow way: decode in batches, grid, PNG; no evidence and no pictures for people. The
  gap between it and the stage is what lexflow measures and draws beyond the seed's output.

The four are timed in rounds, interleaved (the order rotates each round), so load on a shared
machine hits all alike; each figure is the median over rounds and the ratios are medians of the
per-round ratios. Then the measure stage's own time is split into its parts (decode, evidence,
grid composition, PNG encoding of the grids, the pictures for people: strip and animation), each
timed on the same frames, one after the other on one thread. Beside this decoder, whose torch
threads keep the cores busy, the stage draws inline (a drawing thread only pays beside a decoder
that leaves the cores idle: lexflow.engine._DrawingPlace), so its time is about the sum of its
parts; the breakdown prints both. The scene analysis within the evidence (lexflow.stages.scenes)
is timed on its own too, and the parts are summed once more without it and without the pictures
for people: the stage gained both after issue 14's profile set the 100x goal.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from isal import isal_zlib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter  # noqa: E402
from lexflow.config import ExplainConfig  # noqa: E402
from lexflow.engine import _comparison_chunks, _partners, measure_latents  # noqa: E402
from lexflow.stages.decode import BatchDecoder, decode_groups, decode_traversals  # noqa: E402
from lexflow.stages.evidence import frame_chunks, measure_traversals  # noqa: E402
from lexflow.stages.plan import TraversalPlan  # noqa: E402
from lexflow.stages.render import (  # noqa: E402
    PNG_LEVEL,
    png_bytes,
    traversal_gif,
    traversal_grid,
    traversal_strip,
)
from lexflow.stages.scenes import analyse, concat_scenes, traversal_changes  # noqa: E402


class MLPDecoder(torch.nn.Module):
    """A small MLP VAE decoder: latent -> 256 -> 512 -> 3x32x32 in [0, 1]."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.latent_dim = latent_dim
        self.net = torch.nn.Sequential(
            torch.nn.Linear(latent_dim, 256), torch.nn.ReLU(), torch.nn.Linear(256, 512),
            torch.nn.ReLU(), torch.nn.Linear(512, 3 * 32 * 32), torch.nn.Sigmoid())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, 3, 32, 32)


class MLPVAE(torch.nn.Module):
    """The decoder with its trained encoder as ``encode(x)``: what lexflow's read-back uses
    (lexflow.stages.readback) on a VAE logged whole."""

    def __init__(self, decoder: MLPDecoder, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.latent_dim, self.decoder, self.encoder = decoder.latent_dim, decoder, encoder

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode(z)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x.reshape(len(x), -1)).chunk(2, dim=1)
        return mean, logvar


def train_mlp_vae(latent_dim: int, n: int = 10_000, epochs: int = 15, seed: int = 0) -> MLPVAE:
    """A small MLP VAE trained for about half a minute on dSprites-like shapes (lexflow.families'
    generator), so the stage measures decoded shapes, as on a real model.
    The evidence's scene analysis works per object pixel: an untrained decoder's noise (about a
    third of all pixels count as objects) is its worst case, kept as ``--untrained``."""
    from lexflow.families import get_family

    torch.manual_seed(seed)
    images = torch.from_numpy(get_family("dsprites").generate(n, seed=seed).images).reshape(n, -1)
    decoder = MLPDecoder(latent_dim)
    encoder = torch.nn.Sequential(torch.nn.Linear(3 * 32 * 32, 512), torch.nn.ReLU(),
                                  torch.nn.Linear(512, 256), torch.nn.ReLU(),
                                  torch.nn.Linear(256, 2 * latent_dim))
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(128):
            x = images[idx]
            mean, logvar = encoder(x).chunk(2, dim=1)
            z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
            recon = decoder.net(z)
            kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(1).mean()
            loss = torch.nn.functional.binary_cross_entropy(recon, x, reduction="sum") / len(x) + kl
            opt.zero_grad()
            loss.backward()
            opt.step()
    return MLPVAE(decoder, encoder).eval()


def seed_way(model: MLPDecoder, codes: list[np.ndarray], rows: int, steps: int) -> None:
    """One decode per image, one matplotlib figure of rows x steps subplots per grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for z in codes:
        n_rows = len(z) // steps
        images = []
        with torch.no_grad():
            for code in z:
                images.append(model.decode(torch.from_numpy(code[None]))[0].numpy())
        fig, axes = plt.subplots(n_rows, steps, figsize=(steps, n_rows), squeeze=False)
        for k, img in enumerate(images):
            ax = axes[k // steps][k % steps]
            ax.imshow(np.moveaxis(img, 0, -1))
            ax.axis("off")
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latents", type=int, default=7)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--untrained", action="store_true",
                   help="an untrained decoder (noise frames: the scene analysis' worst case)")
    p.add_argument("--train-epochs", type=int, default=15, help="epochs of the MLP VAE's training")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    vae = (MLPVAE(MLPDecoder(args.latents), torch.nn.Linear(3 * 32 * 32, 2 * args.latents)).eval()
           if args.untrained else train_mlp_vae(args.latents, epochs=args.train_epochs))
    model = vae.decoder  # the stage as the seed's way has it (the read-back is timed on its own)
    adapter = PyTorchVAEAdapter(model, device="cpu")
    config = ExplainConfig(rows=args.rows, steps=args.steps)
    plan = TraversalPlan.from_config(args.latents, config)
    indices = tuple(range(args.latents))

    measured, out_range, _ = measure_latents(adapter, config, indices, bias="disentanglement",
                                             output_range=(0.0, 1.0), progress=False, plan=plan)
    partners = _partners(measured, args.latents)
    codes = [plan.codes(i) for i in indices]
    codes += [plan.comparison_codes(i, j) for i, j in partners.items()]
    n_images = sum(len(z) for z in codes)
    # The raw forward on the batches lexflow decodes (traversals grouped, then comparison rows).
    per = plan.rows * plan.steps
    group = max(1, config.batch_size // per)
    batches = [np.concatenate(codes[g : min(g + group, args.latents)])
               for g in range(0, args.latents, group)]
    if partners:
        batches.append(np.concatenate(codes[args.latents:]))
    tensors = [torch.from_numpy(b) for b in batches]

    def raw() -> None:
        with torch.inference_mode():
            for t in tensors:
                model.decode(t)

    def stage() -> None:
        measure_latents(adapter, config, indices, bias="disentanglement", output_range=None,
                        progress=False, plan=plan)

    def seed() -> None:
        seed_way(model, codes, plan.rows, plan.steps)

    def grids_only() -> None:  # what the seed's way makes, the lexflow way: decode, grid PNGs
        b = BatchDecoder(adapter, batch_size=config.batch_size, output_range=None)
        for t in decode_traversals(b, plan.codes, list(indices), plan.rows, plan.values):
            png_bytes(traversal_grid(t.frames, plan.values))
        for _, rows in _comparison_chunks(b, plan, partners, config.batch_size):
            for r in rows:
                png_bytes(traversal_grid(r, plan.values))

    paths: dict[str, Callable[[], None]] = {"seed": seed, "stage": stage, "raw": raw,
                                            "grids": grids_only}
    times = rounds(paths, args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio_seed = [s / m for s, m in zip(times["seed"], times["stage"], strict=True)]
    ratio_grids = [s / m for s, m in zip(times["seed"], times["grids"], strict=True)]
    ratio_raw = [m / r for m, r in zip(times["stage"], times["raw"], strict=True)]

    kind = "untrained" if args.untrained else "trained on dSprites-like shapes"
    print(f"workload: MLP VAE ({kind}), {args.latents} latents x {plan.rows} rows x {plan.steps} steps "
          f"+ {len(partners)} comparison rows = {n_images} images (32x32 RGB), "
          f"{args.threads} threads, {args.repeats} interleaved rounds")
    print()
    print("| path | median time |")
    print("|---|---|")
    print(f"| the seed's way (one decode per image, a matplotlib subplot grid) | "
          f"{med['seed'] * 1e3:,.1f} ms |")
    print(f"| lexflow's measure stage (decode, evidence, grids, comparison rows) | "
          f"{med['stage'] * 1e3:,.1f} ms |")
    print(f"| the raw decoder forward on the same codes | {med['raw'] * 1e3:,.2f} ms |")
    print(f"| only what the seed's way makes, the lexflow way (decode, grid PNGs; no evidence, "
          f"no pictures) | {med['grids'] * 1e3:,.1f} ms |")
    print()
    print(f"- measure stage vs the seed's way: {statistics.median(ratio_seed):.1f}x faster "
          f"(per-round ratios {min(ratio_seed):.1f}x to {max(ratio_seed):.1f}x; goal >= 100x)")
    print(f"- measure stage vs the raw forward: {statistics.median(ratio_raw):.1f}x the raw "
          f"forward's time (per-round {min(ratio_raw):.1f}x to {max(ratio_raw):.1f}x)")
    print(f"- the seed's way vs only its own output made the lexflow way: "
          f"{statistics.median(ratio_grids):.1f}x (per round {min(ratio_grids):.1f}x to "
          f"{max(ratio_grids):.1f}x); the rest of the stage is the evidence and the pictures, "
          "which the seed's way does not make")
    print(f"- 100x the seed's way would be {med['seed'] * 10:,.1f} ms for the whole stage, of "
          f"which the raw forward alone takes {med['raw'] * 1e3:,.1f} ms")
    print()
    breakdown(adapter, config, plan, indices, partners, args.repeats, med["seed"])
    readback_cost(PyTorchVAEAdapter(vae, device="cpu"), config, plan, indices, args.repeats)
    return 0


def readback_cost(adapter: PyTorchVAEAdapter, config: ExplainConfig, plan: TraversalPlan,
                  indices: tuple[int, ...], repeats: int) -> None:
    """What a VAE logged with its encoder adds to the stage: the encoder's read-back of the main
    traversals (lexflow.stages.readback), one encoder pass per decode group."""
    from lexflow.stages.readback import ReadBack

    reader = ReadBack.for_run(adapter, config.readback, plan.kind, plan.values)
    assert reader is not None
    batch = BatchDecoder(adapter, batch_size=config.batch_size, output_range=(0.0, 1.0))
    groups = list(decode_groups(batch, plan.codes, list(indices), plan.rows, plan.values))
    frames = sum(t.frames.shape[0] * t.frames.shape[1] for g in groups for t in g)

    def read_back() -> None:
        for g in groups:
            reader.group(g, batch)

    times = rounds({"read-back": read_back}, repeats)["read-back"]
    print(f"- the encoder's read-back, which a VAE logged with encode(x) adds to the stage "
          f"(not in the figures above, as the seed's way has no such check): "
          f"{statistics.median(times) * 1e3:.2f} ms for {frames} frames")


def rounds(paths: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Time each path once per round, the order rotating each round; one warm-up round first."""
    names = list(paths)
    for fn in paths.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            t = time.perf_counter()
            paths[k]()
            times[k].append(time.perf_counter() - t)
    return times


def breakdown(adapter: PyTorchVAEAdapter, config: ExplainConfig, plan: TraversalPlan,
              indices: tuple[int, ...], partners: dict[int, int], repeats: int,
              seed_seconds: float) -> None:
    """The measure stage's parts, each timed on the same frames (medians over interleaved
    rounds), as shares of their sum; and, within the evidence, the scene analysis."""
    batch = BatchDecoder(adapter, batch_size=config.batch_size, output_range=(0.0, 1.0))
    main = [t.frames for t in decode_traversals(batch, plan.codes, list(indices), plan.rows,
                                                plan.values)]
    comparison = [batch.decode(plan.comparison_codes(i, j)).reshape(2, plan.steps, 3, 32, 32)
                  for i, j in partners.items()]
    frames = main + comparison
    grids = [traversal_grid(f, plan.values) for f in frames]

    def decode() -> None:
        b = BatchDecoder(adapter, batch_size=config.batch_size, output_range=None)
        for _ in decode_traversals(b, plan.codes, list(indices), plan.rows, plan.values):
            pass
        for _ in _comparison_chunks(b, plan, partners, config.batch_size):  # as the stage does
            pass

    def evidence() -> None:  # as the stage measures it: a decode group at a time
        measure_traversals(list(indices), main)
        measure_traversals(list(partners), comparison)

    def scene_analysis() -> None:  # inside the evidence: the same chunks, the same calls
        for some in (main, comparison):
            scenes = [analyse(everything) for everything in frame_chunks(some)]
            traversal_changes(concat_scenes(scenes), *some[0].shape[:2])

    def grid() -> None:
        for f in frames:
            traversal_grid(f, plan.values)

    def png() -> None:
        for g in grids:
            png_bytes(g)

    def pictures() -> None:
        for f in main:
            traversal_strip(f)
            traversal_gif(f)

    def whole() -> None:
        measure_latents(adapter, config, indices, bias="disentanglement", output_range=None,
                        progress=False, plan=plan)

    parts = {"decode": decode, "evidence": evidence, "grid composition": grid,
             "PNG encoding (grids)": png, "pictures (strip, animation)": pictures}
    times = rounds({**parts, "scenes": scene_analysis, "the stage": whole}, repeats)
    med = {k: statistics.median(times[k]) for k in parts}
    total = sum(med.values())
    scenes = statistics.median(times["scenes"])
    print("| share | what | median time |")
    print("|---|---|---|")
    for k, v in sorted(med.items(), key=lambda kv: -kv[1]):
        print(f"| {100 * v / total:.0f}% | {k} | {v * 1e3:.2f} ms |")
    print(f"| 100% | the parts one after the other, on one thread | {total * 1e3:.2f} ms |")
    print()
    print(f"- the stage itself in the same rounds: {statistics.median(times['the stage']) * 1e3:.2f}"
          " ms (the grids and pictures drawn inline beside a decoder that keeps the cores busy)")
    print(f"- of the evidence, the scene analysis (each frame's background regions and objects, "
          f"and how each part changes: lexflow.stages.scenes) takes {scenes * 1e3:.2f} ms")
    # Each round's own sum less its own scene analysis and pictures (timed in that round), so a
    # slow moment on a shared machine does not land on one side of the difference only.
    rest = statistics.median(
        sum(times[k][r] for k in parts) - times["scenes"][r] - times["pictures (strip, animation)"][r]
        for r in range(repeats))
    print(f"- the parts less the scene analysis and the pictures for people, which the stage "
          f"gained after issue 14's profile (each round's own difference, median): "
          f"{rest * 1e3:.2f} ms, {seed_seconds / rest:.1f}x the seed's way")
    deflate_choice([png_bytes(g) for g in grids], repeats)


def _idat(png: bytes) -> bytes:
    """The zlib stream of a PNG (its IDAT chunks joined)."""
    out, at = b"", 8
    while at < len(png):
        length = int.from_bytes(png[at : at + 4], "big")
        if png[at + 4 : at + 8] == b"IDAT":
            out += png[at + 8 : at + 8 + length]
        at += 12 + length
    return out


def deflate_choice(pngs: list[bytes], repeats: int) -> None:
    """The grids' deflate, ISA-L's (what png_bytes uses) against Python's zlib at level 1 with
    run-length matches (what it used before), on the same filtered rows."""
    rows = [zlib.decompress(_idat(p)) for p in pngs]

    def zlib_rle(data: bytes) -> bytes:
        c = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
        return c.compress(data) + c.flush()

    ways = {"isal": lambda d: isal_zlib.compress(d, PNG_LEVEL), "zlib": zlib_rle}
    sizes = {k: sum(len(f(r)) for r in rows) for k, f in ways.items()}
    times = rounds({k: (lambda f=f: [f(r) for r in rows]) for k, f in ways.items()}, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"- the grids' deflate (part of the PNG encoding above): ISA-L (the isal package, level "
          f"{PNG_LEVEL}) {med['isal'] * 1e3:.2f} ms for {sizes['isal'] / 1e3:,.0f} KB; Python's "
          f"zlib at level 1 with run-length matches, as before, {med['zlib'] * 1e3:.2f} ms for "
          f"{sizes['zlib'] / 1e3:,.0f} KB ({med['zlib'] / med['isal']:.1f}x ISA-L's time)")


if __name__ == "__main__":
    sys.exit(main())
