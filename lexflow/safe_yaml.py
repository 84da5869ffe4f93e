"""YAML from files a user or a colleague wrote (policies, calibration files, prompt biases), read
without aliases.

An alias (``*name``) repeats an anchored node; nine levels of nine aliases turn a 554-byte file
into 9^9 strings (the "billion laughs"), which exhausts memory while the file is read or while a
message quotes it. None of lexflow's files needs an alias, so they are refused with a message
naming the line, and the node count of a file is then bounded by its size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lexflow.errors import ConfigError


def _loader() -> type:
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, "aliases (*name) are not allowed in lexflow's YAML files", mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def load_yaml(data: bytes | str, source: str, error: type[ConfigError] = ConfigError) -> Any:
    """The document in ``data``; ``error`` (exit 2) for invalid YAML, an alias or bad encoding."""
    import yaml

    try:
        return yaml.load(data, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        text = str(exc)
        raise error(f"{source} is not valid YAML for lexflow (UTF-8, no aliases): "
                    f"{text[:400]}") from None


def read_yaml(path: str | Path, what: str, error: type[ConfigError] = ConfigError) -> Any:
    """Read and parse the YAML file ``path`` (``what`` names it in messages)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise error(f"Could not read the {what} {str(p)!r}: {exc.strerror or exc}.") from exc
    return load_yaml(raw, f"The {what} {str(p)!r}", error)
