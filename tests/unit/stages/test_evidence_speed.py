"""lexflow.stages.evidence after the speed-up (issue 14): measuring several traversals at once,
and the small-array median and mean, give exactly the values measured one at a time with numpy's
own functions (the evidence must not change, only its cost)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from models.blob import BlobDecoder, traverse

from lexflow.config import ExplainConfig
from lexflow.stages import evidence
from lexflow.stages.evidence import measure_traversal, measure_traversals
from lexflow.stages.scenes import row_mean, row_median


def _json(ev: evidence.Evidence) -> str:
    return json.dumps(ev.to_dict(), sort_keys=True)  # floats by repr: bit for bit


def test_batched_evidence_is_the_evidence_of_each_traversal(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [traverse(BlobDecoder(), ExplainConfig(rows=3), i) for i in range(5)]
    rng = np.random.default_rng(0)
    frames.append(rng.random(frames[0].shape, dtype=np.float32))  # noise: many objects
    alone = [_json(measure_traversal(i, f)) for i, f in enumerate(frames)]
    for pixels in (1, evidence.EVIDENCE_PIXELS, 10**9):  # one, a few, all traversals at once
        monkeypatch.setattr(evidence, "EVIDENCE_PIXELS", pixels)
        together = measure_traversals(list(range(len(frames))), frames)
        assert [_json(e) for e in together] == alone
        assert [e.index for e in together] == list(range(len(frames)))


def test_traversals_of_different_shapes_are_measured_one_by_one() -> None:
    a = traverse(BlobDecoder(), ExplainConfig(rows=3), 0)
    b = traverse(BlobDecoder(), ExplainConfig(rows=2), 1)
    got = measure_traversals([0, 1], [a, b])
    assert [_json(e) for e in got] == [_json(measure_traversal(0, a)), _json(measure_traversal(1, b))]
    assert measure_traversals([], []) == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_median_and_mean_are_numpys(dtype: type) -> None:
    rng = np.random.default_rng(1)
    for n in range(1, 20):
        for _ in range(50):
            a = (rng.standard_normal((n, 3)) * 10.0 ** rng.integers(-6, 6)).astype(dtype)[:, 1]
            if rng.random() < 0.1:
                a = a.copy()
                a[rng.integers(n)] = np.nan
            for ours, theirs in ((row_median(a), np.median(a)), (row_mean(a), a.mean()),
                                 (row_mean(a > 0), np.mean(a > 0)),
                                 (row_mean(np.exp(1j * a)), np.exp(1j * a).mean())):
                assert type(ours) is type(theirs)
                assert ours == theirs or (np.isnan(ours) and np.isnan(theirs))



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_median_and_mean_of_many_rows_are_numpys_of_each(dtype: type) -> None:
    """Along the last axis of a [traversals, rows] array (every traversal at once, as the
    evidence measures them): each row's value is numpy's value for that row alone."""
    rng = np.random.default_rng(2)
    for n in range(1, 20):
        a = (rng.standard_normal((7, n)) * 10.0 ** rng.integers(-6, 6)).astype(dtype)
        a[rng.integers(7), rng.integers(n)] = np.nan
        for ours, theirs, x in ((row_median, np.median, a), (row_mean, np.mean, a),
                                (row_mean, np.mean, a > 0), (row_mean, np.mean, np.exp(1j * a))):
            got = ours(x)
            for k in range(7):
                want = theirs(x[k])
                assert got[k].dtype == want.dtype
                assert got[k] == want or (np.isnan(got[k]) and np.isnan(want))


def _asdict_reference(ev: evidence.Evidence) -> dict:
    """Evidence.to_dict as it was written with dataclasses.asdict (a deep copy)."""
    from dataclasses import asdict

    d = asdict(ev)
    d["properties"] = {p["name"]: {k: v for k, v in p.items() if k != "name"}
                       for p in d["properties"]}
    d["changes"] = [dict(c) for c in d["changes"]]
    return d


def test_to_dict_is_the_deep_copy_it_replaced_and_activity_is_the_evidence_s() -> None:
    """to_dict reads each dataclass field by field: the same dict, types included, as asdict
    gave (every field is a number, a string or a tuple of them). ``activity`` gives the active
    flag and total change the evidence gets, from the frames alone."""
    frames = [traverse(BlobDecoder(), ExplainConfig(rows=3), i) for i in range(5)]
    frames.append(np.random.default_rng(1).random(frames[0].shape, dtype=np.float32))
    frames.append(np.zeros_like(frames[0]))  # inactive
    changed = 0
    for i, f in enumerate(frames):
        ev = measure_traversal(i, f)
        changed += bool(ev.changes)
        got, want = ev.to_dict(), _asdict_reference(ev)
        assert got == want
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
        assert [type(c["per_row"]) for c in got["changes"]] == [tuple] * len(ev.changes)
        assert evidence.activity(f) == (ev.active, ev.total_change)
    assert changed >= 4 and not measure_traversal(0, frames[-1]).active
