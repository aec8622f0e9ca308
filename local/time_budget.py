"""Training to a wall-clock budget, and an ETA a person can trust.

A fixed step budget keeps a time promise only on the CPU it was tuned on (the demo's
33 x 250 steps took 15 minutes on one 2-core machine and 34 on another). With
``training.time_budget`` (``"14m"``, ``"1h30m"``, ``"900s"`` or seconds) the
:class:`TimeBudget` callback measures the real cost of a training step once the
compiled graph is built, and of a validation pass (two of its batches, timed then),
fixes the number of optimizer steps that fit in what is left of the budget, and hands
it to the module's learning-rate schedule, so a warm-up + cosine (or linear) schedule
completes on every machine instead of being cut off. The chosen number and the
measured rates are printed at once, kept in the checkpoints (a resumed run keeps its
schedule) and written to ``time_budget.json``; ``--set training.max_steps=N`` with
that number repeats the run without a budget.

``training.time_budget_scope: run`` makes the budget that of the whole ``./run.sh``
command, environment set-up included: run.sh passes its start time, training gets what
the stages before it left (less ``training.time_budget_after`` for the stages after it),
and :class:`TimeBudget` is given that deadline instead of a duration.

The step count is a forecast from one measurement; the budget is a promise. When the
machine slows down afterwards so that the next epoch would end past the budget (by more
than the reserve the plan keeps before it), training stops at the end of the epoch it is
in (its validation and checkpoint kept, the schedule cut short) and says so;
``time_budget.json`` records it under ``finished``.

Without a budget the same measurement only prints the ETA of the fixed step count.
The steps are fixed at step 55 (5 skipped, 50 measured: :func:`typical_step_s`): a warm-up
longer than that (the demo's is 200 steps) makes the whole schedule that of a fixed-step run of the same length;
with a shorter one, the steps before the decision follow the ``training.epochs`` cap.
The budget counts from the start of ``Trainer.fit`` (model compilation included);
the data set-up before it and the export after it take seconds.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl

log = logging.getLogger("local.time_budget")

def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return (f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s")


def steps_that_fit(remaining_s: float, step_s: float, val_epoch_s: float, steps_per_epoch: int) -> int:
    """Optimizer steps that fit in ``remaining_s``: each costs a step plus its share of the
    validation that runs every ``steps_per_epoch`` steps."""
    per_step = step_s + val_epoch_s / max(1, steps_per_epoch)
    return max(0, int(math.floor(remaining_s / per_step)))


def typical_step_s(durations: list[float]) -> float:
    """The mean step time, the outliers (over 3x the median: recompilations) left out.

    Not the median: the run's length is the sum of its steps, and the steps that log, redraw
    the progress bar or meet a garbage collection make the distribution skewed. Planned with
    the median, the demo's epochs ran 6-14% longer than planned and the budget stopped a run
    one epoch early.
    """
    median = sorted(durations)[len(durations) // 2]
    typical = [d for d in durations if d <= 3 * median]
    return sum(typical) / len(typical)


def _first_batch(loader):
    """A loader's first batch, read in this process from its data set (a loader's iterator would
    start its workers), or from the loader for an IterableDataset (no indexing)."""
    from torch.utils.data import IterableDataset

    if isinstance(loader.dataset, IterableDataset):
        return next(iter(loader))
    n = min(loader.batch_size or 1, len(loader.dataset))
    return loader.collate_fn([loader.dataset[i] for i in range(n)])


class TimeBudget(pl.Callback):
    """Measure the step rate after warm-up; fix ``max_steps`` from ``budget_s`` (or only report the ETA).

    Args:
        budget_s: the wall-clock budget of ``Trainer.fit`` in seconds, or None (ETA only).
        exp_dir: where ``time_budget.json`` is written (rank 0).
        skip_steps: steps not measured (the first ones compile the graph).
        measure_steps: steps timed to get the rate: the mean of their durations without the
            outliers (over 3 times the median: a step that recompiles, as torch.compile may in
            the first steps, or a moment of load), see :func:`typical_step_s`.
        reserve_s: kept back for the last checkpoint and what follows ``fit`` (at most 5% of the budget).
        deadline: instead of ``budget_s``, the wall-clock time (``time.time()``) by which ``fit`` must
            end; the budget is what is left of it when ``fit`` starts.
    """

    def __init__(self, budget_s: Optional[float], exp_dir: Path, skip_steps: int = 5, measure_steps: int = 50,
                 reserve_s: float = 10.0, deadline: Optional[float] = None):
        self.budget_s = budget_s
        self.deadline = deadline
        self.exp_dir = Path(exp_dir)
        self.skip_steps = skip_steps
        self.measure_steps = measure_steps
        self.reserve_s = reserve_s
        self.chosen: Optional[dict] = None  # the decision, restored from a checkpoint on resume
        self._fit_start = 0.0
        self._first_step_s: Optional[float] = None
        self._window_start: Optional[tuple[int, float]] = None
        self._step_times: list[float] = []  # durations of the measured steps
        self._last_end = 0.0
        self._reported = False
        self._epoch_end = 0.0  # when the last training epoch ended (or fit started)
        self._stopped_early: Optional[dict] = None
        self._epoch_times: list[float] = []  # whole epochs that ended before the decision

    # -- what a checkpoint keeps: a resumed run keeps the number of steps it chose
    def state_dict(self) -> dict:
        return {"chosen": self.chosen}

    def load_state_dict(self, state_dict: dict) -> None:
        self.chosen = state_dict.get("chosen")

    # -- timing
    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit_start = self._epoch_end = time.perf_counter()
        if self.deadline is not None:  # at least a second: a budget is never "none"
            self.budget_s = max(1.0, self.deadline - time.time())

    def on_train_start(self, trainer, pl_module) -> None:
        if self.chosen is not None:  # resumed: the schedule was fixed before the interruption
            self._apply(trainer, pl_module, self.chosen["max_steps"], self.chosen["steps_per_epoch"])
            log.info("time budget: resuming the run's %d-step schedule (chosen at %.2f steps/s)",
                     self.chosen["max_steps"], self.chosen["steps_per_s"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.chosen is not None or self._reported or trainer.sanity_checking:
            return
        step, now = trainer.global_step, time.perf_counter()
        if self._first_step_s is None and step >= 1:
            self._first_step_s = now - self._fit_start
        if self._window_start is not None:
            self._step_times.append(now - self._last_end)
        self._last_end = now
        if step == self.skip_steps and self._window_start is None:
            self._window_start = (step, now)
        if self._window_start and step >= self._window_start[0] + self.measure_steps:
            self._decide(trainer, pl_module, step, now)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Stop here when the next epoch, as long as this one, would end past the budget (and its reserve)."""
        now = time.perf_counter()
        epoch_s, self._epoch_end = now - self._epoch_end, now
        if self.chosen is None:
            self._epoch_times.append(epoch_s)  # epochs shorter than the measurement count in the plan
        if self.chosen is None or self.budget_s is None or trainer.should_stop:
            return
        elapsed = now - self._fit_start
        # The plan ends a reserve before the budget; an epoch that ends within the reserve after it
        # is still kept (on the slowest day measured the demo's last epoch would have ended 3 s past it).
        spent = (elapsed + epoch_s > self.budget_s + self._reserve()
                 and trainer.global_step < self.chosen["max_steps"])
        # Every DDP rank stops at the same epoch: any rank's clock that says so stops them all.
        if not trainer.strategy.reduce_boolean_decision(bool(spent), all=False):
            return
        trainer.should_stop = True
        self._stopped_early = {"global_step": int(trainer.global_step), "elapsed_s": elapsed,
                               "epoch_s": epoch_s, "planned_epoch_s": self._planned_epoch_s()}
        log.warning("time budget: the last epoch took %.0f s (%.0f s were planned): another one would end "
                    "past the %s budget, so training stops after step %d of the %d chosen; the "
                    "learning-rate schedule is cut short (this machine ran slower than when it was measured)",
                    epoch_s, self._stopped_early["planned_epoch_s"], format_duration(self.budget_s),
                    trainer.global_step, self.chosen["max_steps"])

    def _reserve(self) -> float:
        return min(self.reserve_s, 0.05 * self.budget_s)

    def _planned_epoch_s(self) -> float:
        c = self.chosen
        return c["steps_per_epoch"] * c["step_s"] + c["validation_s"]

    def on_train_end(self, trainer, pl_module) -> None:
        """Record where the run ended, beside the decision: steps, learning rate, wall time."""
        if self.chosen is None or not trainer.is_global_zero:
            return
        from local.stage_state import atomic_write_text

        self.chosen["finished"] = {"global_step": int(trainer.global_step),
                                   "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
                                   "fit_s": time.perf_counter() - self._fit_start,
                                   "stopped_early": self._stopped_early}
        atomic_write_text(self.exp_dir / "time_budget.json", json.dumps(self.chosen, indent=2))

    # -- the decision
    @staticmethod
    def _validation_epoch_s(trainer, pl_module) -> float:
        """What a validation pass will cost: the faster of two reads (:func:`_first_batch`) and
        forwards of its first batch (eval mode, no gradients, the run's precision), times its
        batches, timed here with the step rate. Not from Lightning's sanity check, when the
        machine is still busy with what came before (a fresh clone's demo: the data preparation's writes going to disk, the
        compiler starting): there its batches took 118-150 ms (2026-12-05 and -06), the passes in
        training 77 ms a batch, and the plan counted 2.2-2.8 s for 1.5-s passes, 14-25 s of the
        demo's budget left unused."""
        loader = getattr(trainer, "val_dataloaders", None)
        loader = loader[0] if isinstance(loader, (list, tuple)) and loader else loader
        n_batches = sum(int(n) for n in trainer.num_val_batches) if getattr(trainer, "num_val_batches", None) else 0
        if loader is None or not n_batches:
            return 0.0
        import torch

        was_training = pl_module.training
        pl_module.eval()
        times = []
        try:
            with torch.no_grad(), trainer.precision_plugin.val_step_context():
                for _ in range(2):
                    t0 = time.perf_counter()
                    batch = trainer.strategy.batch_to_device(_first_batch(loader))
                    out = pl_module(batch[0])
                    if out.is_cuda:
                        torch.cuda.synchronize(out.device)
                    times.append(time.perf_counter() - t0)
        finally:
            pl_module.train(was_training)
        return min(times) * n_batches

    def _decide(self, trainer, pl_module, step: int, now: float) -> None:
        start_step, _ = self._window_start
        step_s = typical_step_s(self._step_times)
        accumulate = max(1, trainer.accumulate_grad_batches)
        steps_per_epoch = max(1, int(trainer.num_training_batches) // accumulate)
        val_epoch_s = self._validation_epoch_s(trainer, pl_module)
        elapsed = now - self._fit_start
        fixed = trainer.max_steps if trainer.max_steps > 0 else steps_per_epoch * trainer.max_epochs
        per_step = step_s + val_epoch_s / steps_per_epoch
        # Epochs that ended during the measurement (short ones) tell what an epoch really costs,
        # its validation, checkpoint and loader start included; the first one also compiled.
        if len(self._epoch_times) > 1:
            per_step = max(per_step, sum(self._epoch_times[1:]) / (len(self._epoch_times) - 1) / steps_per_epoch)
        if self.budget_s is None:  # a fixed step count: only say how long it will take
            max_steps = fixed
        else:
            remaining_budget = self.budget_s - elapsed - self._reserve()
            max_steps = step + steps_that_fit(remaining_budget, per_step, 0.0, steps_per_epoch)
            # Whole epochs: the run ends on a validation and its checkpoint, as fixed-epoch runs do
            # (at least the epoch under way when the budget is already spent).
            max_steps = max(max_steps - max_steps % steps_per_epoch, -(-(step + 1) // steps_per_epoch) * steps_per_epoch)
            if max_steps > fixed:
                log.warning("time budget: %d steps would fit, but training.epochs x batches allows %d; "
                            "raise training.epochs to use the whole budget", max_steps, fixed)
                max_steps = fixed
        remaining = (max_steps - step) * per_step
        decision = {
            "budget_s": self.budget_s, "max_steps": int(max_steps), "steps_per_s": 1.0 / step_s,
            "step_s": step_s, "validation_s": val_epoch_s, "steps_per_epoch": steps_per_epoch,
            "first_step_s": self._first_step_s, "measured_steps": [start_step, step],
            "elapsed_at_decision_s": elapsed, "expected_total_s": elapsed + remaining,
            "deadline": self.deadline,  # with a whole-run budget: the time.time() by which fit was to end
        }
        decision = trainer.strategy.broadcast(decision, src=0)  # every rank runs rank 0's number
        if self.budget_s is not None:
            self.chosen = decision
            self._apply(trainer, pl_module, decision["max_steps"], decision["steps_per_epoch"])
        else:
            self._reported = True  # ETA only: said once
        self._report(trainer, decision)

    @staticmethod
    def _apply(trainer, pl_module, max_steps: int, steps_per_epoch: int) -> None:
        # Whole epochs end the run through max_epochs, as a fixed-epoch run ends: stopped by
        # max_steps instead, Lightning 2.6 skips the last epoch's checkpoint.
        if max_steps % steps_per_epoch == 0:
            trainer.fit_loop.max_epochs = max_steps // steps_per_epoch
        else:
            trainer.fit_loop.epoch_loop.max_steps = int(max_steps)
        pl_module.set_total_steps(int(max_steps))

    def _report(self, trainer, d: dict) -> None:
        eta = time.strftime("%H:%M", time.localtime(time.time() + d["expected_total_s"] - d["elapsed_at_decision_s"]))
        first = f"the first step took {d['first_step_s']:.0f} s (compilation), " if d["first_step_s"] else ""
        aim = (f"time budget {format_duration(d['budget_s'])}: training for {d['max_steps']} steps, the whole "
               f"learning-rate schedule over them" if d["budget_s"] else f"training for {d['max_steps']} steps")
        replay = (f"training.epochs={d['max_steps'] // d['steps_per_epoch']}"
                  if d["max_steps"] % d["steps_per_epoch"] == 0 else f"training.max_steps={d['max_steps']}")
        d["replay"] = f"--set training.time_budget=null --set {replay}" if d["budget_s"] else None
        log.info("%s; measured %.2f steps/s on this machine (%sa validation pass %.1f s every %d steps): "
                 "about %s in all, done at about %s%s", aim, d["steps_per_s"], first, d["validation_s"],
                 d["steps_per_epoch"], format_duration(d["expected_total_s"]), eta,
                 f" (replay exactly with {d['replay']})" if d["replay"] else "")
        if trainer.is_global_zero:
            from local.stage_state import atomic_write_text

            atomic_write_text(self.exp_dir / "time_budget.json", json.dumps(d, indent=2))
