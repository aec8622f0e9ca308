"""The LightningModule: asteroid's ``System`` built from one recipe config.

asteroid's ``System`` holds model, optimizer, loss and scheduler; this subclass builds
all of them from the config (so a checkpoint rebuilds the run), reads data from a
DataModule, logs ``loss_step`` / ``loss_epoch`` / ``val_loss`` / ``skipped_batches``, skips
non-finite batches on every DDP rank together and compiles the training forward.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from typing import Optional

import torch
from asteroid.engine.system import System
from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.utilities import GradClipAlgorithmType
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from local.compile_cache import use_keyed_cache
from local.model import make_model

log = logging.getLogger("local.system")


class NonFiniteLossError(RuntimeError):
    """Too many consecutive training batches with a NaN/inf loss or gradient (the message says what to change)."""


def make_optimizer(params, optim_conf: dict, fused: bool = False) -> torch.optim.Optimizer:
    """Adam or AdamW from the ``optim`` section; ``fused``: torch's one-kernel implementation.

    The fused implementation also takes a device-side "skip this step" flag
    (:meth:`SeparationSystem.configure_gradient_clipping`).
    """
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optim_conf["optimizer"]]
    extra = {"fused": True} if fused else {}
    return cls(params, lr=optim_conf["lr"], weight_decay=optim_conf["weight_decay"], **extra)


class WarmupDecay:
    """``LambdaLR`` factor: linear warm-up over ``warmup`` steps, then a decay from 1 to ``floor``
    at ``total_steps``, a half cosine (``shape="cosine"``) or a straight line (``"linear"``).
    An object, not a closure: ``total_steps`` can be fixed once training has measured its
    speed (``training.time_budget``), and LambdaLR saves an object's attributes in its state
    dict, so a resumed run keeps the schedule it had."""

    def __init__(self, warmup: int, floor: float, total_steps: int, shape: str = "cosine"):
        self.warmup, self.floor, self.total_steps, self.shape = warmup, floor, total_steps, shape

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total_steps - self.warmup))
        left = 1 - progress if self.shape == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
        return self.floor + (1 - self.floor) * left


def make_scheduler(optimizer, sched_conf: dict, total_steps: int):
    """Paper schedule (halve on plateau) or warm-up + cosine or linear decay over a fixed step budget."""
    name = sched_conf["name"]
    if name == "none":
        return None
    if name == "plateau":
        return ReduceLROnPlateau(
            optimizer, mode="min", factor=sched_conf["factor"], patience=sched_conf["patience"]
        )
    schedule = WarmupDecay(sched_conf["warmup_steps"], sched_conf["min_lr_ratio"], total_steps, name)
    return {"scheduler": LambdaLR(optimizer, schedule), "interval": "step"}


def has_cxx_compiler() -> bool:
    """Whether torch.compile's code generator will find a C++ compiler (inductor needs one)."""
    return bool(os.environ.get("CXX")) or any(shutil.which(c) for c in ("g++", "clang++", "c++"))


class CompileError(RuntimeError):
    """torch.compile failed and ``training.compile_fallback`` is false (the message names the failure)."""


def describe_exception(err: Optional[BaseException]) -> str:
    """``Type: first line`` of an exception and of up to two causes below it (dynamo wraps the real one)."""
    parts, seen = [], set()
    while err is not None and id(err) not in seen and len(parts) < 3:
        seen.add(id(err))
        text = str(err).strip()
        parts.append(f"{type(err).__name__}: {text.splitlines()[0] if text else '(no message)'}")
        err = getattr(err, "inner_exception", None) or err.__cause__
    return " <- ".join(parts)


class CompiledForward:
    """``model.forward`` run through ``torch.compile``; what a compilation failure does is explicit.

    torch.compile compiles lazily, at the first call and again when shapes change, so a
    failure surfaces as an exception from a call. Then:

    - ``fallback=True``: the call is repeated eagerly. If the eager call also fails the
      model itself is at fault and that error propagates; otherwise a warning names the
      compile failure (exception types and first lines, see :func:`describe_exception`) and
      every later call runs eagerly.
    - ``fallback=False``: :class:`CompileError` (the compile failure chained as its cause),
      unless the eager call fails too, whose error is raised instead.

    This replaces ``torch._dynamo.config.suppress_errors = True``, a process-wide switch
    that made every failure a silent per-frame eager fallback. Not covered: a failure
    compiling the backward graph, which AOTAutograd may compile lazily at the first
    ``backward()`` (with dynamic shapes); it raises from ``backward`` as it always did.
    """

    def __init__(self, model: torch.nn.Module, fallback: bool = True):
        self.eager = model.forward
        self.compiled = torch.compile(model.forward)
        self.fallback = fallback
        # The compile failure's description, once one happened (not the exception: its traceback
        # would keep the failed call's frames, and their tensors, alive).
        self.failure: Optional[str] = None

    def __call__(self, *args, **kwargs):
        if self.failure is not None:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - classified below by running eagerly
            failure = err
        out = self.eager(*args, **kwargs)  # raises if the model, not the compiler, is at fault
        reason = describe_exception(failure)
        if not self.fallback:
            raise CompileError(
                f"torch.compile failed ({reason}) and training.compile_fallback=false: fix the cause, "
                "or set training.compile_fallback=true (train eagerly after a warning) or training.compile=false"
            ) from failure
        self.failure = reason
        log.warning("torch.compile failed (%s): training continues eagerly (same results, slower on CPU; "
                    "training.compile_fallback=false makes this an error)", reason)
        return out


def compile_forward(model: torch.nn.Module, fallback: bool = True) -> Optional[CompiledForward]:
    """``model.forward`` compiled with ``torch.compile``, or ``None`` (logged) when it cannot be.

    Compiling fuses the TCN's many small element-wise ops (PReLU, norms, residual
    sums, the shifted-sum depthwise convolutions) into a few kernels: a demo training
    step on 2 CPU threads goes from 125 ms to 78 ms (``benchmarks/benchmark_compile.py``).
    The first step pays the compilation (about 40 s on 2 cores), cached afterwards in a folder
    keyed by CPU and thread count (:mod:`local.compile_cache`).
    A compilation failure is a logged eager fallback, or an error with ``fallback=False``
    (:class:`CompiledForward`).
    """
    if not has_cxx_compiler():
        log.warning("training.compile=true but no C++ compiler (g++, clang++, c++ or $CXX) is on PATH: "
                    "training runs without torch.compile (same results, slower on CPU)")
        return None
    log.info("torch.compile kernel cache: %s", use_keyed_cache())
    return CompiledForward(model, fallback=fallback)


def _distributed(trainer) -> bool:
    return trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


class SeparationSystem(System):
    """Conv-TasNet + PIT negative SI-SNR, configured by a recipe config dict.

    Args:
        conf: the validated experiment config (``local.config.load_config``).
        total_steps: optimizer steps the run will take (for step-based schedules).

    Non-finite batches. A batch whose loss, or whose gradient, is NaN/inf must not update
    the weights, and under DDP every rank must take the same decision, or the ranks'
    weights drift apart (or a rank waits forever in a collective the others skipped).
    The mechanism needs no host synchronisation with the fused optimizer (CUDA or CPU without
    a GradScaler), whether or not anything is wrong:

    1. ``training_step`` always returns the loss, so every rank runs backward and DDP's
       gradient all-reduce (Lightning does not support returning ``None`` with several
       processes). It only records, on the device, whether the loss was finite.
    2. ``configure_gradient_clipping`` (Lightning calls it once per optimizer step, after
       backward, gradient accumulation and 16-bit AMP's unscaling, right before the step)
       clips as Lightning would and turns that record into one flag: the loss was non-finite
       in some accumulated batch, or the gradients' total norm is (the norm that clipping
       computes anyway; the gradients are DDP's all-reduced ones, the same on every rank).
       The flag is all-reduced (MAX) across ranks: one 1-element collective per optimizer
       step, which NCCL runs on the stream without a host wait (no barrier).
    3. The step is skipped on every rank with the same flag:

       - fused Adam/AdamW (:func:`make_optimizer`; chosen on CUDA and CPU unless a GradScaler
         is in use, see :meth:`configure_optimizers`): the flag goes to the optimizer as
         ``found_inf``, the protocol ``torch.amp.GradScaler`` uses with fused optimizers.
         The fused kernel then leaves weights, moments and step counts untouched, on the
         device; the host reads the counters only every ``trainer.log_every_n_steps``
         optimizer steps (when Lightning reads its logged values anyway) and at epoch end.
       - otherwise (16-bit AMP, whose GradScaler reads its own overflow flag every step
         anyway; other devices; ``fused_optimizer = False``): the flag is read, and a bad step's
         gradients are set to ``None``, which makes the optimizer step a no-op (Adam skips
         parameters without a gradient).

       Either way the learning-rate schedule advances and ``global_step`` counts the step,
       as before. With ``accumulate_grad_batches > 1`` a bad batch skips the whole
       accumulated step (its NaN gradient has been added to the others').
    4. Counters (skipped steps in total, in a row) live on the device, are the same on
       every rank, and are logged as ``skipped_batches``; more than
       ``training.max_nonfinite_batches`` in a row raise :class:`NonFiniteLossError` on every
       rank at the same step (with the fused optimizer up to ``log_every_n_steps`` steps
       after the limit was passed; the skipped steps changed nothing meanwhile).

    Under a GradScaler (``16-mixed``) inf/NaN gradients are the scaler's business (it skips
    the step and lowers the scale; early overflow steps are normal there), so only a
    non-finite loss counts as a bad batch.

    ``loss_step`` is this rank's loss (not averaged across ranks: that would be a barrier per
    step); ``loss_epoch`` is the mean over the epoch's finite batches of every rank.
    """

    def __init__(self, conf: dict, total_steps: int = 1):
        model = make_model(conf)
        optimizer = make_optimizer(model.parameters(), conf["optim"])
        scheduler = make_scheduler(optimizer, conf["scheduler"], total_steps)
        loss = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
        super().__init__(model, optimizer, loss, train_loader=None, scheduler=scheduler, config=conf)
        self.total_steps = total_steps
        # The fused optimizer: None = on CUDA or CPU without a GradScaler (configure_optimizers); True/False forces it.
        self.fused_optimizer: Optional[bool] = None
        # Skipped optimizer steps: [in total, in a row now, longest run since the host last looked];
        # on the training device once training runs (saved in checkpoints, logged as skipped_batches).
        self._nonfinite = torch.zeros(3, dtype=torch.int64)
        self._nonfinite_reported = 0  # the total the last warning reported
        self._bad_loss: Optional[torch.Tensor] = None  # a non-finite loss since the last optimizer step?
        self._epoch_loss: Optional[torch.Tensor] = None  # [sum of finite losses, their number] this epoch
        # The compiled forward lives outside the module tree (a plain callable, not a
        # submodule), so checkpoints and state dicts keep the model's own keys.
        self._train_forward = None

    # -- counters of skipped steps (host views, read when asked) ----------------------------------
    @property
    def nonfinite_total(self) -> int:
        return int(self._nonfinite[0])

    @property
    def nonfinite_in_a_row(self) -> int:
        return int(self._nonfinite[1])

    def _set_nonfinite_counts(self, total: int, in_a_row: int) -> None:
        self._nonfinite = torch.tensor([total, in_a_row, in_a_row], dtype=torch.int64, device=self._nonfinite.device)
        self._nonfinite_reported = total

    # -- compile and optimizer set-up -------------------------------------------------------------
    def on_fit_start(self):
        tc = self.config["training"]
        fallback = tc["compile_fallback"]
        if tc["compile"] and self._train_forward is None:
            self._train_forward = compile_forward(self.model)
            if self._train_forward is None and not fallback:
                raise CompileError("training.compile=true and training.compile_fallback=false, but torch.compile "
                                   "cannot run here: no C++ compiler (g++, clang++, c++ or $CXX) is on PATH")
            if self._train_forward is not None:
                self._train_forward.fallback = fallback

    def set_total_steps(self, total_steps: int) -> None:
        """Fix the optimizer steps the run takes (``local.time_budget``): the decay ends there."""
        self.total_steps = int(total_steps)
        for config in self.trainer.lr_scheduler_configs:
            for schedule in getattr(config.scheduler, "lr_lambdas", ()):
                if isinstance(schedule, WarmupDecay):
                    schedule.total_steps = self.total_steps

    def _grad_scaler(self):
        return getattr(self.trainer.precision_plugin, "scaler", None)

    def configure_optimizers(self):
        """asteroid's optimizer/scheduler set-up, with the fused optimizer where it pays.

        On CUDA and on the CPU, without a GradScaler, the optimizer is rebuilt as torch's fused
        Adam/AdamW (one kernel for all parameters, and device-side step skipping). On the CPU
        a step of the demo model's 0.39M parameters took 1.2 ms fused against 6.2 ms for the
        default per-tensor loop (2 threads, 2026-12-03): 3% of a compiled demo step. Not under
        a GradScaler: Lightning refuses gradient clipping with optimizers that unscale
        internally. A resumed run keeps whatever implementation its checkpoint's optimizer
        state names (``_skip_if_nonfinite`` looks at the param groups).
        """
        fused = self.fused_optimizer
        if fused is None:
            fused = self.trainer.strategy.root_device.type in ("cuda", "cpu") and self._grad_scaler() is None
        if fused:
            self.optimizer = make_optimizer(self.model.parameters(), self.config["optim"], fused=True)
            self.scheduler = make_scheduler(self.optimizer, self.config["scheduler"], self.total_steps)
        return super().configure_optimizers()

    # -- steps ---------------------------------------------------------------------------------
    def common_step(self, batch, batch_nb, train=True):
        mix, sources = batch[0], batch[1]
        # Only training steps run compiled: validation batches (no grad, another
        # batch size at the end) would each cost a compilation for little gain.
        forward = self._train_forward if (train and self._train_forward is not None) else self
        est = forward(mix)
        return self.loss_func(est, sources)

    def training_step(self, batch, batch_nb):
        loss = self.common_step(batch, batch_nb, train=True)
        value = loss.detach()
        finite = torch.isfinite(value).all()
        self._bad_loss = ~finite if self._bad_loss is None else self._bad_loss | ~finite
        kept = torch.stack([torch.where(finite, value, torch.zeros_like(value)).float(), finite.float()])
        self._epoch_loss = kept if self._epoch_loss is None else self._epoch_loss + kept
        self.log("loss_step", value, on_step=True, on_epoch=False, prog_bar=True)
        return loss  # backward always runs (every DDP rank must join the gradient all-reduce)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Lightning's gradient clipping, then the skip decision (class docstring, steps 2 and 3).

        Runs once per optimizer step on every rank, after backward, accumulation and AMP
        unscaling, right before the step. Clipping by norm computes the gradients' total
        norm anyway: it is kept for the decision instead of being computed a second time
        (about 1 ms a step for the demo model on CPU).
        """
        plugin = self.trainer.precision_plugin
        norm = None
        if (gradient_clip_val and gradient_clip_algorithm in (None, GradClipAlgorithmType.NORM)
                and type(plugin).clip_grad_by_norm is Precision.clip_grad_by_norm):
            # Exactly what Lightning's clip_gradients runs here (Precision.clip_grad_by_norm), keeping its result.
            norm = torch.nn.utils.clip_grad_norm_(list(plugin.main_params(optimizer)), gradient_clip_val)
        else:
            self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val,
                                gradient_clip_algorithm=gradient_clip_algorithm)
        self._skip_if_nonfinite(optimizer, norm)

    def _skip_if_nonfinite(self, optimizer, grad_norm: Optional[torch.Tensor]) -> None:
        """Decide, the same way on every rank, whether this optimizer step is skipped; skip it if so."""
        scaler = self._grad_scaler()
        bad = self._bad_loss
        self._bad_loss = None
        if scaler is None:  # under a GradScaler non-finite gradients are its business (class docstring)
            if grad_norm is None:
                grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
                grad_norm = torch.nn.utils.get_total_norm(grads) if grads else None
            if grad_norm is not None:
                bad = ~torch.isfinite(grad_norm) if bad is None else bad | ~torch.isfinite(grad_norm)
        if bad is None:
            bad = torch.zeros((), dtype=torch.bool, device=self.device)
        if _distributed(self.trainer):
            flag = bad.to(torch.float32)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)  # no barrier, unlike strategy.reduce
            bad = flag > 0
        step = bad.to(torch.int64)
        counts = self._nonfinite.to(bad.device)
        in_a_row = (counts[1] + step) * step
        self._nonfinite = torch.stack([counts[0] + step, in_a_row, torch.maximum(counts[2], in_a_row)])
        self.log("skipped_batches", self._nonfinite[0].float(), on_step=True, on_epoch=False)

        if scaler is None and all(group.get("fused") for group in optimizer.param_groups):
            optimizer.found_inf = bad.to(torch.float32)  # read by the fused step (removed in optimizer_step)
            if (self.trainer.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
                self._report_nonfinite()
        elif bool(bad):  # a host read: free on CPU; under a GradScaler it reads its own flag anyway
            optimizer.zero_grad(set_to_none=True)
            self._report_nonfinite()

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        try:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        finally:
            raw = getattr(optimizer, "optimizer", optimizer)  # Lightning's wrapper -> the torch optimizer
            raw.__dict__.pop("found_inf", None)  # a stale flag must never skip a later step

    def _report_nonfinite(self) -> None:
        """Host side of the non-finite bookkeeping: warn about new skips, stop after too many in a row."""
        total, in_a_row, longest = (int(v) for v in self._nonfinite.tolist())
        new = total - self._nonfinite_reported
        self._nonfinite_reported = total
        step = self.trainer.global_step
        if new:
            log.warning("non-finite training loss or gradients: %d optimizer step(s) skipped by global step %d "
                        "(epoch %d; %d in a row now, %d in total)", new, step, self.current_epoch, in_a_row, total)
        limit = self.config["training"]["max_nonfinite_batches"]
        if longest > limit:
            raise NonFiniteLossError(
                f"training stopped: {longest} batches in a row gave a non-finite loss or gradients "
                f"(epoch {self.current_epoch}, global step {step}; more than "
                f"training.max_nonfinite_batches={limit}). The model is diverging: lower optim.lr, keep "
                "training.gradient_clip_val, or train with training.precision=32-true. "
                "The checkpoints written before this point are intact."
            )
        self._nonfinite = torch.stack([self._nonfinite[0], self._nonfinite[1], self._nonfinite[1]])

    def on_train_epoch_end(self):
        self._report_nonfinite()
        sums = self._epoch_loss if self._epoch_loss is not None else torch.zeros(2, device=self.device)
        self._epoch_loss = None
        if _distributed(self.trainer):
            torch.distributed.all_reduce(sums, op=torch.distributed.ReduceOp.SUM)  # every rank calls it
        if float(sums[1]) > 0:  # the mean over the epoch's finite batches (none logged if there were none)
            # The same value on every rank; Lightning's own sync of it (max) is then exact.
            self.log("loss_epoch", sums[0] / sums[1], on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max")

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)  # asteroid stores training_config
        checkpoint["nonfinite_batches"] = {"total": self.nonfinite_total, "in_a_row": self.nonfinite_in_a_row}

    def on_load_checkpoint(self, checkpoint):
        counts = checkpoint.get("nonfinite_batches", {})
        self._set_nonfinite_counts(counts.get("total", 0), counts.get("in_a_row", 0))

    def validation_step(self, batch, batch_nb):
        loss = self.common_step(batch, batch_nb, train=False)
        # val_loss is the negative SI-SNR of the validation crops, in dB.
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self):
        # asteroid's hook writes hp_metric to whatever logger is attached;
        # with no logger (fast_dev_run) there is nothing to write to.
        if self.trainer.logger is not None:
            super().on_validation_epoch_end()
