"""The suite keeps out of the user's home: answers are cached in a throwaway directory."""

from __future__ import annotations

import os
from pathlib import Path


def test_answer_cache_is_a_throwaway_directory(_answer_cache: Path) -> None:
    from lexflow.cache import default_dir

    assert os.environ["LEXFLOW_CACHE_DIR"] == str(_answer_cache)
    assert Path(default_dir()) == _answer_cache
    assert not Path(default_dir()).resolve().is_relative_to(Path.home() / ".cache")
