"""`lexflow diff`'s matching on the demo VAE against permuted, sign-flipped copies of itself.

    python benchmarks/diff_permutation.py [--copies 20] [--rows 8]

Each copy feeds the demo VAE's latent k from the copy's latent perm[k], with a random sign, so
the right matching is known. The behaviour component alone (both decoders re-run on the same
base codes, lexflow.diff.behaviour) is matched one-to-one (Hungarian, lexflow.diff.match.assign);
a copy counts as recovered when every latent is matched to its true counterpart.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lexflow.demo.train import load_or_train
from lexflow.diff.behaviour import base_codes, signatures
from lexflow.diff.match import assign
from lexflow.diff.similarity import behaviour_similarity


class Copy:
    """A decoder whose latent perm[k] (times sign[k]) is the demo VAE's latent k."""

    flavor, device = "pytorch", "cpu"

    def __init__(self, vae: torch.nn.Module, perm: np.ndarray, sign: np.ndarray) -> None:
        self.vae, self.perm, self.sign = vae, perm, sign
        self.latent_dim = len(perm)

    @torch.no_grad()
    def decode(self, z: np.ndarray) -> np.ndarray:
        inner = z[:, self.perm] * self.sign[None, :]
        return self.vae.decode(torch.as_tensor(inner, dtype=torch.float32)).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=20)
    p.add_argument("--rows", type=int, default=8)
    args = p.parse_args()
    vae = load_or_train(progress=False)
    d = vae.latent_dim
    base = base_codes(d, args.rows, seed=0)
    values = (-3.0, -1.5, 0.0, 1.5, 3.0)
    identity = Copy(vae, np.arange(d), np.ones(d, np.float32))
    start = time.perf_counter()
    sig_a = signatures(identity, base, values)
    rng = np.random.default_rng(0)
    recovered, true_sims, best_wrong = 0, [], []
    reversed_ok = 0
    for _ in range(args.copies):
        perm = rng.permutation(d)
        sign = rng.choice([-1.0, 1.0], size=d).astype(np.float32)
        sig_b = signatures(Copy(vae, perm, sign), base, values)
        sim, signed = behaviour_similarity(sig_a, sig_b)
        pairs = dict(assign(sim))
        truth = {k: int(perm[k]) for k in range(d)}
        recovered += pairs == truth
        active = [k for k in range(d) if sig_a.active[k]]
        for k in active:
            true_sims.append(sim[k, truth[k]])
            best_wrong.append(max(sim[k, j] for j in range(d) if j != truth[k]))
            reversed_ok += (signed[k, truth[k]] < 0) == (sign[k] < 0)
    took = time.perf_counter() - start
    n_active = int(sig_a.active.sum())
    print(f"demo VAE: {d} latents, {n_active} active; {args.copies} permuted, sign-flipped copies; "
          f"{args.rows} shared base codes, steps {len(values)}")
    print(f"copies whose matching is exactly the permutation: {recovered} of {args.copies}")
    print(f"behaviour similarity of true pairs (active latents): min {min(true_sims):.3f}, "
          f"median {float(np.median(true_sims)):.3f}")
    print(f"best wrong partner of each active latent: max {max(best_wrong):.3f}, "
          f"median {float(np.median(best_wrong)):.3f}")
    margins = np.asarray(true_sims) - np.asarray(best_wrong)
    print(f"margin (true pair - best wrong partner): min {margins.min():.3f}, "
          f"median {float(np.median(margins)):.3f}")
    print(f"direction (reversed or not) right for {reversed_ok} of {len(true_sims)} true pairs")
    print(f"time: {took:.1f} s for {args.copies + 1} signature sets")


if __name__ == "__main__":
    main()
