"""What a long computation needs from whoever runs it, in one object (issue 20).

A core function that streams a stack takes ``run: Run`` instead of separate ``mb=``, ``max_bytes=``,
``progress=`` and ``should_stop=`` arguments. The Processing layer builds one from its feedback
(``processing.base.DeformationAlgorithm.run_context``), the worker from its protocol, a script or a
test with ``Run()`` (default budget, silent, never cancelled).

- the memory budget: ``run.budget_mb`` and the byte arithmetic of ``core.budget`` bound to it
  (``run.working_bytes(copies)``...), so no caller repeats it;
- progress on one scale, 0 to 1, with an optional stage message: ``run.progress(0.4, "reading")``;
  ``run.stage(0.2, 0.9)`` is a Run whose 0..1 maps onto 0.2..0.9 of its parent;
- cancellation, one mechanism: ``run.check_cancelled()`` raises ``core.errors.Cancelled``;
- the log: ``run.log`` (the ``deformation_forecast`` logger, whose warnings reach the user).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import budget
from .errors import Cancelled

# receives (fraction of the whole run 0..1, or None for a message alone; message or None)
Report = Callable[[float | None, str | None], None]

LOG = logging.getLogger("deformation_forecast")


def _silent(fraction: float | None, message: str | None = None) -> None:
    return None


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Run:
    """Budget, progress, cancellation and log of one computation (see the module docstring)."""

    budget_mb: float | None = None  # None or 0: core.budget's default (variable, else 2048 MB)
    report: Report = _silent
    cancelled: Callable[[], bool] = _never
    log: logging.Logger = field(default=LOG, compare=False)
    start: float = 0.0  # this Run's 0..1 maps onto start..end of `report`'s scale
    end: float = 1.0

    # progress and cancellation -------------------------------------------------------------
    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report `fraction` (0..1) of this run's stage, with an optional message."""
        f = min(max(float(fraction), 0.0), 1.0)
        self.report(self.start + (self.end - self.start) * f, message)

    def message(self, text: str) -> None:
        """A stage message without moving the bar."""
        self.report(None, text)

    def stage(self, start: float, end: float) -> Run:
        """A Run whose progress 0..1 covers `start`..`end` of this one's."""
        span = self.end - self.start
        return replace(self, start=self.start + span * start, end=self.start + span * end)

    def is_cancelled(self) -> bool:
        return bool(self.cancelled())

    def check_cancelled(self) -> None:
        """Raise core.errors.Cancelled when the user cancelled."""
        if self.cancelled():
            raise Cancelled()

    # the memory budget -----------------------------------------------------------------------
    @property
    def mb(self) -> float:
        """The budget in MB, resolved (explicit value, else the variable, else the default)."""
        return budget.budget_mb(self.budget_mb)

    def budget_bytes(self) -> int:
        return budget.budget_bytes(self.budget_mb)

    def working_bytes(self, copies: float = 4.0) -> int:
        """Bytes one window of float32 pixels may take when `copies` arrays of its size live at once."""
        return budget.working_bytes(copies, self.budget_mb)

    def worker_pixel_bytes(self) -> int:
        return budget.worker_pixel_bytes(self.budget_mb)

    def gdal_cache_bytes(self) -> int:
        return budget.gdal_cache_bytes(self.budget_mb)


QUIET = Run()
