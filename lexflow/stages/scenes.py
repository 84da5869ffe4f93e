"""Scenes: split each frame into background regions and objects, and measure each part.

A careful person reading a traversal grid first sees *where* it changes: the wall behind the
object, the floor under it, the object itself, or one of several objects. Folding every pixel that
differs from the border into one foreground blob (lexflow.stages.evidence.measure_frames) cannot tell a
wall turning blue from an object changing shape, so this module measures the parts apart.

Per frame (all frames at once, vectorised with numpy; frames larger than MAX_SIDE px are
block-averaged down first):

* **Background.** The median colours of the top and bottom image rows. A pixel is background when
  its colour lies within BG_TOLERANCE of the segment between the two (so the blend along a
  horizon is background too); the *upper* region is the part nearer the top colour, the *lower*
  region the rest. When the two colours differ by more than SPLIT the frame has two background
  regions (a wall over a floor); else one. Background regions are large, touch the border and
  are flat by construction.
* **Objects.** Everything else, with soft weights (0 at BG_TOLERANCE, 1 at BG_TOLERANCE + 0.45),
  as in measure_frames. Objects are the 8-connected components of weight >= 0.5 after closing
  one-pixel gaps (so a thin stroke does not break a glyph apart), each at least
  MIN_OBJECT_AREA of the image and MIN_OBJECT_SHARE of the largest one. "The object" is all
  of them together; with several, each is measured too and named by its place.
* **Horizon tilt.** Where the upper region ends in each column free of objects; a line fitted
  through those heights gives the tilt in degrees (positive = counter-clockwise on screen).

Units: x, y are fractions of the width/height (0 = left/top); area is a fraction of the image;
extent and width are pixels of the analysed (possibly downsampled) frame; hue in turns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SIDE = 64  # frames are block-averaged to at most this many pixels a side for the analysis
FLAT = 0.06  # median colour distance (max channel) from a background's colour along its row
SPLIT = 0.1  # top and bottom colours further apart than this (max channel) = two regions
BG_TOLERANCE = 0.05  # colour distance (max channel) below which a pixel is background
MIN_RAMP = 0.05  # the soft weight never rises from 0 to 1 over less colour distance than this
MIN_OBJECT_AREA = 0.006  # an object covers at least this fraction of the image...
MIN_OBJECT_SHARE = 0.35  # ...and at least this fraction of the largest object's area
MAX_OBJECTS = 3  # objects measured one by one (largest first); more only count
MIN_SATURATION = 0.2  # below this hue is undefined...
MIN_VALUE = 0.15  # ...and below this brightness, hue and saturation are

# (aspect limit, corner limit) -> names: see shape_names.
ROUND_CORNERS = 0.14  # ellipse-fit residual below this: a round shape
TRIANGLE_CORNERS = 0.32  # above this: a triangle
ELONGATED = 1.45  # long/short axis ratio at or above this: elongated


@dataclass(frozen=True)
class Scene:
    """Measurements of every frame (arrays [M]; per-object arrays [M, MAX_OBJECTS], NaN-padded).

    Attributes:
        two_tone: the frame has an upper and a lower background region.
        flat: the top and bottom rows are flat (within FLAT of their colours): there is a
            background at all.
        upper_rgb, lower_rgb: [M, 3] colours of the upper and lower background ([0, 1]).
        tilt: degrees, the horizon's angle (counter-clockwise positive); NaN without a horizon.
        count: the number of objects.
        obj: "the object" (all objects together): x, y, area, extent, width, doubled_angle,
            anisotropy, aspect, corners, roundness, hue, saturation, brightness.
        each: the same keys for each of the MAX_OBJECTS largest objects, ordered left to right.
    """

    two_tone: np.ndarray
    flat: np.ndarray
    upper_rgb: np.ndarray
    lower_rgb: np.ndarray
    tilt: np.ndarray
    count: np.ndarray
    obj: dict[str, np.ndarray]
    each: dict[str, np.ndarray]


def concat_scenes(scenes: Sequence[Scene]) -> Scene:
    """One scene of the frames of several, in order."""
    if len(scenes) == 1:
        return scenes[0]
    def joined(field: str) -> np.ndarray:
        return np.concatenate([getattr(s, field) for s in scenes])

    return Scene(joined("two_tone"), joined("flat"), joined("upper_rgb"), joined("lower_rgb"),
                 joined("tilt"), joined("count"),
                 {k: np.concatenate([s.obj[k] for s in scenes]) for k in scenes[0].obj},
                 {k: np.concatenate([s.each[k] for s in scenes]) for k in scenes[0].each})


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rgb [..., 3] in [0, 1] -> hue in turns, saturation, value."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    delta = mx - mn
    safe = np.where(delta > 1e-8, delta, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = np.where(delta > 1e-8, h / 6.0, 0.0)
    s = np.where(mx > 1e-8, delta / np.where(mx > 1e-8, mx, 1.0), 0.0)
    return h, s, mx


def shape_names(aspect: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """A name per shape from its elongation and its corners (the ellipse-fit residual)."""
    long = aspect >= ELONGATED
    round_ = corners < ROUND_CORNERS
    names = np.where(round_, np.where(long, "ellipse", "circle"),
                     np.where(long, "rectangle", "square"))
    return np.where(corners >= TRIANGLE_CORNERS, "triangle", names)


def _downsample(images: np.ndarray) -> np.ndarray:
    m, c, h, w = images.shape
    f = int(np.ceil(max(h, w) / MAX_SIDE))
    if f <= 1:
        return images
    h2, w2 = h // f, w // f
    x = images[:, :, : h2 * f, : w2 * f].reshape(m, c, h2, f, w2, f)
    return x.mean(axis=(3, 5))


@dataclass(frozen=True)
class _Pixels:
    """The pixels of the kept objects of every frame, gathered once for every grouping of them
    (all objects of a frame together, then each object): flat indices, weights, coordinates."""

    h: int
    w: int
    flat: np.ndarray  # [P] flat indices of object pixels with a non-zero weight
    wt: np.ndarray  # [P] their weights (float64)
    xs: np.ndarray
    ys: np.ndarray
    w2: np.ndarray  # weight squared
    w2_rgb: tuple[np.ndarray, ...]  # weight squared times each colour channel
    near: np.ndarray  # flat indices of every object pixel (the edge runs just outside too)
    edge: np.ndarray  # the edge strength at ``near``


def _gather(weight: np.ndarray, members: np.ndarray, rgb: np.ndarray) -> _Pixels:
    """The pixels of ``members`` ([M, H, W] bool), once for every :func:`_group_moments`; the
    edge strength (the weight's gradient) only where it is read, around the objects."""
    m, h, w = weight.shape
    flat = np.flatnonzero(members & (weight > 0))
    wt = weight.reshape(-1)[flat].astype(np.float64)
    pix = flat % (h * w)
    ys, xs = (pix // w).astype(np.float64), (pix % w).astype(np.float64)
    w2 = wt**2
    near = np.flatnonzero(members)
    return _Pixels(h, w, flat, wt, xs, ys, w2,
                   tuple(w2 * rgb[:, ch].reshape(-1)[flat] for ch in range(3)),
                   near, _edge(weight, near))


def _group_moments(px: _Pixels, group_of: Callable[[np.ndarray], np.ndarray],
                   n: int) -> dict[str, np.ndarray]:
    """Shape and colour of each group (1..n; ``group_of`` flat pixel indices of ``px``) from
    soft weights. Only the objects' pixels are visited (objects are small).
    """
    h, w, wt, xs, ys = px.h, px.w, px.wt, px.xs, px.ys
    g = group_of(px.flat)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(g, weights=values, minlength=n + 1)[1:]

    mass = total(wt) + 1e-9
    cx, cy = total(wt * xs) / mass, total(wt * ys) / mass
    k = g - 1
    dx, dy = xs - cx[k], ys - cy[k]
    mu20 = np.maximum(total(wt * dx * dx) / mass, 1e-6)
    mu02 = np.maximum(total(wt * dy * dy) / mass, 1e-6)
    mu11 = total(wt * dx * dy) / mass
    # Screen coordinates have y down; negate mu11 so positive angles are counter-clockwise.
    doubled = np.arctan2(-2.0 * mu11, mu20 - mu02)
    spread = np.sqrt((mu20 - mu02) ** 2 + 4 * mu11**2)
    trace = mu20 + mu02
    lam1, lam2 = (trace + spread) / 2, np.maximum((trace - spread) / 2, 1e-6)
    det = np.maximum(mu20 * mu02 - mu11**2, 1e-9)
    # Corners: how far the shape is from the uniform ellipse with the same moments (boundary at
    # Mahalanobis distance 2), as the mismatched mass over the shape's mass. Pixels of the ideal
    # ellipse that the shape leaves empty count too, through the ellipse's known area.
    q = (mu02[k] * dx * dx - 2 * mu11[k] * dx * dy + mu20[k] * dy * dy) / det[k]
    ideal = np.clip(0.5 - (np.sqrt(q) - 2.0) * det[k] ** 0.25, 0.0, 1.0)
    overlap = total(np.minimum(wt, ideal))
    ellipse_area = 4.0 * np.pi * np.sqrt(det)
    corners = (mass + ellipse_area - 2.0 * overlap) / mass
    # Core colour: weight squared leans on the object's inside, not its blended edge.
    core = total(px.w2) + 1e-9
    colour = np.stack([total(c) for c in px.w2_rgb], axis=1) / core[:, None]
    hue, sat, val = rgb_to_hsv(colour)
    perimeter = 1e-9 + np.bincount(group_of(px.near), weights=px.edge,
                                   minlength=n + 1)[1:].astype(np.float64)
    return {
        "x": cx / max(w - 1, 1), "y": cy / max(h - 1, 1), "area": mass / (h * w),
        "extent": np.sqrt(trace), "width": 2.0 * mass / perimeter,
        "doubled_angle": doubled, "anisotropy": spread / (trace + 1e-9),
        "aspect": np.sqrt(lam1 / lam2), "corners": corners,
        "roundness": mass / (4.0 * np.pi * np.sqrt(det)),
        "hue": hue, "saturation": sat, "brightness": val,
    }


def _edge(weight: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The gradient magnitude of ``weight`` [M, H, W] at flat indices ``at``."""
    gy, gx = np.gradient(weight, axis=(1, 2))
    return np.hypot(gx.reshape(-1)[at], gy.reshape(-1)[at])


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Each frame's mask [M, H, W] grown by one pixel in all eight directions."""
    wide = mask.copy()
    wide[:, :, 1:] |= mask[:, :, :-1]
    wide[:, :, :-1] |= mask[:, :, 1:]
    out = wide.copy()
    out[:, 1:] |= wide[:, :-1]
    out[:, :-1] |= wide[:, 1:]
    return out


def _tilt(upper: np.ndarray, background: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Horizon angle per frame (degrees, counter-clockwise positive) from column heights."""
    m, h, w = upper.shape
    bg_cols = background.sum(axis=1)
    height = upper.sum(axis=1)  # rows of upper region per column (its boundary when contiguous)
    ok = free & (bg_cols >= h - 0.5) & (height > 0.5) & (height < h - 0.5)
    xs = np.arange(w, dtype=np.float64)[None]
    n = ok.sum(axis=1)
    mx = (ok * xs).sum(1) / np.maximum(n, 1)
    my = (ok * height).sum(1) / np.maximum(n, 1)
    sxx = (ok * (xs - mx[:, None]) ** 2).sum(1)
    sxy = (ok * (xs - mx[:, None]) * (height - my[:, None])).sum(1)
    slope = sxy / np.maximum(sxx, 1e-9)
    # Height grows downwards on screen: a boundary that rises to the right turns counter-clockwise.
    return np.where((n >= max(3, w // 4)) & (sxx > 0), -np.degrees(np.arctan(slope)), np.nan)


def analyse(images: np.ndarray) -> Scene:
    """Background regions and objects of each frame. images: [M, C, H, W] in [0, 1]."""
    from scipy import ndimage

    rgb = _downsample(np.asarray(images, dtype=np.float32))
    if rgb.shape[1] != 3:
        rgb = np.repeat(rgb[:, :1], 3, axis=1)
    m, _, h, w = rgb.shape
    top = row_median(rgb[:, :, 0, :])
    bottom = row_median(rgb[:, :, -1, :])
    two = np.abs(top - bottom).max(axis=1) > SPLIT
    ring = np.concatenate([rgb[:, :, 0, :], rgb[:, :, -1, :], rgb[:, :, :, 0], rgb[:, :, :, -1]], axis=2)
    mono = row_median(ring)
    top = np.where(two[:, None], top, mono)
    bottom = np.where(two[:, None], bottom, mono)
    # A background is flat: most of the top (bottom) row lies close to its colour.
    def spread(pixels: np.ndarray, centre: np.ndarray) -> np.ndarray:
        return row_median(np.abs(pixels - centre[:, :, None]).max(axis=1))

    flat = (spread(rgb[:, :, 0, :], top) <= FLAT) & (spread(rgb[:, :, -1, :], bottom) <= FLAT)
    seg = bottom - top
    length2 = np.maximum((seg**2).sum(axis=1), 1e-9)[:, None, None]
    t = np.clip(((rgb - top[:, :, None, None]) * seg[:, :, None, None]).sum(axis=1) / length2, 0, 1)
    nearest = top[:, :, None, None] + t[:, None] * seg[:, :, None, None]
    dist = np.abs(rgb - nearest).max(axis=1)  # [M, H, W]
    # An object of a colour close to the background's still counts whole: the ramp from 0 to 1
    # is half the frame's peak distance (at most 0.45, as in measure_frames; at least MIN_RAMP).
    peak = dist.reshape(m, -1).max(axis=1)
    ramp = np.clip(0.5 * (peak - BG_TOLERANCE), MIN_RAMP, 0.45)[:, None, None]
    weight = np.clip((dist - BG_TOLERANCE) / ramp, 0.0, 1.0)
    background = weight < 0.5
    upper = background & (t < 0.5)

    # Objects: components of the closed mask, one 2-D labelling per frame in a single call.
    solid = weight >= 0.5
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = True  # 8-connected within a frame, never across frames
    closed = _dilate(solid)
    labels, n = ndimage.label(closed | ((weight > 0) & _dilate(closed)), structure=plane)
    # Labels are numbered in scan order, frame after frame: a frame's are those above the
    # highest label of the frames before it.
    highest = np.maximum.accumulate(labels.reshape(m, -1).max(axis=1))
    frame_of = np.searchsorted(highest, np.arange(n + 1))
    solid_area = np.bincount(labels.ravel(), weights=solid.ravel(), minlength=n + 1)
    solid_area[0] = 0
    largest = np.zeros(m)
    np.maximum.at(largest, frame_of, solid_area)
    keep = (solid_area >= MIN_OBJECT_AREA * h * w) & (solid_area >= MIN_OBJECT_SHARE * largest[frame_of])
    keep[0] = False
    count = np.bincount(frame_of[keep], minlength=m)

    kept_pixel = keep[labels]
    pixels = _gather(weight, kept_pixel, rgb)
    obj = _group_moments(pixels, lambda flat: flat // (h * w) + 1, m)  # a frame's objects

    # Each object: the MAX_OBJECTS largest components of a frame, ordered left to right.
    kept_ids = np.flatnonzero(keep)
    each = {k: np.full((m, MAX_OBJECTS), np.nan) for k in obj}
    if len(kept_ids) and count.max() >= 2:
        remap = np.zeros(n + 1, np.int64)
        remap[kept_ids] = np.arange(1, len(kept_ids) + 1)
        comp = _group_moments(pixels, lambda flat: remap[labels.reshape(-1)[flat]], len(kept_ids))
        frames = frame_of[kept_ids]
        order = np.lexsort((-solid_area[kept_ids], frames))
        rank = np.empty(len(kept_ids), np.int64)
        starts = np.searchsorted(frames[order], np.arange(m))
        rank[order] = np.arange(len(kept_ids)) - starts[frames[order]]
        chosen = rank < MAX_OBJECTS
        for key, values in comp.items():
            each[key][frames[chosen], rank[chosen]] = values[chosen]
        by_x = np.argsort(np.where(np.isnan(each["x"]), np.inf, each["x"]), axis=1)
        for key in each:
            each[key] = np.take_along_axis(each[key], by_x, axis=1)

    free = (weight.sum(axis=1) < 0.5)
    tilt = np.where(two, _tilt(upper, background, free), np.nan)
    return Scene(two, flat, top, bottom, tilt, count, obj, each)


# --- how each part changes along a traversal -------------------------------------------------------

# Property -> (notable change, unit); a change of this size scores 1.
NOTABLE: dict[str, tuple[float, str]] = {
    "x": (0.08, "image widths"),
    "y": (0.08, "image heights"),
    "scale": (0.25, "log area ratio"),
    "rotation": (15.0, "degrees"),
    "hue": (0.08, "turns"),
    "colour": (0.15, "RGB distance"),
    "saturation": (0.15, "saturation"),
    "brightness": (0.12, "intensity"),
    "corners": (0.06, "ellipse-fit residual"),
    "aspect": (0.25, "log axis ratio"),
    "thickness": (0.25, "log stroke width over extent"),
    "outline": (0.3, "log ellipse-fit residual ratio"),
    "tilt": (10.0, "degrees"),
    "count": (1.0, "objects"),
}
MIN_ANISOTROPY = 0.15  # below this the orientation of a blob is undefined
STROKE = 0.85  # an object whose stroke width / extent falls below this in a row is drawn in strokes
KEPT_SCORE = 0.25  # changes whose every row scores below this are not kept
PLACES = {2: ("left", "right"), 3: ("left", "middle", "right")}


@dataclass(frozen=True)
class RegionChange:
    """How one property of one part of the scene moves along a traversal.

    Attributes:
        part: "object" (all objects together), "wall" and "floor" (the upper and lower
            background regions), "background" (a one-colour background), "scene" (the horizon)
            or one of several objects by place ("left object", "middle object", "right object").
        role: "object", "background" or "scene".
        property: a key of :data:`NOTABLE`.
        unit: the unit of ``start``, ``end`` and ``per_row``.
        start, end: mean over rows at the first and last frame (circular mean for hue).
        per_row: signed change first -> last frame in each base row, in ``unit``.
        score: median over rows of |change| / notable change; >= 1 means it clearly moves.
        agreement: fraction of rows whose change has the sign of the median change.
        start_names, end_names: per row, the name of the first and last state where there are
            names: colour names for hue and colour ("" where a colour has no hue), the
            number of objects for count, else the object's shape name
            (lexflow.stages.scenes.shape_names); empty for the scene's tilt.
    """

    part: str
    role: str
    property: str
    unit: str
    start: float
    end: float
    per_row: tuple[float, ...]
    score: float
    agreement: float
    start_names: tuple[str, ...] = ()
    end_names: tuple[str, ...] = ()

    def row_scores(self) -> np.ndarray:
        return np.asarray(self.per_row) / NOTABLE[self.property][0]


# Hue (turns) of colour names, for "from red to blue".
HUE_NAMES = (
    (0.0, "red"), (0.083, "orange"), (0.167, "yellow"), (0.333, "green"),
    (0.5, "cyan"), (0.667, "blue"), (0.78, "purple"), (0.9, "pink"), (1.0, "red"),
)


def hue_name(hue: float) -> str:
    hue = hue % 1.0
    return min(HUE_NAMES, key=lambda item: abs(item[0] - hue))[1]


def _hue_names(hue: np.ndarray) -> np.ndarray:
    """:func:`hue_name` of every element."""
    anchors = np.array([h for h, _ in HUE_NAMES])
    names = np.array([n for _, n in HUE_NAMES])
    finite = np.where(np.isfinite(hue), hue, 0.0) % 1.0
    return names[np.abs(finite[..., None] - anchors).argmin(axis=-1)]


def _circular_change(series: np.ndarray) -> np.ndarray:
    """Signed change along the last axis of a hue series (turns), the shorter way each step."""
    d = np.diff(series, axis=-1)
    return ((d + 0.5) % 1.0 - 0.5).sum(axis=-1)


def _row_props(p: dict[str, np.ndarray], present: np.ndarray,
               single: np.ndarray) -> dict[str, np.ndarray]:
    """Signed first -> last change per row of one object's properties ([..., rows, steps] arrays:
    any number of traversals at once).

    ``present``: the object is there, per frame; ``single``: per row, it is one object at both
    ends (the outline of several objects taken together is no shape).
    """
    ok = present[..., 0] & present[..., -1]
    first, last = (..., 0), (..., -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "x": p["x"][last] - p["x"][first],
            "y": p["y"][last] - p["y"][first],
            "scale": 2.0 * np.log(p["extent"][last] / p["extent"][first]),
            "saturation": p["saturation"][last] - p["saturation"][first],
            "brightness": p["brightness"][last] - p["brightness"][first],
            "corners": p["corners"][last] - p["corners"][first],
            "aspect": np.log(p["aspect"][last] / p["aspect"][first]),
            "thickness": (np.log(p["width"][last] / p["width"][first])
                          - np.log(p["extent"][last] / p["extent"][first])),
        }
        oriented = (p["anisotropy"] >= MIN_ANISOTROPY).all(axis=-1)
        d = np.diff(p["doubled_angle"], axis=-1)
        rot = np.degrees(((d + np.pi) % (2 * np.pi) - np.pi).sum(axis=-1)) / 2.0
        out["rotation"] = np.where(oriented, rot, 0.0)
        has_hue = (p["brightness"] >= MIN_VALUE) & (p["saturation"] >= MIN_SATURATION)
        lit = (p["brightness"] >= MIN_VALUE).all(axis=-1)
        out["saturation"] = np.where(lit, out["saturation"], 0.0)
        # The hue's path when every frame has one; else, when both ends have one, the shorter way
        # from the first colour to the last (a decoder often takes a new hue through a dull one,
        # and a viewer still reads "from blue to orange").
        out["hue"] = np.where(has_hue.all(axis=-1), _circular_change(p["hue"]),
                              np.where(has_hue[..., 0] & has_hue[..., -1],
                                       _circular_change(p["hue"][..., [0, -1]]), 0.0))
        # Strokes (a glyph) have a thickness but no corners or elongation worth naming; their
        # outline change is what is left when the glyph itself changes.
        slim = p["width"] / p["extent"]
        strokes = np.where(np.isfinite(slim), slim, np.inf).min(axis=-1) < STROKE
        outline = np.log(np.maximum(p["corners"][last], 1e-3) / np.maximum(p["corners"][first], 1e-3))
        out["outline"] = np.where(strokes, outline, 0.0)
        out["thickness"] = np.where(strokes, out["thickness"], 0.0)
        out["corners"] = np.where(strokes, 0.0, out["corners"])
        out["aspect"] = np.where(strokes, 0.0, out["aspect"])
        for key in ("corners", "aspect", "outline", "thickness", "rotation"):
            out[key] = np.where(single, out[key], 0.0)
    return {k: np.where(ok & np.isfinite(v), v, 0.0) for k, v in out.items()}


def row_median(values: np.ndarray) -> Any:
    """``np.median`` along the last axis (the rows of a traversal; of every traversal at once),
    the same values (the middle element, or the mean of the middle two in the array's dtype; NaN
    when any is NaN) without its general machinery, which costs several times more than the work
    on a few rows. A 1-D array gives a scalar, as numpy's does."""
    a = np.asarray(values)
    if a.ndim == 0 or a.shape[-1] == 0 or a.dtype.kind != "f":  # integers, empty: numpy's own
        return np.median(a, axis=-1)
    a = np.sort(a, axis=-1)
    n = a.shape[-1]
    middle = a[..., n // 2] if n % 2 else (a[..., n // 2 - 1] + a[..., n // 2]) / 2
    return np.where(np.isnan(a[..., -1]), a[..., -1], middle)[()]  # sort puts NaN last


def row_mean(values: np.ndarray) -> Any:
    """``np.mean`` along the last axis, the same values (numpy's sum of each row, divided by the
    count as numpy does); see :func:`row_median`."""
    a = np.asarray(values)
    kind = a.dtype.kind
    if a.ndim == 0 or a.shape[-1] == 0 or kind not in "bfc" or a.dtype == np.float16:
        return a.mean(axis=-1)
    # Each row summed whole, as numpy sums a 1-D array (its pairwise order): the same value
    # whether a traversal is measured alone or beside others.
    total = np.add.reduce(np.ascontiguousarray(a), axis=-1,
                          dtype=np.float64 if kind == "b" else None)
    return np.asarray(total / np.intp(a.shape[-1])).astype(total.dtype)[()]


def summarise_rows(per_row: np.ndarray, series: np.ndarray, notable: float, *,
                   circular: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(score, agreement, start, end) of each traversal's change in one property, from its
    signed change per row (``per_row`` [T, rows]) and its values (``series`` [T, rows, steps]):
    the median |change| over rows / ``notable``; the fraction of rows whose change has the
    median's sign (0 when the median is 0); the mean over rows at the first and last frame
    (circular for a hue in turns)."""
    median = row_median(per_row)
    score = row_median(np.abs(per_row)) / notable
    agreement = np.where(median != 0, row_mean(np.sign(per_row) == np.sign(median)[:, None]), 0.0)
    if circular:
        ang = 2 * np.pi * series
        start = np.angle(row_mean(np.exp(1j * ang[..., 0]))) / (2 * np.pi) % 1.0
        end = np.angle(row_mean(np.exp(1j * ang[..., -1]))) / (2 * np.pi) % 1.0
    else:
        start, end = row_mean(series[..., 0]), row_mean(series[..., -1])
    return score, agreement, start, end


Changes = list[RegionChange | None]  # one per traversal: the change, or None (not kept)


def _summarise(part: str | Sequence[str], role: str, prop: str, per_row: np.ndarray,
               series: np.ndarray, names: np.ndarray | None = None) -> Changes:
    """Each traversal's change (``per_row`` [T, rows], ``series`` and ``names`` [T, rows,
    steps]; ``part`` one name, or one per traversal), or None where no row moves it by
    KEPT_SCORE of its notable amount (the record is written per latent; a change left out
    reads as "did not move")."""
    notable, unit = NOTABLE[prop]
    out: Changes = [None] * len(per_row)
    kept = np.flatnonzero(np.abs(per_row).max(axis=-1, initial=0.0) >= KEPT_SCORE * notable)
    if not len(kept):
        return out
    per_row = per_row[kept]
    series = series[kept]
    score, agreement, s0, s1 = summarise_rows(per_row, np.where(np.isfinite(series), series, 0.0),
                                              notable, circular=prop == "hue")
    start_names = names[kept, :, 0].tolist() if names is not None else None
    end_names = names[kept, :, -1].tolist() if names is not None else None
    for k, (t, rows, a, b, sc, ag) in enumerate(zip(kept.tolist(), per_row.tolist(), s0.tolist(),
                                                    s1.tolist(), score.tolist(), agreement.tolist(),
                                                    strict=True)):
        out[t] = RegionChange(part if isinstance(part, str) else part[t], role, prop, unit, a, b,
                              tuple(rows), sc, ag,
                              tuple(start_names[k]) if start_names is not None else (),
                              tuple(end_names[k]) if end_names is not None else ())
    return out


def _object_changes(part: str, p: dict[str, np.ndarray], present: np.ndarray, single: np.ndarray,
                    props: tuple[str, ...]) -> list[Changes]:
    """One object's changes, per property of ``props``, of every traversal."""
    changes = _row_props(p, present, single)
    hue_names = _hue_names(p["hue"])
    shapes = shape_names(p["aspect"], p["corners"])
    series = {"scale": p["area"], "rotation": np.degrees(p["doubled_angle"]) / 2.0,
              "thickness": p["width"], "outline": p["corners"]}
    return [_summarise(part, "object", prop, changes[prop],
                       series.get(prop, p.get(prop, p["x"])),
                       hue_names if prop == "hue" else shapes) for prop in props]


def _colour_changes(colour: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, ...]:
    """A background's colour change per row (RGB distance, 0 where the background is not flat
    in every frame), its hue, and the hue's names where every frame of the row has one
    (``colour`` [T, rows, steps, 3], ``flat`` [T, rows, steps])."""
    # A background's colour is one thing to a viewer: hue, vividness and brightness together
    # (a decoder often paints a new hue partly as a darker or paler one). Named by hue where
    # both ends have one.
    hue, sat, val = rgb_to_hsv(colour)
    named = np.all((val >= MIN_VALUE) & (sat >= MIN_SATURATION), axis=-1)
    names = np.where(named[..., None], _hue_names(hue), "")
    distance = np.sqrt(((colour[..., -1, :] - colour[..., 0, :]) ** 2).sum(axis=-1))
    return np.where(flat.all(axis=-1), distance, 0.0), hue, names


OBJECT_PROPERTIES = ("x", "y", "scale", "rotation", "hue", "saturation", "brightness", "corners",
                     "aspect", "thickness", "outline")
EACH_PROPERTIES = ("x", "y", "scale", "hue", "brightness")


def traversal_changes(scene: Scene, rows: int, steps: int) -> list[tuple[RegionChange, ...]]:
    """Every part's property changes, highest score first (those that move in some row by at
    least KEPT_SCORE of their notable amount), of each traversal whose frames the scene holds
    (traversal after traversal, each ordered [rows, steps]). Every traversal is measured at once,
    property by property, and gets the values it would get alone."""
    n_traversals = len(scene.count) // (rows * steps)

    def grid(a: np.ndarray) -> np.ndarray:
        return a.reshape(n_traversals, rows, steps, *a.shape[1:])

    found: list[list[RegionChange]] = [[] for _ in range(n_traversals)]

    def add(changes: Changes, which: Sequence[int] | None = None) -> None:
        for t, c in zip(range(n_traversals) if which is None else which, changes, strict=True):
            if c is not None:
                found[t].append(c)

    count = grid(scene.count)
    present = count > 0
    obj = {k: grid(v) for k, v in scene.obj.items()}
    single = (count[..., 0] == 1) & (count[..., -1] == 1)
    for changes in _object_changes("object", obj, present, single, OBJECT_PROPERTIES):
        add(changes)
    # A count changes when both ends hold steady (two frames each): a blurry blob that splits
    # for one frame is no new object.
    steady = (count[..., :2].min(axis=-1) == count[..., :2].max(axis=-1)) & (
        count[..., -2:].min(axis=-1) == count[..., -2:].max(axis=-1))
    add(_summarise("objects", "object", "count",
                   np.where(steady, count[..., -1] - count[..., 0], 0).astype(float),
                   count.astype(float), count.astype(str)))

    # Several objects, the same number in every frame: each one by its place, left to right.
    fewest, most = count.min(axis=(1, 2)), count.max(axis=(1, 2))
    for n, places in PLACES.items():
        which = np.flatnonzero((fewest == n) & (most == n))
        if not len(which):
            continue
        for k, place in enumerate(places):
            p = {key: grid(v[:, k])[which] for key, v in scene.each.items()}
            for changes in _object_changes(f"{place} object", p, present[which], single[which],
                                           EACH_PROPERTIES):
                add(changes, which.tolist())

    # Two background regions (a wall over a floor, and the horizon between them) where most
    # frames have two; else one background.
    two_tone = grid(scene.two_tone).reshape(n_traversals, -1).mean(axis=1) >= 0.5
    flat = grid(scene.flat)
    distance, hue, names = _colour_changes(grid(scene.upper_rgb), flat)
    add(_summarise(["wall" if t else "background" for t in two_tone.tolist()], "background",
                   "colour", distance, hue, names))
    which = np.flatnonzero(two_tone)
    if len(which):
        distance, hue, names = _colour_changes(grid(scene.lower_rgb)[which], flat[which])
        add(_summarise("floor", "background", "colour", distance, hue, names), which.tolist())
        tilt = grid(scene.tilt)[which]
        change = np.where(np.isfinite(tilt[..., 0]) & np.isfinite(tilt[..., -1]),
                          tilt[..., -1] - tilt[..., 0], 0.0)
        add(_summarise("scene", "scene", "tilt", change, tilt), which.tolist())
    return [tuple(sorted(kept, key=lambda c: -c.score)) for kept in found]
