"""Learning-rate schedules and the weight-decay window, as functions of the (fractional) epoch."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Protocol

SCHEDULES = ("constant", "step")


class ScheduleSettings(Protocol):
    """The fields of :class:`ddl.config.TrainConfig` the schedules read (the config names the schedules defined
    here, so this module does not import it)."""

    lr: float
    lr_schedule: str
    lr_milestones: Sequence[int]
    lr_gamma: float
    warmup_epochs: float
    weight_decay: float
    wd_stop_epoch: int | None


def learning_rate(cfg: ScheduleSettings, step: int, steps_per_epoch: int) -> float:
    """α at ``step``: constant or step decay at ``lr_milestones``, with an optional linear warm-up."""
    epoch = step / steps_per_epoch
    lr = cfg.lr
    if cfg.lr_schedule == "step":
        lr *= cfg.lr_gamma ** bisect.bisect_right(sorted(cfg.lr_milestones), epoch)
    warm = cfg.warmup_epochs * steps_per_epoch
    if warm > 0 and step < warm:
        lr *= (step + 1) / warm
    return lr


def weight_decay(cfg: ScheduleSettings, step: int, steps_per_epoch: int) -> float:
    if cfg.wd_stop_epoch is not None and step // steps_per_epoch >= cfg.wd_stop_epoch:
        return 0.0
    return cfg.weight_decay
