"""Reference-based text metrics: BLEU, ROUGE-L, METEOR, CIDEr-D and (optional) BERTScore.

They follow the COCO caption evaluation code (pycocoevalcap), which the paper's numbers come from,
so that a lexflow number means what a reader of the paper expects:

- Tokens: lower case, runs of letters and digits (punctuation dropped), as COCO's PTB tokenizer.
- BLEU-n (Papineni et al. 2002): corpus level, clipped n-gram counts summed over every item, the
  brevity penalty on the summed candidate length against the summed closest reference lengths.
  Per-item BLEU uses the same formula on one item with add-one smoothing of the 2..n-gram
  precisions (Lin and Och 2004), so a short explanation without a 4-gram match is not 0.
- ROUGE-L: longest common subsequence; the best precision and the best recall over the item's
  references combined with beta = 1.2 (COCO's choice); corpus score = mean over items.
- METEOR: NLTK's implementation with its exact-match and Porter-stem modules; the WordNet synonym
  module needs the WordNet data, a download, so it is switched off. That is the "exact + stem"
  variant of METEOR, slightly below METEOR 1.5 on paraphrases. Needs ``lexflow[quality]``.
- CIDEr-D (Vedantam et al. 2015): TF-IDF weighted 1..4-gram cosine with clipping and a Gaussian
  length penalty (sigma = 6), x10. The IDF comes from the references of the whole corpus, so on a
  single item every n-gram has document frequency 1 and idf log(1/1) = 0: CIDEr is 0 there by
  construction, not because the explanation is bad.
- BERTScore (Zhang et al. 2020): greedy cosine matching of contextual token embeddings of a local
  transformers model directory (no hub download), F1 with the best reference; no IDF weighting
  and no baseline rescaling (both need data tied to the model). Needs ``transformers``.

All scores are in [0, 1] except CIDEr-D (0 to 10); :func:`x100` gives the paper's scale.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lexflow.errors import ConfigError, MissingDependencyError

_TOKEN = re.compile(r"[a-z0-9]+")
ROUGE_BETA = 1.2
CIDER_SIGMA = 6.0
METEOR_NOTE = "METEOR exact+stem (NLTK; WordNet synonyms off: its data is a download)"


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; punctuation is dropped."""
    return _TOKEN.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


# --- BLEU ----------------------------------------------------------------------------------------


def _bleu_counts(cand: list[str], refs: list[list[str]], n: int) -> tuple[list[int], list[int], int]:
    """Clipped matches and totals per order 1..n, and the closest reference length."""
    matches, totals = [], []
    for k in range(1, n + 1):
        c = ngrams(cand, k)
        best: Counter[tuple[str, ...]] = Counter()
        for r in refs:
            best |= ngrams(r, k)  # max count of each n-gram over the references
        matches.append(sum(min(v, best[g]) for g, v in c.items()))
        totals.append(max(len(cand) - k + 1, 0))
    closest = min((abs(len(r) - len(cand)), len(r)) for r in refs)[1]
    return matches, totals, closest


def _bleu_from(matches: list[int], totals: list[int], cand_len: int, ref_len: int,
               smooth: bool) -> list[float]:
    """BLEU-1..n from counts; ``smooth`` adds one to the 2..n-gram fractions."""
    if cand_len == 0:
        return [0.0] * len(matches)
    bp = 1.0 if cand_len > ref_len else math.exp(1.0 - ref_len / cand_len)
    out, log_sum = [], 0.0
    for k, (m, t) in enumerate(zip(matches, totals, strict=True)):
        if smooth and k > 0:
            m, t = m + 1, t + 1
        if m == 0 or t == 0:
            out.extend([0.0] * (len(matches) - k))
            return out
        log_sum += math.log(m / t)
        out.append(bp * math.exp(log_sum / (k + 1)))
    return out


def bleu(candidates: Sequence[list[str]], references: Sequence[list[list[str]]],
         n: int = 4) -> tuple[list[float], list[list[float]]]:
    """(corpus BLEU-1..n, per-item smoothed BLEU-1..n) of token lists."""
    tot_m, tot_t, cand_len, ref_len = [0] * n, [0] * n, 0, 0
    per_item = []
    for cand, refs in zip(candidates, references, strict=True):
        m, t, closest = _bleu_counts(cand, refs, n)
        tot_m = [a + b for a, b in zip(tot_m, m, strict=True)]
        tot_t = [a + b for a, b in zip(tot_t, t, strict=True)]
        cand_len += len(cand)
        ref_len += closest
        per_item.append(_bleu_from(m, t, len(cand), closest, smooth=True))
    return _bleu_from(tot_m, tot_t, cand_len, ref_len, smooth=False), per_item


# --- ROUGE-L -------------------------------------------------------------------------------------


def lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(cand: list[str], refs: list[list[str]], beta: float = ROUGE_BETA) -> float:
    """COCO's ROUGE-L of one item: best precision and best recall over refs, F with ``beta``."""
    if not cand:
        return 0.0
    precs, recs = [], []
    for r in refs:
        common = lcs(cand, r)
        precs.append(common / len(cand))
        recs.append(common / len(r) if r else 0.0)
    p, r_ = max(precs), max(recs)
    if p == 0 or r_ == 0:
        return 0.0
    return (1 + beta**2) * p * r_ / (r_ + beta**2 * p)


# --- METEOR --------------------------------------------------------------------------------------


class _NoWordNet:
    """Stands in for NLTK's WordNet reader: no synonyms, so only exact and stem matches count."""

    def synsets(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def meteor_available() -> str | None:
    """None when METEOR can run, else why not."""
    try:
        import nltk.translate.meteor_score  # noqa: F401
    except ImportError:
        return "needs nltk: pip install 'lexflow[quality]'"
    return None


def meteor(cand: list[str], refs: list[list[str]]) -> float:
    """METEOR (exact + Porter stem modules) of one item against its references."""
    try:
        from nltk.translate.meteor_score import meteor_score
    except ImportError as exc:
        raise MissingDependencyError(
            "METEOR needs the Python package 'nltk'. Install it with: pip install 'lexflow[quality]'"
        ) from exc
    if not cand:
        return 0.0
    return float(meteor_score(refs, cand, wordnet=_NoWordNet()))


# --- CIDEr-D -------------------------------------------------------------------------------------


def _tfidf(tokens: list[str], df: Counter[tuple[str, ...]], log_n: float,
           n: int) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
    vecs: list[dict[tuple[str, ...], float]] = []
    norms = []
    for k in range(1, n + 1):
        vec = {g: tf * (log_n - math.log(max(1.0, df[g]))) for g, tf in ngrams(tokens, k).items()}
        vecs.append(vec)
        norms.append(math.sqrt(sum(v * v for v in vec.values())))
    return vecs, norms, len(tokens)


def cider_d(candidates: Sequence[list[str]], references: Sequence[list[list[str]]], n: int = 4,
            sigma: float = CIDER_SIGMA) -> tuple[float, list[float]]:
    """(corpus CIDEr-D, per-item CIDEr-D); the IDF is taken over this corpus's references."""
    df: Counter[tuple[str, ...]] = Counter()
    for refs in references:
        df.update({g for r in refs for k in range(1, n + 1) for g in ngrams(r, k)})
    log_n = math.log(float(len(references))) if references else 0.0
    scores = []
    for cand, refs in zip(candidates, references, strict=True):
        cv, cn, clen = _tfidf(cand, df, log_n, n)
        total = [0.0] * n
        for r in refs:
            rv, rn, rlen = _tfidf(r, df, log_n, n)
            delta = clen - rlen
            for k in range(n):
                val = sum(min(v, rv[k][g]) * rv[k][g] for g, v in cv[k].items() if g in rv[k])
                if cn[k] and rn[k]:
                    val /= cn[k] * rn[k]
                total[k] += val * math.exp(-(delta**2) / (2 * sigma**2))
        scores.append(10.0 * (sum(total) / n) / len(refs))
    return (sum(scores) / len(scores) if scores else 0.0), scores


# --- BERTScore -----------------------------------------------------------------------------------


class BertScorer:
    """BERTScore F1 with a local transformers model directory (tokenizer + encoder weights).

    ``layer`` picks the hidden layer whose token embeddings are matched (default: the last).
    """

    def __init__(self, model_dir: str, *, layer: int | None = None, device: str = "cpu") -> None:
        import os

        if not os.path.isdir(model_dir) or not os.path.exists(os.path.join(model_dir, "config.json")):
            raise ConfigError(
                f"--bertscore-model {model_dir!r} is not a transformers model directory (no "
                "config.json). Give a local directory holding config.json, the weights and the "
                "tokenizer files; lexflow never downloads one."
            )
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise MissingDependencyError(
                "BERTScore needs the Python packages 'torch' and 'transformers'. Install them "
                "with: pip install 'lexflow[quality]' (and the torch CPU wheel)"
            ) from exc
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True).to(device).eval()
        self.layer = layer
        self.device = device
        self.model_dir = model_dir

    def _embed(self, texts: list[str]) -> list[Any]:
        torch = self._torch
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                             return_special_tokens_mask=True)
        special = enc.pop("special_tokens_mask")
        with torch.inference_mode():
            out = self.model(**{k: v.to(self.device) for k, v in enc.items()},
                             output_hidden_states=True)
        hidden = out.hidden_states[self.layer if self.layer is not None else -1].cpu()
        keep = enc["attention_mask"].bool() & ~special.bool()
        return [torch.nn.functional.normalize(hidden[i][keep[i]], dim=-1) for i in range(len(texts))]

    def f1(self, candidate: str, references: list[str]) -> float:
        """Best F1 over the references (greedy max cosine matching of tokens)."""
        embs = self._embed([candidate, *references])
        c = embs[0]
        best = 0.0
        for r in embs[1:]:
            if len(c) == 0 or len(r) == 0:
                continue
            sim = c @ r.T
            p = float(sim.max(dim=1).values.mean())
            rec = float(sim.max(dim=0).values.mean())
            best = max(best, 2 * p * rec / (p + rec) if p + rec > 0 else 0.0)
        return best


# --- everything at once --------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusScores:
    """Reference-based scores of a run.

    Attributes:
        corpus: metric name -> corpus-level score (BLEU over the pooled counts, CIDEr-D with the
            corpus IDF, the others the mean over items). Scales as in the module docstring.
        per_item: metric name -> one score per item, in the order given.
        unavailable: metric name -> why it was not computed (e.g. METEOR without nltk).
        notes: metric name -> what to know when reading a computed score (CIDEr-D on one item).
    """

    corpus: dict[str, float]
    per_item: dict[str, list[float]]
    unavailable: dict[str, str]
    notes: dict[str, str]


def score_corpus(candidates: Sequence[str], references: Sequence[Sequence[str]], *,
                 bert: BertScorer | None = None) -> CorpusScores:
    """Every metric for candidate texts against their reference lists (same order)."""
    if len(candidates) != len(references):
        raise ConfigError(f"{len(candidates)} candidates but {len(references)} reference lists.")
    cands = [tokenize(c) for c in candidates]
    refs = [[tokenize(r) for r in rs] for rs in references]
    corpus: dict[str, float] = {}
    per_item: dict[str, list[float]] = {}
    unavailable: dict[str, str] = {}
    notes: dict[str, str] = {}
    b_corpus, b_items = bleu(cands, refs)
    for k in range(4):
        corpus[f"bleu_{k + 1}"] = b_corpus[k]
        per_item[f"bleu_{k + 1}"] = [s[k] for s in b_items]
    per_item["rouge_l"] = [rouge_l(c, r) for c, r in zip(cands, refs, strict=True)]
    corpus["rouge_l"] = _mean(per_item["rouge_l"])
    why = meteor_available()
    if why is None:
        per_item["meteor"] = [meteor(c, r) for c, r in zip(cands, refs, strict=True)]
        corpus["meteor"] = _mean(per_item["meteor"])
    else:
        unavailable["meteor"] = why
    corpus["cider_d"], per_item["cider_d"] = cider_d(cands, refs)
    if len(cands) == 1:
        notes["cider_d"] = "0 by construction on a single item (IDF over one item is 0)"
    if bert is not None:
        per_item["bertscore_f1"] = [bert.f1(c, list(r)) for c, r in
                                    zip(candidates, references, strict=True)]
        corpus["bertscore_f1"] = _mean(per_item["bertscore_f1"])
    else:
        unavailable["bertscore_f1"] = "no --bertscore-model directory given"
    return CorpusScores(corpus, per_item, unavailable, notes)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def x100(scores: dict[str, float]) -> dict[str, float]:
    """The paper's scale: every score x100 (CIDEr-D included, as COCO tables print it)."""
    return {k: 100.0 * v for k, v in scores.items()}
