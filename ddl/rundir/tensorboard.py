"""TensorBoard event files of a run (``ddl train --tensorboard``): ``RUN_DIR/tensorboard/``, so runs and whole
sweeps open in the tool people already use (``tensorboard --logdir RUN_OR_SWEEP_DIR``).

The scalars are the ones the run's own logs hold, under three tag groups, against the training step:

* ``metrics/<key>``: every number of a ``metrics.jsonl`` record (losses, accuracies, consensus, learning rate,
  minibatch loss);
* ``time/wall_s`` and ``time/sim_time_s``: the record's wall time and its simulated wall clock (when the run
  has one);
* ``noise/<key>``: every number of a ``noise.jsonl`` record; a per-direction list (top eigenvalues, top-k shares)
  as ``noise/<key>/k`` for each direction k = 1…K and, for the shares, ``noise/<key>/sum`` (the share in the
  span of all K).

The JSONL logs stay the record the reports read; the event files are a view of them.  On resume the steps after
the checkpoint are written again into a new event file (TensorBoard shows the later value).
"""

from __future__ import annotations

import math
from pathlib import Path

SKIP = ("step", "epoch", "time", "sim_time_s")


class TensorBoardLog:
    """Writes a run's metrics and noise records as TensorBoard scalars (needs the ``tensorboard`` package:
    ``pip install 'ddl-duality[tensorboard]'``)."""

    def __init__(self, directory: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # a missing optional dependency is bad input for --tensorboard, not a bug
            from ddl.errors import ConfigError

            raise ConfigError("--tensorboard: the tensorboard package is not installed "
                              "(pip install 'ddl-duality[tensorboard]')") from None  # fmt: skip
        self.directory = Path(directory)
        self.writer = SummaryWriter(log_dir=str(self.directory))

    def _scalar(self, tag: str, value, step: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        self.writer.add_scalar(tag, float(value), step)

    def metrics(self, record: dict) -> None:
        step = int(record["step"])
        for k, v in record.items():
            if k not in SKIP:
                self._scalar(f"metrics/{k}", v, step)
        self._scalar("time/wall_s", record.get("time"), step)
        self._scalar("time/sim_time_s", record.get("sim_time_s"), step)
        self.writer.flush()

    def noise(self, record: dict) -> None:
        step = int(record["step"])
        for k, v in record.items():
            if k in SKIP:
                continue
            if isinstance(v, list):
                for i, x in enumerate(v):
                    self._scalar(f"noise/{k}/{i + 1}", x, step)
                if k.endswith("_share"):
                    self._scalar(f"noise/{k}/sum", sum(v), step)
            else:
                self._scalar(f"noise/{k}", v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
