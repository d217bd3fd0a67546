"""Whether a run trained: the one definition of a *failed* run that every finding, trend and regime-map verdict
uses (a report argues only from runs that trained; failed ones are named as failed, never averaged in).

A run failed when it

* has **no final evaluation** (no finite final test error),
* **diverged** (the trainer stopped it on a non-finite loss), or
* **collapsed**: it learned next to nothing — a final training loss ≥ ``COLLAPSED_LOSS_FRACTION`` × ln C (chance
  level) or a final test error ≥ ``CHANCE_ERROR_FRACTION`` × the chance error 1 − 1/C.

Every data set of :mod:`ddl.data` has C = 10 classes (chance: loss ln 10 ≈ 2.30, error 90 %), so a collapsed run
here has training loss ≥ 2.07 or test error ≥ 67.5 %.
"""

from __future__ import annotations

import math

from ddl.report.runs import RunData
from ddl.report.stats import run_numbers

CLASSES = 10
CHANCE_LOSS = math.log(CLASSES)
CHANCE_ERROR = 1.0 - 1.0 / CLASSES
COLLAPSED_LOSS_FRACTION = 0.9
CHANCE_ERROR_FRACTION = 0.75

NO_EVALUATION, DIVERGED, COLLAPSED = "no final evaluation", "diverged", "collapsed"
FAILURE_WORDS = f"{DIVERGED}, {COLLAPSED} (near-chance loss or error) or without a final evaluation"


def failure(run: RunData) -> str | None:
    """Why ``run`` failed (:data:`DIVERGED`, :data:`COLLAPSED`, :data:`NO_EVALUATION`), None when it trained."""
    if run.status == "diverged":
        return DIVERGED
    n = run_numbers(run)
    if not math.isfinite(n["test_err"]):
        return NO_EVALUATION
    if not math.isfinite(n["train_loss"]) or n["train_loss"] >= COLLAPSED_LOSS_FRACTION * CHANCE_LOSS \
            or n["test_err"] >= CHANCE_ERROR_FRACTION * CHANCE_ERROR:
        return COLLAPSED
    return None


def trained(run: RunData) -> bool:
    """Whether ``run`` trained (did not fail, :func:`failure`)."""
    return failure(run) is None
