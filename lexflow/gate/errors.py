"""What the gate reports as bad input (exit 2), below :class:`lexflow.errors.ConfigError`.

::

    ConfigError (lexflow.errors)
    └── GateInputError            the gate cannot judge this version with this policy (exit 2)
        ├── PolicyError           the policy file is missing, not YAML, or has unknown/bad keys
        ├── NotExplainedError     the version carries no lexflow tags: it was never explained
        ├── ForeignSchemaError    explanations.json is missing, unreadable or of another schema
        └── StaleExplanationError the tags point at an explanation of something else

A policy check that fails is not an error: it is the gate's verdict (exit 1).
"""

from __future__ import annotations

from lexflow.errors import ConfigError


class GateInputError(ConfigError):
    """The gate cannot judge the version (exit 2)."""


class PolicyError(GateInputError):
    """The policy file is missing, not YAML, or holds unknown keys or out-of-range values."""


class NotExplainedError(GateInputError):
    """The model version has no lexflow tags."""


class ForeignSchemaError(GateInputError):
    """The explanation document is missing or is not ``lexflow.explanations/1``."""


class StaleExplanationError(GateInputError):
    """The version's tags and the explanation they point at do not describe the same thing."""
