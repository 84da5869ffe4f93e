"""Diffusion models: DDIM inversion, h-space pullback directions and guidance traversals.

The method (METHOD.md, section 1): a real image is inverted by DDIM to the noise latent x_t at a
fraction of T (1.0 for an unconditional DDPM, 0.7 for Stable Diffusion); the directions are the top
right singular vectors of the Jacobian of the U-Net mid-block output ("h-space") with respect to
x_t, found matrix-free; each direction is applied in both signs by the guidance steps
``x <- x + g * (eps(x + d*v, t) - eps(x, t))`` and the kept frames are decoded by DDIM.

Modules, one stage each and no MLflow:

    ddim.py      the DDIM schedule: inversion (x_0 -> x_t) and sampling (x_t -> x_0)
    hspace.py    the mid-block probe and the matrix-free (and dense, for checks) directions
    guidance.py  the guidance steps and which frames are kept

Everything here works on torch tensors; :mod:`lexflow.adapters.diffusers_pipeline` turns a
diffusers pipeline into the pieces these functions take.
"""
