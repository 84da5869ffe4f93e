"""h-space pullback directions (Park et al., NeurIPS 2023), computed matrix-free.

h(x) is the U-Net mid-block ("bottleneck") output for the noisy input x at the edit timestep. The
directions are the top-k right singular vectors of the Jacobian J = dh/dx, i.e. the top
eigenvectors of J^T J. With several base samples x_1..x_R the Jacobians are stacked
([J_1; ...; J_R]), so one set of directions serves every row of a grid ("direction k" means the
same vector in every row, and its sign reads the same way in each).

J is never formed: subspace iteration needs only products J v (a jvp) and J^T u (a vjp), on a
batch of (row, column) pairs, so memory is that of one batched forward/backward of the U-Net's
down path (the forward stops right after the mid-block). ``torch.func.jvp`` is used where the
model supports forward-mode AD; diffusers' GroupNorm and attention kernels often do not, and then
J v is taken as the vjp of the (linear) vjp map - two reverse passes, same memory bound.

Sign convention: a singular vector's sign is arbitrary; lexflow flips each so that its entry of
largest magnitude is positive. "+direction k" moves x_t along that vector.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lexflow.errors import ModelContractError

SIGN_CONVENTION = ("each direction is a unit vector in x_t space whose largest-magnitude entry is "
                   "positive; '+' moves along it, '-' against it; columns run from -direction "
                   "through the base image to +direction")


class _Stop(Exception):
    """Raised by the mid-block hook to end the forward pass; carries the mid-block output."""

    def __init__(self, output: Any) -> None:
        super().__init__("mid-block reached")
        self.output = output


def mid_block_fn(unet: Any, forward: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """h(x): run ``forward(x)`` (which calls ``unet``) only up to the end of ``unet.mid_block``."""
    mid = getattr(unet, "mid_block", None)
    if mid is None:
        raise ModelContractError(
            f"The pipeline's U-Net ({type(unet).__name__}) has no mid-block (mid_block is None), "
            "so it has no h-space: lexflow's diffusion directions are the Jacobian of the "
            "mid-block output. Use a U-Net built with a mid_block_type (the default)."
        )

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        raise _Stop(output[0] if isinstance(output, (tuple, list)) else output)

    def h(x: Any) -> Any:
        handle = mid.register_forward_hook(hook)
        try:
            forward(x)
        except _Stop as stop:
            return stop.output
        finally:
            handle.remove()
        raise ModelContractError("The U-Net's forward pass never ran its mid-block.")

    return h


@contextmanager
def classic_attention(unet: Any) -> Iterator[None]:
    """Run diffusers attention with plain matmul/softmax while inside: fused SDPA kernels have no
    second derivative (which the Jacobian products need). The original processors come back after."""
    try:
        from diffusers.models.attention_processor import Attention, AttnProcessor
    except ImportError:  # not a diffusers model: nothing to swap
        yield
        return
    saved = [(m, m.processor) for m in unet.modules() if isinstance(m, Attention)]
    try:
        for m, _ in saved:
            m.set_processor(AttnProcessor())
        yield
    finally:
        for m, processor in saved:
            m.set_processor(processor)


@dataclass(frozen=True)
class Directions:
    """Top-k right singular vectors of the (stacked) mid-block Jacobian.

    Attributes:
        vectors: float32 tensor [k, n], orthonormal rows in flattened x_t space, signs fixed
            by :data:`SIGN_CONVENTION`.
        singular_values: the k singular values, decreasing (units of h per unit of x_t).
        iterations: subspace iterations run (0 for the dense method).
        method: ``jvp``, ``double-vjp`` or ``dense``.
    """

    vectors: Any
    singular_values: tuple[float, ...]
    iterations: int
    method: str


class JacobianProducts:
    """(J^T J) V summed over base samples, by jvp (or double vjp) then vjp, in bounded batches."""

    def __init__(self, h: Callable[[Any], Any], max_batch: int = 16) -> None:
        self.h = h
        self.max_batch = max(1, max_batch)
        self.method = "jvp"

    def _jv_and_vjp(self, x: Any, tangent: Any) -> tuple[Any, Any]:
        import torch

        primal_and_fn = torch.func.vjp(self.h, x)
        h0, vjp_fn = primal_and_fn[0], primal_and_fn[1]
        if self.method == "jvp":
            try:
                jv = torch.func.jvp(self.h, (x,), (tangent,))[1]
                return jv, vjp_fn
            except (NotImplementedError, RuntimeError):
                self.method = "double-vjp"  # the model lacks forward-mode AD; stay reverse-mode
        # J v as the vjp of the linear map u -> J^T u (two reverse passes, no forward mode)
        vjp_of_vjp = torch.func.vjp(lambda u: vjp_fn(u)[0], torch.zeros_like(h0.detach()))[1]
        return vjp_of_vjp(tangent)[0], vjp_fn

    def normal(self, xs: Any, v: Any) -> Any:
        """xs [R, *shape] base samples, v [m, n] -> sum_r J_r^T J_r v: [m, n] (float32)."""
        import torch

        rows, shape = xs.shape[0], tuple(xs.shape[1:])
        m = v.shape[0]
        out = torch.zeros(m, v.shape[1], dtype=torch.float32, device=v.device)
        per = max(1, self.max_batch // rows)
        for start in range(0, m, per):
            cols = v[start : start + per]
            c = cols.shape[0]
            x = xs.repeat_interleave(c, dim=0)  # element r * c + j: row r, column j
            tangent = cols.reshape(c, *shape).to(xs.dtype).repeat(rows, *([1] * len(shape)))
            jv, vjp_fn = self._jv_and_vjp(x, tangent)
            jtjv = vjp_fn(jv.to(x.dtype))[0]
            out[start : start + c] = jtjv.detach().reshape(rows, c, -1).float().sum(0)
        return out


def _fix_signs(vectors: Any) -> Any:
    import torch

    idx = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors.gather(1, idx[:, None]))
    signs[signs == 0] = 1
    return vectors * signs


def pullback_directions(
    h: Callable[[Any], Any], xs: Any, k: int, *, iterations: int = 20, oversample: int = 4,
    tol: float = 1e-4, seed: int = 0, max_batch: int = 16,
) -> Directions:
    """Top-k right singular vectors of the stacked Jacobian of ``h`` at ``xs`` [R, *shape].

    Subspace iteration on J^T J with ``k + oversample`` columns and a Rayleigh-Ritz step each
    iteration; stops when the top-k Ritz values change by less than ``tol`` (relative).
    """
    import torch

    n = math.prod(xs.shape[1:])
    if not 1 <= k <= n:
        raise ModelContractError(f"directions must be between 1 and {n} (the size of x_t); got {k}.")
    p = min(n, k + max(0, oversample))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(n, p, generator=gen).to(xs.device)).Q
    products = JacobianProducts(h, max_batch)
    previous: Any = None
    ritz_vecs: Any = None
    evals: Any = None
    done = 0
    for done in range(1, max(1, iterations) + 1):  # noqa: B007 - reported below
        w = products.normal(xs, basis.T).T  # [n, p] = J^T J basis
        m = basis.T @ w
        evals, evecs = torch.linalg.eigh((m + m.T) / 2)
        evals, evecs = evals.flip(0), evecs.flip(1)
        ritz_vecs = basis @ evecs[:, :k]
        top = evals[:k].clamp_min(0)
        if previous is not None and bool(((top - previous).abs() <= tol * top.abs().clamp_min(1e-12)).all()):
            break
        previous = top
        basis = torch.linalg.qr(w).Q
    vectors = _fix_signs(ritz_vecs.T.contiguous().float())
    values = tuple(math.sqrt(max(float(e), 0.0)) for e in evals[:k])
    return Directions(vectors, values, done, products.method)


def dense_jacobian(h: Callable[[Any], Any], x: Any, chunk: int = 256) -> Any:
    """The full Jacobian of ``h`` at one sample x [*shape]: [out, n] (float32). For checks only:
    its memory grows with out * n."""
    import torch

    x = x[None]
    with torch.no_grad():
        out_shape = h(x).shape
    n_out = math.prod(out_shape[1:])
    rows = []
    for start in range(0, n_out, chunk):
        c = min(chunk, n_out - start)
        xb = x.repeat(c, *([1] * (x.dim() - 1)))
        vjp_fn = torch.func.vjp(h, xb)[1]
        onehot = torch.zeros(c, n_out, dtype=x.dtype, device=x.device)
        onehot[torch.arange(c), torch.arange(start, start + c)] = 1
        rows.append(vjp_fn(onehot.reshape(c, *out_shape[1:]))[0].reshape(c, -1).float())
    return torch.cat(rows)


def dense_directions(h: Callable[[Any], Any], xs: Any, k: int) -> Directions:
    """The same directions from an explicit SVD of the stacked dense Jacobian (tiny models only)."""
    import torch

    jac = torch.cat([dense_jacobian(h, x) for x in xs])
    _, s, vh = torch.linalg.svd(jac, full_matrices=False)
    vh, s = vh.detach(), s.detach()
    return Directions(_fix_signs(vh[:k].contiguous()), tuple(float(v) for v in s[:k]), 0, "dense")


def principal_angles(a: Any, b: Any) -> Any:
    """Principal angles (radians, ascending) between the row spaces of a [k, n] and b [k, n]."""
    import torch

    qa = torch.linalg.qr(a.T.double()).Q
    qb = torch.linalg.qr(b.T.double()).Q
    cos = torch.linalg.svdvals(qa.T @ qb).clamp(-1, 1)
    return torch.arccos(cos)
