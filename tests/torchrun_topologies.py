"""Run by tests/test_torchrun.py under ``torchrun``: one process group, DPSGD trained on several topologies in
turn (one launch instead of one per topology), each rank's exchanged payload bytes written per run.

    torchrun --nproc-per-node K tests/torchrun_topologies.py OUT_DIR RUNS_JSON
"""

import json
import sys
from pathlib import Path

from ddl.config import TrainConfig
from ddl.drivers.torchrun import setup_torchrun
from ddl.loop.train import Trainer


def main(out: str, runs_json: str) -> None:
    runs = json.loads(runs_json)
    comm, device = setup_torchrun(runs[0]["learners"])
    try:
        for kw in runs:
            cfg = TrainConfig(**kw, backend="torchrun", out=str(Path(out) / kw["topology"]), progress=False)
            comm.traffic.reset()
            Trainer(cfg, comm=comm, device=device).run()
            sent = comm.traffic.snapshot()
            (Path(out) / f"traffic-{kw['topology']}-rank{comm.rank}.json").write_text(json.dumps(sent))
    finally:
        comm.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
