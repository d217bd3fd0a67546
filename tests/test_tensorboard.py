"""``ddl train --tensorboard``: event files under the run directory with the metrics, noise and clock scalars,
equal to the run's JSONL logs (read back with TensorBoard's own EventAccumulator)."""

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")  # an optional extra: `make test` installs it, so there the test always runs


def test_tensorboard_event_files_hold_the_logs(small_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ddl.loop.train import train

    res = train(small_cfg(algo="dpsgd", learners=4, batch_size=10, epochs=2, measure_noise=4, noise_samples=100,
                          tensorboard=True, clock=True))
    out = Path(res.out)
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no event file under RUN_DIR/tensorboard"
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"metrics/train_loss", "metrics/test_acc", "metrics/consensus", "time/wall_s", "time/sim_time_s",
            "noise/ssgd_noise_sq", "noise/dpsgd_noise_sq", "noise/sharpness", "noise/eta_top_share/sum",
            "noise/top_eigenvalues/1"} <= tags  # fmt: skip
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    got = [(e.step, e.value) for e in acc.Scalars("metrics/train_loss")]
    assert got == [(m["step"], pytest.approx(m["train_loss"], rel=1e-6)) for m in metrics]
    sim = [(e.step, e.value) for e in acc.Scalars("time/sim_time_s")]
    assert sim == [(m["step"], pytest.approx(m["sim_time_s"], rel=1e-6)) for m in metrics]
    noise = [json.loads(x) for x in (out / "noise.jsonl").read_text().splitlines()]
    eta = [(e.step, e.value) for e in acc.Scalars("noise/eta_top_share/sum")]
    assert eta == [(r["step"], pytest.approx(sum(r["eta_top_share"]), rel=1e-6, abs=1e-12)) for r in noise]
    assert len(noise) >= 3 and all(math.isfinite(v) for _, v in eta)


def test_without_the_flag_no_event_files(small_cfg):
    from ddl.loop.train import train

    res = train(small_cfg(learners=2, batch_size=10))
    assert not (Path(res.out) / "tensorboard").exists()
