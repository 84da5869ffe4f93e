"""The measured example of docs/uncertainty.md: `lexflow calibrate` on a labelled set built to show
the paraphrase problem, with bag-of-words and with semantic certainty.

    python benchmarks/calibration_example.py

48 latents: 24 "clear" ones whose five answers name one property in different words, and 24
"unclear" ones whose five answers name five different properties. Bag-of-words certainty scores
paraphrases as disagreement; semantic certainty (the packaged all-MiniLM-L6-v2, offline) does not.
The set flatters semantic certainty by construction; real labels sit in between. Prints the two
`lexflow calibrate` transcripts; without the semantic model the second says why and this exits 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

PARAPHRASES = (
    ("moves the object from left to right", "shifts the shape rightward", "the sprite slides to the right",
     "horizontal position increases", "the figure travels across to the right side"),
    ("makes the object larger", "the shape grows", "increases the size of the sprite",
     "the figure becomes bigger", "scales the object up"),
    ("changes the colour from red to blue", "the hue shifts towards blue",
     "the object turns from red to blue", "recolours the shape blue", "the tint moves from warm to cool"),
    ("rotates the object clockwise", "the shape turns to the right", "spins the sprite clockwise",
     "the orientation of the figure rotates", "tilts the object around its centre"),
    ("moves the object from top to bottom", "shifts the shape downward", "the sprite drops lower",
     "vertical position goes down", "the figure slides towards the bottom"),
    ("makes the image brighter", "raises the brightness", "the picture gets lighter",
     "increases the luminance", "the scene becomes more luminous"),
)
PROPERTIES = ("moves the object to the left", "makes the object smaller", "turns the colour green",
              "rotates the shape", "darkens the background", "makes the edges blurry",
              "adds a second object", "changes the shape to a triangle")


def labels() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(24):
        answers = list(PARAPHRASES[i % len(PARAPHRASES)])
        shift = i // len(PARAPHRASES)
        rows.append({"id": f"clear-{i:02d}", "answers": answers[shift:] + answers[:shift], "clear": True})
    for i in range(24):
        answers = [PROPERTIES[(i + 3 * k) % len(PROPERTIES)] for k in range(5)]
        rows.append({"id": f"unclear-{i:02d}", "answers": answers, "clear": False})
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "labels.jsonl").write_text("\n".join(json.dumps(r) for r in labels()) + "\n",
                                             encoding="utf-8")
        status = 0
        for certainty in ("bow", "semantic"):
            args = ["labels.jsonl", "--certainty", certainty, "--out", f"{certainty}.json"]
            res = subprocess.run([sys.executable, "-m", "lexflow", "calibrate", *args], cwd=tmp,
                                 capture_output=True, text=True)
            print(f"$ lexflow calibrate {' '.join(args)}")
            print(res.stdout.rstrip())
            print()
            if res.returncode != 0:
                print(res.stderr[-2000:], file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
