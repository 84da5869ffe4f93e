"""Measuring how good explanations are.

- :mod:`lexflow.quality.metrics`: BLEU, ROUGE-L, METEOR, CIDEr-D, BERTScore (reference-based).
- :mod:`lexflow.quality.evaluate`: ``lexflow evaluate`` - a run's explanations against human
  references, logged to the run.
- :mod:`lexflow.quality.judge`: the optional ``detect`` / ``direction`` extension of the explainer
  contract and its measurement-based default (reference-free scores).
- :mod:`lexflow.quality.suite`: the benchmark on the synthetic families of
  :mod:`lexflow.families` (factor identification, abstention AUROC, detection, direction,
  ablations).

Nothing here is imported by ``import lexflow``.
"""
