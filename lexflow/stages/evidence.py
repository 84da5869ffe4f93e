"""Evidence: what a traversal changes, measured from the decoded images themselves.

For every frame we measure simple properties of the foreground object (pixels that differ from the
border's median colour, used as soft weights): centroid x and y, area, orientation (from second
moments), roundness, hue, saturation, brightness, and contrast against the background. For every
base row we take the signed change of each property from the first to the last frame, in the
property's unit, and divide it by a "notable" amount to get a score (score >= 1: the property
clearly moves). The per-step pixel change says how much and where the image changes; a traversal
whose pixels barely change is *inactive* and is never shown to an explainer.

Where the change happens is measured by lexflow.stages.scenes: each frame is split into background
regions (the wall and the floor of a scene, or one flat background) and objects, and every part's
properties are followed along the traversal (:attr:`Evidence.changes`), so a wall that turns blue
is not mistaken for an object changing shape. The single-blob :attr:`Evidence.properties` stay as
they were, for the prompts and judges that read them.

Units: x and y are fractions of the image width/height (0 = left/top); area is a fraction of the
image; scale is the log of the area ratio; rotation is degrees (positive = counter-clockwise as
seen on screen); hue is turns (0..1, circular); saturation, brightness and contrast are in [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from lexflow.stages.scenes import (
    MIN_ANISOTROPY,
    RegionChange,
    Scene,
    analyse,
    concat_scenes,
    row_median,
    summarise_rows,
    traversal_changes,
)
from lexflow.stages.scenes import NOTABLE as SCENE_NOTABLE
from lexflow.stages.scenes import rgb_to_hsv as _rgb_to_hsv

__all__ = ["Evidence", "PropertyChange", "RegionChange", "activity", "frame_chunks", "measure_frames",
           "measure_traversal", "measure_traversals", "traversals_at_once"]

# Property -> (notable change, unit). A change of this size gives score 1. The properties the
# scene parts share take the scene's values (one table, lexflow.stages.scenes.NOTABLE).
NOTABLE: dict[str, tuple[float, str]] = {
    **{k: SCENE_NOTABLE[k] for k in ("x", "y", "scale", "rotation", "hue", "saturation",
                                     "brightness")},
    "contrast": (0.12, "intensity"),
    "shape": (0.10, "roundness"),
}
PROPERTIES = tuple(NOTABLE)

EVIDENCE_PIXELS = 40 * 32 * 32  # frame pixels measured at once by measure_traversals
INACTIVE_CHANGE = 0.01  # mean absolute pixel change summed over steps, in [0, 1] intensity
MIN_SATURATION = 0.2  # below this hue is undefined
REGIONS = (
    ("top-left", "top", "top-right"),
    ("left", "centre", "right"),
    ("bottom-left", "bottom", "bottom-right"),
)


@dataclass(frozen=True)
class PropertyChange:
    """How one property moves along a traversal.

    Attributes:
        name: one of :data:`PROPERTIES`.
        unit: the unit of ``start``, ``end`` and ``per_row``.
        start: mean over rows of the property at the first frame (lowest latent value).
        end: mean over rows at the last frame (highest latent value).
        per_row: signed change first -> last frame in each base row, in ``unit``.
        score: median over rows of |change| / notable change; >= 1 means it clearly moves.
        agreement: fraction of rows whose change has the sign of the median change.
    """

    name: str
    unit: str
    start: float
    end: float
    per_row: tuple[float, ...]
    score: float
    agreement: float

    def row_scores(self) -> np.ndarray:
        return np.asarray(self.per_row) / NOTABLE[self.name][0]


@dataclass(frozen=True)
class Evidence:
    """Measurements of one traversal (rows x steps frames).

    Attributes:
        index: the latent index.
        active: False when the images barely change (total_change < INACTIVE_CHANGE).
        total_change: mean absolute pixel change per step, summed over steps ([0, 1] intensity).
        step_change: the same per step (length steps - 1).
        region: where the change concentrates: a ninth of the image, or "whole image".
        properties: every property of the foreground taken as one blob, highest score first.
        changes: every property of every part of the scene (lexflow.stages.scenes: the object, each of
            several objects, the wall, the floor, the background, the horizon), highest score
            first; only those that move in some row (lexflow.stages.scenes.KEPT_SCORE).
        parts_measured: True when ``changes`` was measured (False for evidence saved by an
            earlier version, which the measure explainer then reads the old way).
        readback: how well the model's own encoder reads back the value the traversal set, in
            [0, 1] (lexflow.stages.readback); None without an encoder.
    """

    index: int
    active: bool
    total_change: float
    step_change: tuple[float, ...]
    region: str
    properties: tuple[PropertyChange, ...]
    changes: tuple[RegionChange, ...] = ()
    parts_measured: bool = False
    readback: float | None = None

    def moved(self, min_score: float = 1.0) -> list[PropertyChange]:
        """Properties that clearly move, most first."""
        return [p for p in self.properties if p.score >= min_score]

    def to_dict(self) -> dict:
        """A JSON-ready dict: the properties by name, the changes as dicts. Every field is a
        number, a string or a tuple of them, so each dataclass is read field by field
        (``dataclasses.asdict``'s deep copy gives the same dict at several times the cost)."""
        d = _fields_of(self)
        d["properties"] = {p.name: {k: v for k, v in _fields_of(p).items() if k != "name"}
                           for p in self.properties}
        d["changes"] = [_fields_of(c) for c in self.changes]
        return d


def _fields_of(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def measure_frames(images: np.ndarray) -> dict[str, np.ndarray]:
    """Property values of each image. images: float32 [M, C, H, W] in [0, 1]; returns arrays [M].

    Orientation is returned as the doubled angle (radians) so 180-degree-symmetric shapes do not
    wrap; ``anisotropy`` says whether it is defined.
    """
    m, c, h, w = images.shape
    rgb = images if c == 3 else np.repeat(images, 3, axis=1)
    border = np.concatenate(
        [rgb[:, :, 0, :], rgb[:, :, -1, :], rgb[:, :, :, 0], rgb[:, :, :, -1]], axis=2
    )
    bg = row_median(border)  # [M, 3]: the border's median colour
    diff = np.abs(rgb - bg[:, :, None, None]).max(axis=1)  # [M, H, W]
    weight = np.clip((diff - 0.05) / 0.45, 0.0, 1.0)
    mass = weight.sum(axis=(1, 2)) + 1e-6
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    cx = (weight * xs).sum(axis=(1, 2)) / mass
    cy = (weight * ys).sum(axis=(1, 2)) / mass
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    mu20 = (weight * dx * dx).sum(axis=(1, 2)) / mass
    mu02 = (weight * dy * dy).sum(axis=(1, 2)) / mass
    mu11 = (weight * dx * dy).sum(axis=(1, 2)) / mass
    # Screen coordinates have y down; negate mu11 so positive angles are counter-clockwise.
    doubled = np.arctan2(-2.0 * mu11, mu20 - mu02)
    spread = np.sqrt((mu20 - mu02) ** 2 + 4 * mu11**2)
    anisotropy = spread / (mu20 + mu02 + 1e-6)
    det = np.clip(mu20 * mu02 - mu11**2, 1e-6, None)
    roundness = mass / (4.0 * np.pi * np.sqrt(det))
    fg_rgb = (rgb * weight[:, None]).sum(axis=(2, 3)) / mass[:, None]  # [M, 3]
    hue, sat, val = _rgb_to_hsv(fg_rgb)
    gray = rgb.mean(axis=1)
    bg_gray = bg.mean(axis=1)
    fg_gray = (gray * weight).sum(axis=(1, 2)) / mass
    return {
        "x": cx / max(w - 1, 1),
        "y": cy / max(h - 1, 1),
        "area": mass / (h * w),
        "doubled_angle": doubled,
        "anisotropy": anisotropy,
        "roundness": np.where(mass > 1.0, roundness, 0.0),
        "hue": hue,
        "saturation": sat,
        "brightness": val,
        "contrast": np.abs(fg_gray - bg_gray),
    }


def _unwrap_change(series: np.ndarray, period: float) -> np.ndarray:
    """Signed cumulative change along the last axis of a circular quantity."""
    d = np.diff(series, axis=-1)
    d = (d + period / 2) % period - period / 2
    return d.sum(axis=-1)


def _row_changes(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Signed first -> last change per row for each property, in its unit ([..., rows, steps]
    arrays -> [..., rows])."""
    out = {
        "x": p["x"][..., -1] - p["x"][..., 0],
        "y": p["y"][..., -1] - p["y"][..., 0],
        "scale": np.log((p["area"][..., -1] + 1e-4) / (p["area"][..., 0] + 1e-4)),
        "saturation": p["saturation"][..., -1] - p["saturation"][..., 0],
        "brightness": p["brightness"][..., -1] - p["brightness"][..., 0],
        "contrast": p["contrast"][..., -1] - p["contrast"][..., 0],
        "shape": p["roundness"][..., -1] - p["roundness"][..., 0],
    }
    oriented = (p["anisotropy"] >= MIN_ANISOTROPY).all(axis=-1)
    rot = np.degrees(_unwrap_change(p["doubled_angle"], 2 * np.pi)) / 2.0
    out["rotation"] = np.where(oriented, rot, 0.0)
    coloured = (p["saturation"] >= MIN_SATURATION).all(axis=-1)
    out["hue"] = np.where(coloured, _unwrap_change(p["hue"], 1.0), 0.0)
    # A blob that grows changes its fill ratio a little; do not call that a shape change.
    return out


def _region(change_map: np.ndarray) -> str:
    h, w = change_map.shape
    total = change_map.sum()
    if total <= 0:
        return "whole image"
    cells = np.array(
        [[change_map[i * h // 3 : (i + 1) * h // 3, j * w // 3 : (j + 1) * w // 3].sum()
          for j in range(3)] for i in range(3)]
    )
    if cells.max() < 0.4 * total:
        return "whole image"
    i, j = np.unravel_index(int(cells.argmax()), cells.shape)
    return REGIONS[i][j]


def measure_traversal(index: int, frames: np.ndarray) -> Evidence:
    """Evidence for one latent. frames: float32 [rows, steps, C, H, W] in [0, 1]."""
    return measure_traversals([index], [frames])[0]


def _steps(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|frame-to-frame change| [rows, steps-1, C, H, W] and its mean per step."""
    step_abs = np.abs(np.diff(frames, axis=1))
    return step_abs, step_abs.mean(axis=(0, 2, 3, 4))


def activity(frames: np.ndarray) -> tuple[bool, float]:
    """(:attr:`Evidence.active`, :attr:`Evidence.total_change`) of a traversal (frames [rows,
    steps, C, H, W]), the same values its evidence gets, without measuring anything else."""
    total = float(_steps(frames)[1].sum())
    return total >= INACTIVE_CHANGE, total


def traversals_at_once(shape: tuple[int, ...]) -> int:
    """How many traversals of frames ``shape`` ([rows, steps, C, H, W]) the per-frame
    measurements of :func:`measure_traversals` take at once (EVIDENCE_PIXELS)."""
    return max(1, EVIDENCE_PIXELS // (shape[0] * shape[1] * shape[-2] * shape[-1]))


def frame_chunks(frames: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames of traversals of one shape ([rows, steps, C, H, W] each) as the per-frame
    measurements of :func:`measure_traversals` take them: [frames, C, H, W], traversal after
    traversal, a few traversals at a time (:func:`traversals_at_once`: two of 4 x 5 frames of
    32x32), so the working arrays stay small (a run's memory is about one decode group's frames;
    tests/integration/test_registry_scan.py bounds it); what they keep per frame is a few
    numbers."""
    shape = frames[0].shape
    per = shape[0] * shape[1]
    chunk = traversals_at_once(shape)
    for start in range(0, len(frames), chunk):
        flat = [f.reshape(per, *shape[2:]) for f in frames[start : start + chunk]]
        yield flat[0] if len(flat) == 1 else np.concatenate(flat)


def measure_traversals(indices: Sequence[int], frames: Sequence[np.ndarray]) -> list[Evidence]:
    """Evidence for several traversals (float32 [rows, steps, C, H, W] in [0, 1] each), the same
    as :func:`measure_traversal` of each. Traversals of the same frame shape are measured
    together: the per-frame measurements (:func:`measure_frames`,
    :func:`lexflow.stages.scenes.analyse`) run over a few traversals' frames at a time, and the
    summaries of every traversal property by property
    (:func:`lexflow.stages.scenes.traversal_changes`); every frame and every traversal is
    measured on its own, so batching does not change a value."""
    if not frames:
        return []
    shape = frames[0].shape
    if any(f.shape != shape for f in frames):
        return [measure_traversal(i, f) for i, f in zip(indices, frames, strict=True)]
    props: list[dict[str, np.ndarray]] = []
    scenes: list[Scene] = []
    for everything in frame_chunks(frames):
        props.append(measure_frames(everything))
        scenes.append(analyse(everything))
    return _evidence(indices, frames, {k: np.concatenate([p[k] for p in props]) for k in props[0]},
                     concat_scenes(scenes))


def _evidence(indices: Sequence[int], frames: Sequence[np.ndarray], props: dict[str, np.ndarray],
              scene: Scene) -> list[Evidence]:
    """Evidence of each traversal (frames [rows, steps, C, H, W] each) from its frames'
    measurements (``props`` and ``scene`` of all their frames, traversal after traversal)."""
    n = len(indices)
    rows, steps = frames[0].shape[:2]
    p = {k: v.reshape(n, rows, steps) for k, v in props.items()}
    changes = _row_changes(p)
    start_end = {
        "x": p["x"], "y": p["y"], "scale": p["area"],
        "rotation": np.degrees(p["doubled_angle"]) / 2.0, "hue": p["hue"],
        "saturation": p["saturation"], "brightness": p["brightness"],
        "contrast": p["contrast"], "shape": p["roundness"],
    }
    found: list[list[PropertyChange]] = [[] for _ in range(n)]
    for name in PROPERTIES:  # every traversal at once, property by property
        per_row = changes[name]
        notable, unit = NOTABLE[name]
        score, agreement, s0, s1 = summarise_rows(per_row, start_end[name], notable,
                                                  circular=name == "hue")
        for t, (r, a, b, sc, ag) in enumerate(zip(per_row.tolist(), s0.tolist(), s1.tolist(),
                                                  score.tolist(), agreement.tolist(), strict=True)):
            found[t].append(PropertyChange(name, unit, a, b, tuple(r), sc, ag))
    parts = traversal_changes(scene, rows, steps)
    out = []
    for t, (index, f) in enumerate(zip(indices, frames, strict=True)):
        step_abs, step_change = _steps(f)
        total = float(step_change.sum())
        found[t].sort(key=lambda c: -c.score)
        out.append(Evidence(index, total >= INACTIVE_CHANGE, total,
                            tuple(float(v) for v in step_change),
                            _region(step_abs.mean(axis=(0, 1, 2))), tuple(found[t]), parts[t],
                            True))
    return out
