"""training.time_budget: the step count is fixed from the measured rate and the schedule completes."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from local.config import ConfigError, load_config, parse_duration
from local.system import WarmupDecay
from local.time_budget import TimeBudget, format_duration, steps_that_fit, typical_step_s

REPO = Path(__file__).resolve().parents[1]
MICRO = str(REPO / "tests" / "conf" / "micro.yml")


@pytest.mark.parametrize("text,seconds", [("14m", 840), ("1h30m", 5400), ("90s", 90), ("2m30s", 150),
                                          (600, 600), (12.5, 12.5), ("1.5h", 5400), (None, None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "14 minutes", "-5m", 0, True])
def test_bad_durations_name_the_key(tmp_path, bad):
    with pytest.raises(ConfigError, match="training.time_budget"):
        load_config(MICRO, [f"training.time_budget={json.dumps(bad) if not isinstance(bad, str) else bad}"])


def test_budget_and_a_fixed_step_count_exclude_each_other():
    with pytest.raises(ConfigError, match="set one"):
        load_config(MICRO, ["training.time_budget=5m", "training.max_steps=100"])
    with pytest.raises(ConfigError, match="plateau"):
        load_config(MICRO, ["training.time_budget=5m", "scheduler.name=plateau"])


def test_steps_that_fit_count_validation_too():
    # 100 s left, 0.1 s a step, a 5 s validation every 50 steps: 0.2 s per step in all
    assert steps_that_fit(100.0, 0.1, 5.0, 50) == 500
    assert steps_that_fit(-1.0, 0.1, 0.0, 50) == 0
    assert format_duration(839.6) == "14 min 00 s"


@pytest.mark.parametrize("shape", ["cosine", "linear"])
def test_the_decay_runs_from_the_warm_up_to_its_floor_over_the_steps_fixed_later(shape):
    schedule = WarmupDecay(warmup=10, floor=0.1, total_steps=1000, shape=shape)
    assert [schedule(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    schedule.total_steps = 110  # what a time budget does once it has measured the machine
    assert schedule(10) == pytest.approx(1.0) and schedule(110) == pytest.approx(0.1)
    assert schedule(500) == pytest.approx(0.1)  # past the end: the floor
    # halfway: a straight line is at the middle; the half cosine too, but it stays high longer
    assert schedule(60) == pytest.approx(0.55)
    assert schedule(35) == pytest.approx(0.1 + 0.9 * (0.75 if shape == "linear" else 0.5 * (1 + 2 ** -0.5)))


def test_the_step_time_is_the_mean_without_recompilations():
    # 0.1 s steps, every 10th logs (0.3 s), one recompiles (5 s): the run lasts the mean of the
    # ordinary steps, not their median (0.1 s), and the recompilation is not the run's rate
    durations = [0.3 if i % 10 == 0 else 0.1 for i in range(50)]
    durations[7] = 5.0
    assert typical_step_s(durations) == pytest.approx((45 * 0.1 + 5 * 0.3 - 0.1) / 49)


def _train(data, exp, *sets):
    cmd = [sys.executable, "-m", "local.train", "--conf", MICRO, "--data-dir", str(data), "--exp-dir", str(exp),
           "--no-progress-bar", *[a for s in sets for a in ("--set", s)]]
    res = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stderr


def _logged(exp) -> dict:
    """{step: learning rate at the start of each epoch} from the CSV log (LearningRateMonitor)."""
    import csv

    with open(exp / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    lrs = {int(r["step"]): round(float(r["lr-Adam"]), 12) for r in rows if r.get("lr-Adam")}
    last_step = max(int(r["step"]) for r in rows if r["step"])
    return {**lrs, last_step: None}


@pytest.fixture(scope="module")
def micro_corpus(tmp_path_factory):
    data = tmp_path_factory.mktemp("budget") / "data"
    subprocess.run([sys.executable, "-m", "egs.demo.prepare", "--out", str(data), "--nj", "1", "--quiet",
                    "--n-speakers", "4", "2", "2", "--utts-per-speaker", "3", "2", "2",
                    "--n-mixtures", "40", "4", "4"], cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return data


def test_a_tiny_budget_stops_on_schedule_and_records_its_steps(micro_corpus, tmp_path):
    exp = tmp_path / "budget"
    sets = ["training.time_budget=25s", "training.epochs=100000", "training.limit_train_batches=10",
            "scheduler.warmup_steps=2", "training.save_top_k=1"]
    log = _train(micro_corpus, exp, *sets)
    chosen = json.loads((exp / "time_budget.json").read_text())
    assert "time budget 25 s: training for" in log and "steps/s" in log  # said at once, with the ETA
    assert chosen["validation_s"] > 0  # the plan counts the validation passes too
    n = chosen["max_steps"]
    assert n > chosen["measured_steps"][1] and chosen["steps_per_s"] > 0
    chosen = json.loads((exp / "time_budget.json").read_text())  # rewritten when training ended
    step, lr = chosen["finished"]["global_step"], chosen["finished"]["lr"]
    conf = load_config(MICRO)
    assert step == n  # it stopped at the number it chose
    # last.ckpt is the last epoch's (local.callbacks.EveryEpochLastCheckpoint), not the best one's:
    # the micro model's validation loss stops improving well before the end of these ~50 epochs
    last = torch.load(exp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == n and last["epoch"] == n // 10 - 1
    # ... and its learning rate reached the end of the warm-up + cosine schedule over those steps
    assert lr == pytest.approx(conf["optim"]["lr"] * conf["scheduler"]["min_lr_ratio"], rel=0.05)
    # The same number of steps without a budget (the command it recorded) repeats the schedule exactly.
    assert chosen["replay"] == f"--set training.time_budget=null --set training.epochs={n // 10}"
    replay = tmp_path / "replay"
    _train(micro_corpus, replay, *sets, *chosen["replay"].replace("--set ", "").split())
    # Compared through the training logs (steps and the learning rate at every epoch start).
    # Before the decision the budgeted run's cosine ran over the epochs cap (local/time_budget.py).
    decided = chosen["measured_steps"][1]
    after = {step: lr for step, lr in _logged(exp).items() if step > decided}
    assert after and after == {step: lr for step, lr in _logged(replay).items() if step > decided}
    assert max(_logged(exp)) in (n - 1, n)  # Lightning logs the last step as n - 1 or n


def test_the_scope_of_a_budget_is_checked():
    with pytest.raises(ConfigError, match="time_budget_scope='stage' must be 'fit'"):
        load_config(MICRO, ["training.time_budget=5m", "training.time_budget_scope=stage"])
    with pytest.raises(ConfigError, match="time_budget_after.*needs training.time_budget_scope=run"):
        load_config(MICRO, ["training.time_budget=5m", "training.time_budget_after=1m"])
    with pytest.raises(ConfigError, match="time_budget_after='soon' is not a duration"):
        load_config(MICRO, ["training.time_budget=5m", "training.time_budget_scope=run",
                            "training.time_budget_after=soon"])


class _Clock:
    """time.perf_counter and time.time for local.time_budget, moved by hand."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        return self.now

    def time(self):
        return self.now


def _fake_trainer(global_step=0):
    from types import SimpleNamespace

    return SimpleNamespace(should_stop=False, global_step=global_step, sanity_checking=False, is_global_zero=True,
                           strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision))


class _SlowFirstForward(torch.nn.Module):
    """A model whose first forward takes 0.5 s (as the sanity check's batches did), the others 0.01 s."""

    def __init__(self):
        super().__init__()
        self.calls, self.modes = 0, []

    def forward(self, x):
        self.modes.append((self.training, torch.is_grad_enabled()))
        time.sleep(0.5 if self.calls == 0 else 0.01)
        self.calls += 1
        return x


def test_a_validation_pass_is_timed_on_two_batches_at_the_decision():
    """The plan's validation pass: the faster of two batches read and run when the steps are
    measured (eval mode, no gradients), times the pass's batches; the model is left training."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from torch.utils.data import DataLoader

    loader = DataLoader([(torch.zeros(4), torch.zeros(2, 4))] * 10, batch_size=3)
    trainer = SimpleNamespace(val_dataloaders=loader, num_val_batches=[4],
                              precision_plugin=SimpleNamespace(val_step_context=nullcontext),
                              strategy=SimpleNamespace(batch_to_device=lambda batch: batch))
    model = _SlowFirstForward().train()
    pass_s = TimeBudget._validation_epoch_s(trainer, model)
    assert 4 * 0.01 <= pass_s < 4 * 0.1  # the second batch's time, not the first's 0.5 s
    assert model.modes == [(False, False)] * 2 and model.training
    trainer.num_val_batches = [0]  # no validation (limit_val_batches=0): nothing to count
    assert TimeBudget._validation_epoch_s(trainer, model) == 0.0 and model.calls == 2

    class Stream(torch.utils.data.IterableDataset):  # no len(), no indexing: read through the loader
        def __iter__(self):
            return iter([(torch.zeros(4), torch.zeros(2, 4))] * 5)

    trainer.val_dataloaders, trainer.num_val_batches = [DataLoader(Stream(), batch_size=2)], [3]
    assert 3 * 0.01 <= TimeBudget._validation_epoch_s(trainer, model) < 3 * 0.1 and model.calls == 4


def test_a_deadline_is_the_budget_left_when_fit_starts(monkeypatch, tmp_path):
    import local.time_budget as tb

    clock = _Clock()
    monkeypatch.setattr(tb, "time", clock)
    budget = tb.TimeBudget(None, tmp_path, deadline=clock.now + 300.0)
    clock.now += 40.0  # the process started, read its data, built its model
    budget.on_fit_start(_fake_trainer(), None)
    assert budget.budget_s == pytest.approx(260.0)
    late = tb.TimeBudget(None, tmp_path, deadline=clock.now - 5.0)  # the stages before took it all
    late.on_fit_start(_fake_trainer(), None)
    assert late.budget_s == 1.0


def test_a_machine_that_slows_down_stops_at_the_epoch_that_keeps_the_budget(monkeypatch, tmp_path):
    import local.time_budget as tb

    clock = _Clock()
    monkeypatch.setattr(tb, "time", clock)
    budget = tb.TimeBudget(100.0, tmp_path)  # its reserve: 5 s (5% of the budget)
    trainer = _fake_trainer()
    budget.on_fit_start(trainer, None)
    # chosen: 10 epochs of 10 steps at 0.09 s + a 0.1 s validation, one second an epoch
    budget.chosen = {"max_steps": 100, "steps_per_epoch": 10, "step_s": 0.09, "validation_s": 0.1}
    # on plan, then slower: epochs end at 1, 31, 61 and 81 s; the next 20 s epoch would end at
    # 101 s, past the budget but within its reserve: kept
    for epoch, seconds in enumerate((1.0, 30.0, 30.0, 20.0), start=1):
        clock.now += seconds
        trainer.global_step = 10 * epoch
        budget.on_train_epoch_end(trainer, None)
        assert not trainer.should_stop, epoch
    clock.now += 20.0  # at 101 s another 20 s epoch would end at 121 s: stop now
    trainer.global_step = 50
    budget.on_train_epoch_end(trainer, None)
    assert trainer.should_stop
    assert budget._stopped_early["global_step"] == 50 and budget._stopped_early["planned_epoch_s"] == pytest.approx(1.0)
    # the last epoch of the plan never stops early (the run ends there anyway)
    on_time = tb.TimeBudget(100.0, tmp_path)
    on_time.on_fit_start(trainer := _fake_trainer(global_step=100), None)
    on_time.chosen = budget.chosen
    clock.now += 95.0
    on_time.on_train_epoch_end(trainer, None)
    assert not trainer.should_stop


def test_a_whole_run_budget_counts_from_the_start_of_the_command(micro_corpus, tmp_path):
    import time

    exp = tmp_path / "run_budget"
    cmd = [sys.executable, "-m", "local.train", "--conf", MICRO, "--data-dir", str(micro_corpus),
           "--exp-dir", str(exp), "--no-progress-bar", "--run-started", str(time.time() - 20.0), "--more-stages"]
    for s in ("training.time_budget=50s", "training.time_budget_scope=run", "training.time_budget_after=5s",
              "training.epochs=100000", "training.limit_train_batches=10", "scheduler.warmup_steps=2",
              "training.save_top_k=1"):
        cmd += ["--set", s]
    res = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    # begun 20 s before the process, plus the process's start-up (imports, data set-up)
    said = re.search(r"time budget: 50 s for the whole command, begun (\d+) s ago; training has (\d+) s of it, "
                     r"5 s kept for the stages after it", res.stderr)
    assert said and 20 <= int(said[1]) < 40 and int(said[1]) + int(said[2]) in (44, 45, 46), said[0]
    chosen = json.loads((exp / "time_budget.json").read_text())
    # 50 s less the 20 s before the command reached training and the 5 s kept after it, less the
    # process's own start-up before fit
    assert 0.0 < chosen["budget_s"] < 25.0, chosen["budget_s"]
    assert chosen["deadline"] == pytest.approx(float(cmd[cmd.index("--run-started") + 1]) + 45.0)
    assert chosen["finished"]["global_step"] == chosen["max_steps"]
