"""lexflow.stages.plan: which codes a traversal decodes."""

from __future__ import annotations

import numpy as np

from lexflow.config import ExplainConfig
from lexflow.stages.plan import TraversalPlan


def test_plan_sweeps_only_the_chosen_latent() -> None:
    plan = TraversalPlan.from_config(4, ExplainConfig(rows=3, steps=5, seed=7))
    z = plan.codes(2).reshape(3, 5, 4)
    assert np.allclose(z[:, :, 2], [-3, -1.5, 0, 1.5, 3])
    for other in (0, 1, 3):
        assert np.allclose(z[:, :, other], plan.base_codes[:, None, other])
    again = TraversalPlan.from_config(4, ExplainConfig(rows=3, steps=5, seed=7))
    assert np.array_equal(plan.base_codes, again.base_codes)


def test_comparison_row_clamps_the_partner() -> None:
    plan = TraversalPlan.from_config(4, ExplainConfig(rows=2, steps=5))
    z = plan.comparison_codes(0, 3).reshape(2, 5, 4)
    assert np.allclose(z[0, :, 3], plan.base_codes[0, 3])
    assert np.allclose(z[1, :, 3], plan.clamp_value(3))
    assert abs(plan.clamp_value(3) - plan.base_codes[0, 3]) > 1.0
