"""What the diff reports as bad input (exit 2), below :class:`lexflow.errors.ConfigError`.

::

    ConfigError (lexflow.errors)
    └── DiffInputError           the two versions cannot be compared as asked (exit 2)
        └── NotExplainedError    a version has no finished explanation (names `lexflow explain`)

A missing model, version or alias is a :class:`lexflow.errors.ModelNotFoundError` (exit 2),
which lists what exists.
"""

from __future__ import annotations

from lexflow.errors import ConfigError


class DiffInputError(ConfigError):
    """The diff cannot compare these versions (exit 2)."""


class NotExplainedError(DiffInputError):
    """A version was never explained, or its explanation run did not finish."""
