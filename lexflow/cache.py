"""An on-disk cache of explainer answers, so a rerun with nothing changed makes no calls.

One answer is one small JSON file, named by a hash of everything that changes the answer (the
explainer URI, where it is served from, the prompt text, the image bytes, the sample index and the
sampling options) and never of secrets: the API key is not part of any key or value. Each file is
written as soon as its answer arrives, atomically (a temporary file in the same directory, then
``os.replace``), so a run that is killed midway leaves only whole answers behind and the next run
asks only for the rest. Failed answers are never stored: a rerun retries exactly those.

Layout: ``<dir>/answers/<2 hex>/<64 hex>.json``. The directory is ``$LEXFLOW_CACHE_DIR``, else
``~/.cache/lexflow``; the explainer option ``cache`` overrides it, and ``cache=none`` disables it.

Size cap and eviction: the answers may take at most ``$LEXFLOW_CACHE_MAX_MB`` megabytes (default
256). Reading an answer marks it used (its modification time); when a process first writes to the
cache, and every 200 writes after that, the least recently used answers are deleted until the
cache is under 90% of the cap. Only ``.json`` answer files under ``answers/`` are ever deleted.
Provider text is cleaned (lexflow.sanitize) before it is stored: no key is ever in the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

ENV_CACHE_DIR = "LEXFLOW_CACHE_DIR"
ENV_CACHE_MAX_MB = "LEXFLOW_CACHE_MAX_MB"
DEFAULT_MAX_MB = 256.0
PRUNE_EVERY = 200  # writes between two size checks
DISABLED = ("none", "off", "false", "no", "")
CACHE_FORMAT = 1  # bump when the stored value's shape changes, so old entries are not misread


def default_dir() -> Path:
    """``$LEXFLOW_CACHE_DIR`` or ``~/.cache/lexflow`` (read at call time, so tests can set it)."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lexflow"


def _canonical(value: Any) -> Any:
    """JSON-able form of a key part; bytes become their SHA-256 (images are hashed, not stored)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"sha256": hashlib.sha256(bytes(value)).hexdigest()}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_digest(data: bytes) -> str:
    """The SHA-256 of an image's decoded pixels (mode, size and pixel bytes) for a PNG, else of
    its bytes: a cache key part that stays the same when lexflow encodes the same pixels
    differently (a faster zlib setting, another filter), so a new encoder never re-asks an
    answer the cache already holds. Memoised: every sample of a request keys the same images."""
    return _image_digest(bytes(data))


@lru_cache(maxsize=256)
def _image_digest(data: bytes) -> str:
    if data[:8] == _PNG_SIGNATURE:
        try:
            import io

            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                img.load()
                h = hashlib.sha256(f"png-pixels\0{img.mode}\0{img.size}\0".encode())
                h.update(img.tobytes())
                return h.hexdigest()
        except Exception:  # not a readable PNG after all: its bytes identify it
            pass
    return hashlib.sha256(data).hexdigest()


def cache_key(parts: Mapping[str, Any]) -> str:
    """A stable hex digest of ``parts`` (order of the mapping does not matter)."""
    text = json.dumps({"format": CACHE_FORMAT, **_canonical(parts)}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


class AnswerCache:
    """Get and put answers by key; a cache built with ``directory=None`` stores nothing.

    Attributes:
        directory: where answers live, or None when the cache is disabled.
        hits, writes: counters for this process (reported by dry runs and tests).
    """

    def __init__(self, directory: str | os.PathLike[str] | None,
                 max_bytes: int | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else None
        self.max_bytes = max_bytes if max_bytes is not None else _max_bytes_from_env()
        self.hits = 0
        self.writes = 0
        self.evicted = 0

    @classmethod
    def from_option(cls, value: str | None) -> AnswerCache:
        """The explainer option ``cache``: None = default directory, ``none`` = disabled."""
        if value is None or str(value).strip().lower() == "default":
            return cls(default_dir())
        if str(value).strip().lower() in DISABLED:
            return cls(None)
        return cls(value)

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def path(self, key: str) -> Path:
        if self.directory is None:
            raise RuntimeError("the cache is disabled")
        return self.directory / "answers" / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None when absent, disabled or unreadable (a corrupt entry is a miss)."""
        if self.directory is None:
            return None
        try:
            with open(self.path(key), encoding="utf-8") as f:
                value = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(value, dict):
            return None
        self.hits += 1
        with contextlib.suppress(OSError):  # mark it used: eviction removes the least recent
            os.utime(self.path(key))
        return value

    def contains(self, key: str) -> bool:
        return self.directory is not None and self.path(key).is_file()

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        """Write atomically; an unwritable cache never fails the run (the answer is still used)."""
        if self.directory is None:
            return
        target = self.path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=target.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(dict(value), f, ensure_ascii=False)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return
        if self.writes % PRUNE_EVERY == 0:
            self.prune()
        self.writes += 1

    def prune(self) -> int:
        """Delete the least recently used answers until the cache is under 90% of its cap;
        the number deleted. Errors (a file gone already, no permission) are skipped."""
        if self.directory is None:
            return 0
        files = []
        for path in (self.directory / "answers").glob("*/*.json"):
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in files)
        if total <= self.max_bytes:
            return 0
        removed = 0
        for _, size, path in sorted(files, key=lambda f: f[0]):
            if total <= 0.9 * self.max_bytes:
                break
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            removed += 1
        self.evicted += removed
        return removed


def _max_bytes_from_env() -> int:
    raw = os.environ.get(ENV_CACHE_MAX_MB, "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_MAX_MB
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(max(mb, 0.0) * 1_000_000) if mb == mb else int(DEFAULT_MAX_MB * 1_000_000)
