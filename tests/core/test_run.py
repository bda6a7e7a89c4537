"""core.run.Run: one object for budget, progress, cancellation and log."""

import pytest

from deformation_forecast.core import budget
from deformation_forecast.core.errors import Cancelled
from deformation_forecast.core.run import Run


def test_stages_map_onto_the_parent_scale():
    got = []
    run = Run(report=lambda f, m: got.append((f, m)))
    run.stage(0.5, 1.0).stage(0.5, 1.0).progress(0.5, "half of the last quarter")
    run.stage(0.2, 0.4).progress(2.0)  # clipped to the stage's end
    run.message("only a message")
    assert got == [(0.875, "half of the last quarter"), (pytest.approx(0.4), None), (None, "only a message")]


def test_cancel_raises_the_one_signal():
    flag = {"stop": False}
    run = Run(cancelled=lambda: flag["stop"])
    run.stage(0.1, 0.2).check_cancelled()
    flag["stop"] = True
    with pytest.raises(Cancelled):
        run.stage(0.1, 0.2).check_cancelled()


def test_budget_arithmetic_is_core_budget_bound_to_the_run():
    run = Run(budget_mb=512)
    assert run.mb == 512
    assert run.working_bytes(3) == budget.working_bytes(3, 512)
    assert run.working_bytes(3) < Run(budget_mb=4096).working_bytes(3)
    assert Run(budget_mb=10).mb == budget.MIN_MB
