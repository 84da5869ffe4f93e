"""The pure stages of an explanation, in the order the data flows through them:

1. :mod:`lexflow.stages.plan`: which latent codes to decode (one latent, a group, a CSVAE
   attribute; diffusion directions come from the adapter's own plan);
2. :mod:`lexflow.stages.decode`: codes -> images, batched, checked and normalised to [0, 1];
3. :mod:`lexflow.stages.evidence`: what changed along each traversal, measured;
4. :mod:`lexflow.stages.render`: the traversal grids as PNG.

Nothing here does I/O, talks to a network or imports MLflow; :mod:`lexflow.engine` runs the
stages, then the explainer and the certainty, and returns an :class:`lexflow.record.ExplainResult`.
"""
