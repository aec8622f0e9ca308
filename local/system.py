"""The LightningModule: asteroid's ``System`` built from one recipe config.

asteroid's ``System`` holds model, optimizer, loss and scheduler and logs
``loss`` / ``val_loss``; this subclass builds all of them from the config
(so a checkpoint rebuilds the run) and reads data from a DataModule.
"""

from __future__ import annotations

import logging
import math
import os
import shutil

import torch
from asteroid.engine.system import System
from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from local.model import make_model

log = logging.getLogger("local.system")


class NonFiniteLossError(RuntimeError):
    """Too many consecutive training batches with a NaN/inf loss (the message says what to change)."""


def make_optimizer(params, optim_conf: dict) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optim_conf["optimizer"]]
    return cls(params, lr=optim_conf["lr"], weight_decay=optim_conf["weight_decay"])


def make_scheduler(optimizer, sched_conf: dict, total_steps: int):
    """Paper schedule (halve on plateau) or warm-up + cosine over a fixed step budget."""
    name = sched_conf["name"]
    if name == "none":
        return None
    if name == "plateau":
        return ReduceLROnPlateau(
            optimizer, mode="min", factor=sched_conf["factor"], patience=sched_conf["patience"]
        )
    warmup = sched_conf["warmup_steps"]
    floor = sched_conf["min_lr_ratio"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return {"scheduler": LambdaLR(optimizer, factor), "interval": "step"}


def has_cxx_compiler() -> bool:
    """Whether torch.compile's code generator will find a C++ compiler (inductor needs one)."""
    return bool(os.environ.get("CXX")) or any(shutil.which(c) for c in ("g++", "clang++", "c++"))


def compile_forward(model: torch.nn.Module):
    """``model.forward`` compiled with ``torch.compile``, or ``None`` (logged) when it cannot be.

    Compiling fuses the TCN's many small element-wise ops (PReLU, norms, residual
    sums, the shifted-sum depthwise convolutions) into a few kernels: a demo training
    step on 2 CPU threads goes from 125 ms to 78 ms (``benchmarks/benchmark_compile.py``).
    The first step pays the compilation (about 40 s on 2 cores; cached under /tmp afterwards).
    A graph that fails to compile runs eagerly instead of stopping training.
    """
    if not has_cxx_compiler():
        log.warning("training.compile=true but no C++ compiler (g++, clang++, c++ or $CXX) is on PATH: "
                    "training runs without torch.compile (same results, slower on CPU)")
        return None
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    return torch.compile(model.forward)


class SeparationSystem(System):
    """Conv-TasNet + PIT negative SI-SNR, configured by a recipe config dict.

    Args:
        conf: the validated experiment config (``local.config.load_config``).
        total_steps: optimizer steps the run will take (for step-based schedules).
    """

    def __init__(self, conf: dict, total_steps: int = 1):
        model = make_model(conf)
        optimizer = make_optimizer(model.parameters(), conf["optim"])
        scheduler = make_scheduler(optimizer, conf["scheduler"], total_steps)
        loss = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
        super().__init__(model, optimizer, loss, train_loader=None, scheduler=scheduler, config=conf)
        # NaN/inf-loss batches skipped so far (saved in checkpoints, logged as skipped_batches).
        self.nonfinite_total = 0
        self.nonfinite_in_a_row = 0
        # The compiled forward lives outside the module tree (a plain function, not a
        # submodule), so checkpoints and state dicts keep the model's own keys.
        self._train_forward = None

    def on_fit_start(self):
        if self.config["training"]["compile"] and self._train_forward is None:
            self._train_forward = compile_forward(self.model)

    def common_step(self, batch, batch_nb, train=True):
        mix, sources = batch[0], batch[1]
        # Only training steps run compiled: validation batches (no grad, another
        # batch size at the end) would each cost a compilation for little gain.
        forward = self._train_forward if (train and self._train_forward is not None) else self
        est = forward(mix)
        return self.loss_func(est, sources)

    def training_step(self, batch, batch_nb):
        loss = self.common_step(batch, batch_nb, train=True)
        finite = bool(torch.isfinite(loss).all())
        if self.trainer.world_size > 1:
            # Every rank must skip together, or DDP's gradient all-reduce would hang.
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            return self._skip_nonfinite(loss)
        self.nonfinite_in_a_row = 0
        self.log("loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def _skip_nonfinite(self, loss):
        """Skip a NaN/inf batch (returning ``None`` skips backward and the update); stop if they keep coming."""
        self.nonfinite_total += 1
        self.nonfinite_in_a_row += 1
        limit = self.config["training"]["max_nonfinite_batches"]
        log.warning("non-finite training loss (%s) at epoch %d, global step %d: batch skipped "
                    "(%d in a row, %d in total)", float(loss.detach().float().mean()), self.current_epoch,
                    self.global_step, self.nonfinite_in_a_row, self.nonfinite_total)
        self.log("skipped_batches", float(self.nonfinite_total), on_step=True, on_epoch=False, reduce_fx="max")
        if self.nonfinite_in_a_row > limit:
            raise NonFiniteLossError(
                f"training stopped: {self.nonfinite_in_a_row} batches in a row gave a non-finite loss "
                f"(epoch {self.current_epoch}, global step {self.global_step}; more than "
                f"training.max_nonfinite_batches={limit}). The model is diverging: lower optim.lr, keep "
                "training.gradient_clip_val, or train with training.precision=32-true. "
                "The checkpoints written before this point are intact."
            )
        return None

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)  # asteroid stores training_config
        checkpoint["nonfinite_batches"] = {"total": self.nonfinite_total, "in_a_row": self.nonfinite_in_a_row}

    def on_load_checkpoint(self, checkpoint):
        counts = checkpoint.get("nonfinite_batches", {})
        self.nonfinite_total = counts.get("total", 0)
        self.nonfinite_in_a_row = counts.get("in_a_row", 0)

    def validation_step(self, batch, batch_nb):
        loss = self.common_step(batch, batch_nb, train=False)
        # val_loss is the negative SI-SNR of the validation crops, in dB.
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self):
        # asteroid's hook writes hp_metric to whatever logger is attached;
        # with no logger (fast_dev_run) there is nothing to write to.
        if self.trainer.logger is not None:
            super().on_validation_epoch_end()
