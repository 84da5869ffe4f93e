"""Semantic certainty: the packaged all-MiniLM-L6-v2 (real weights, offline) and a tiny encoder
saved to tmp_path, compared with the paper's bag-of-words cosine."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from lexflow.config import ExplainConfig  # noqa: E402
from lexflow.errors import ConfigError, MissingDependencyError  # noqa: E402
from lexflow.semantic import DEFAULT_PACKAGE, SemanticSimilarity, resolve_model_dir  # noqa: E402
from lexflow.uncertainty import bow_similarity, consensus, similarity_for  # noqa: E402

RIGHT_A = "moves the object to the right"
RIGHT_B = "shifts the shape rightwards"
COLOUR = "the colour changes from red to blue"
SIZE = "makes the square bigger"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub access: every model here is loaded from a local directory."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def semantic() -> SemanticSimilarity:
    pytest.importorskip(DEFAULT_PACKAGE)
    with pytest.MonkeyPatch.context() as mp:  # module scope: set up before `offline`
        mp.setenv("HF_HUB_OFFLINE", "1")
        sim = similarity_for("semantic")
    assert isinstance(sim, SemanticSimilarity)
    return sim


def test_paraphrases_score_higher_than_bag_of_words(semantic: SemanticSimilarity) -> None:
    sem = semantic([RIGHT_A, RIGHT_B, COLOUR])
    bow = bow_similarity([RIGHT_A, RIGHT_B, COLOUR])
    assert sem.shape == (3, 3)
    np.testing.assert_allclose(np.diag(sem), 1.0)
    np.testing.assert_allclose(sem, sem.T, atol=1e-6)
    assert sem[0, 1] > 0.5, sem  # same meaning, almost no shared word
    assert sem[0, 1] > bow[0, 1] + 0.15  # bag-of-words sees only the shared "the"
    assert sem[0, 2] < 0.35 and sem[1, 2] < 0.35, sem  # position vs colour: unrelated
    assert sem[0, 1] > sem[0, 2] + 0.2


def test_empty_answers_are_zero_rows(semantic: SemanticSimilarity) -> None:
    sim = semantic([RIGHT_A, "", RIGHT_B, "  "])
    assert sim.shape == (4, 4)
    assert not sim[1].any() and not sim[:, 1].any() and not sim[3].any()
    assert sim[0, 0] == 1.0 and sim[0, 2] > 0.5
    assert not semantic(["", ""]).any()


def test_consensus_with_semantic_similarity_picks_a_central_answer(
    semantic: SemanticSimilarity,
) -> None:
    slides = "the shape slides to the right side"
    answers = [RIGHT_A, RIGHT_B, slides, COLOUR]
    sem = consensus(answers, threshold=0.3, similarity=semantic)
    assert sem.medoid in answers[:3]
    assert sem.explainable and sem.explanation == sem.medoid
    # Agreeing paraphrases vs scattered answers: semantic certainty separates them more widely
    # than bag-of-words, which rewards shared function words ("the", "to") in unrelated answers.
    agree, scattered = [RIGHT_A, RIGHT_B, slides], [RIGHT_A, COLOUR, SIZE]
    sem_gap = (consensus(agree, threshold=0, similarity=semantic).certainty
               - consensus(scattered, threshold=0, similarity=semantic).certainty)
    bow_gap = (consensus(agree, threshold=0, similarity=bow_similarity).certainty
               - consensus(scattered, threshold=0, similarity=bow_similarity).certainty)
    assert sem_gap > 0.3 and sem_gap > bow_gap + 0.1, (sem_gap, bow_gap)


def test_model_is_loaded_once_per_process(semantic: SemanticSimilarity) -> None:
    again = similarity_for("semantic")
    assert isinstance(again, SemanticSimilarity)
    assert again.embedder is semantic.embedder
    by_dir = similarity_for(f"semantic:{semantic.model_dir}")
    assert isinstance(by_dir, SemanticSimilarity) and by_dir.embedder is semantic.embedder
    by_package = similarity_for(f"semantic:{DEFAULT_PACKAGE}")
    assert isinstance(by_package, SemanticSimilarity) and by_package.embedder is semantic.embedder


def test_certainty_option_accepts_semantic_forms() -> None:
    for spec in ("semantic", "semantic:/models/minilm"):
        assert ExplainConfig(certainty=spec).certainty == spec


def _tiny_encoder(directory: Path) -> Path:
    """A randomly initialised 1-layer BERT with a word-level tokenizer, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + sorted(
        set(" ".join([RIGHT_A, RIGHT_B, COLOUR, SIZE]).split()))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    fast.save_pretrained(directory)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory


def test_semantic_from_a_local_directory(tmp_path: Path) -> None:
    model_dir = _tiny_encoder(tmp_path / "tiny-encoder")
    sim = similarity_for(f"semantic:{model_dir}")
    assert isinstance(sim, SemanticSimilarity) and sim.model_dir == model_dir.resolve()
    m = sim([RIGHT_A, RIGHT_B, "", RIGHT_A])
    assert m.shape == (4, 4) and not m[2].any()
    assert m[0, 3] == pytest.approx(1.0, abs=1e-5)  # identical answers
    assert ((m >= 0) & (m <= 1)).all()


def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match="no-such-model.*does not exist"):
        similarity_for(f"semantic:{missing}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        resolve_model_dir(f"semantic:{empty}")


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, DEFAULT_PACKAGE, None)  # import now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'lexflow\[semantic\]'"):
        similarity_for("semantic")
    with pytest.raises(MissingDependencyError, match="pip install no_such_embedding_pkg"):
        similarity_for("semantic:no_such_embedding_pkg")


def test_unknown_certainty_spec_suggests_names() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'semantic'"):
        similarity_for("semantik")
    with pytest.raises(ConfigError, match="semantic:<model directory"):
        resolve_model_dir("semantic:")
