"""Learning-rate schedules and the weight-decay window, as functions of the (fractional) epoch."""

from __future__ import annotations

import bisect

from ddl.config import TrainConfig


def learning_rate(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """α at ``step``: constant or step decay at ``lr_milestones``, with an optional linear warm-up."""
    epoch = step / steps_per_epoch
    lr = cfg.lr
    if cfg.lr_schedule == "step":
        lr *= cfg.lr_gamma ** bisect.bisect_right(sorted(cfg.lr_milestones), epoch)
    warm = cfg.warmup_epochs * steps_per_epoch
    if warm > 0 and step < warm:
        lr *= (step + 1) / warm
    return lr


def weight_decay(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    if cfg.wd_stop_epoch is not None and step // steps_per_epoch >= cfg.wd_stop_epoch:
        return 0.0
    return cfg.weight_decay
