"""The strips in lexflow's description section: the most active latents get one, a line says
where the rest are, and when the description would not fit what the store keeps, strips go first
(the least active first) and the user's text is never touched."""

from __future__ import annotations

import re

from lexflow import names
from lexflow.record import (
    DESCRIPTION_MAX,
    DESCRIPTION_STRIPS,
    ExplainResult,
    LatentResult,
    description_section,
    drop_strips,
    merge_description,
    strips_note,
)

RUN = "0123456789abcdef0123456789abcdef"
STRIP = re.compile(r"!\[latent (\d+), activity rank (\d+)\]\(get-artifact\?path=lexflow%2Fstrips%2F"
                   r"latent_(\d+)\.png&run_uuid=" + RUN + r"\)")


def _result(n: int, text: str = "moves the object from left to right") -> ExplainResult:
    # activity (total change) peaks in the middle, so "most active" is not "first in the table"
    latents = tuple(
        LatentResult(index=i, label=names.latent_label(i, n), status="explained",
                     explanation=f"{text} ({i})", explainable=True, certainty=0.9, answers=(),
                     evidence={"total_change": float(n - abs(n // 2 - i))},
                     image=names.traversal_path(i, n), strip=names.strip_path(i, n),
                     animation=names.animation_path(i, n))
        for i in range(n))
    return ExplainResult(model_uri="models:/m/1", model_name="m", model_version="1", run_id=RUN,
                         explainer="measure", explainer_is_mllm=False, latent_dim=n, config={},
                         latents=latents, output_range=(0.0, 1.0))


def _shown(section: str) -> dict[int, int]:
    """latent -> activity rank of every strip in ``section``."""
    out = {}
    for m in STRIP.finditer(section):
        assert int(m.group(1)) == int(m.group(3))
        out[int(m.group(1))] = int(m.group(2))
    return out


def test_sixteen_latents_all_get_a_strip_and_no_note() -> None:
    section = description_section(_result(16))
    assert sorted(_shown(section)) == list(range(16))
    assert strips_note(RUN) not in section
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| latent"):
            assert line.count("![") <= 1 and "[grid](" in line  # one strip beside each explanation


def test_more_latents_than_fit_shows_the_most_active_and_says_where_the_rest_are() -> None:
    result = _result(40)
    section = description_section(result)
    shown = _shown(section)
    active = sorted(range(40), key=lambda i: (-result.latents[i].evidence["total_change"], i))
    assert set(shown) == set(active[:DESCRIPTION_STRIPS])
    assert sorted(shown.values()) == list(range(1, DESCRIPTION_STRIPS + 1))
    assert strips_note(RUN) in section
    assert f"`{names.STRIP_DIR}/`" in section and f"`{names.REPORT_FILE}`" in section
    assert section.count("\n| ") == 1 + 40  # the header, then every latent keeps its row


def test_drop_strips_fits_the_room_least_active_first() -> None:
    section = description_section(_result(16))
    assert drop_strips(section, len(section)) == section
    room = len(section) - 400
    fitted = drop_strips(section, room)
    assert len(fitted) <= room
    kept = _shown(fitted)
    assert 0 < len(kept) < 16
    assert sorted(kept.values()) == list(range(1, len(kept) + 1))  # the most active stay
    assert strips_note(RUN) in fitted and fitted.count("\n| ") == 1 + 16
    none = drop_strips(section, 10)  # not even the words fit: every strip is gone
    assert _shown(none) == {} and none.startswith(names.DESCRIPTION_BEGIN)


def test_description_never_exceeds_the_store_and_keeps_the_users_text() -> None:
    user = "Owner's notes. " * 200 + "\n\nLast line of the owner's text."  # ~3,000 characters
    for n in (16, 64, 512):
        section = description_section(_result(n, "changes the object's colour " * 4))
        merged = merge_description(user, section)
        assert len(merged) <= DESCRIPTION_MAX, (n, len(merged))
        assert merged.startswith(user.rstrip("\n"))  # the user's part, untouched
        own = merged[len(user.rstrip("\n")):]
        assert own.count(names.DESCRIPTION_BEGIN) == 1 and own.rstrip().endswith(names.DESCRIPTION_END)
        assert names.REPORT_FILE in own  # the rest is pointed to
        # a later run replaces the section in place, still within the limit
        again = merge_description(merged, description_section(_result(n)))
        assert len(again) <= DESCRIPTION_MAX and again.startswith(user.rstrip("\n"))


def test_strips_go_before_words_when_room_is_short() -> None:
    section = description_section(_result(16))
    user = "u" * (DESCRIPTION_MAX - len(section) + 300)  # 300 characters short
    merged = merge_description(user, section)
    assert len(merged) <= DESCRIPTION_MAX and merged.startswith(user)
    kept = _shown(merged)
    assert 0 < len(kept) < 16 and sorted(kept.values()) == list(range(1, len(kept) + 1))
    assert merged.count("\n| ") == 1 + 16 and merged.count("[grid](") == 16  # every row, every link
    assert strips_note(RUN) in merged
