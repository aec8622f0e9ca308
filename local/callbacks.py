"""Fault safety for training: atomic checkpoint files, a last.ckpt of every epoch, and
checkpoint-on-pre-emption.

Three pieces, all plugged into Lightning rather than replacing it:

``AtomicCheckpointIO``
    Lightning 2.6 already saves through ``lightning_fabric.utilities.cloud_io._atomic_save``:
    the checkpoint is serialised to memory and written inside an fsspec transaction,
    i.e. to a file from ``tempfile.mkstemp()`` that is then ``shutil.move``-d over the
    target. That is a rename -- atomic -- only when the system temp folder
    (``$TMPDIR``, usually ``/tmp``) is on the same file system as the experiment
    folder. On clusters it rarely is (node-local ``/tmp``, experiments on NFS/Lustre):
    ``shutil.move`` then falls back to *copying into the final path*, so a job killed
    during the copy leaves a truncated ``last.ckpt``, and each killed write leaves a
    checkpoint-sized orphan in ``/tmp``. This plugin writes next to the target
    (``.<name>.tmp-<pid>-<random>`` in the same folder, ``local.stage_state.atomic_file``), ``fsync``-s it and ``os.replace``-s it
    over the target, which POSIX guarantees to be atomic on every local or network
    file system; the folder is ``fsync``-ed too, so the rename survives a power cut.
    Remote URLs (``s3://`` ...) keep Lightning's own path.

``PreemptionCheckpoint``
    Lightning turns SIGTERM into ``SIGTERMException`` at the next batch boundary
    (every rank together, under DDP) and calls the callbacks' ``on_exception``.
    This callback saves ``checkpoints/last.ckpt`` there (mid-epoch, with optimizer,
    scheduler, loop and data-loader epoch state), so re-running the same command
    continues at the same global step. SIGUSR1 is treated the same way when nothing
    else handles it; on SLURM with ``auto_requeue`` Lightning's own SIGUSR1 handler
    (save ``hpc_ckpt_N.ckpt`` + ``scontrol requeue``) is left in place, see
    ``slurm/train.sbatch``.

``EveryEpochLastCheckpoint``
    The recipe's ``ModelCheckpoint``: ``last.ckpt`` at the end of every epoch, which
    Lightning 2.6.6 writes only when a top-k checkpoint was saved (see the class).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any, Optional

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from local.stage_state import TMP_MARK, atomic_file

log = logging.getLogger("local.callbacks")

TMP_PREFIX = "."  # and local.stage_state.TMP_MARK: the temporaries of local.stage_state.atomic_file


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` so that readers see the old file or the complete new one."""
    with atomic_file(path) as f:
        torch.save(obj, f)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporaries left by writes that were killed (``.<name>.tmp-<pid>``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX) and TMP_MARK in p.name]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` whose local writes are temp-file + ``os.replace`` in place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        protocols = get_filesystem(path).protocol
        if "file" not in (protocols if isinstance(protocols, (tuple, list)) else (protocols,)):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)


class EveryEpochLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` follows every epoch.

    Lightning 2.6 writes ``last.ckpt`` only when a top-k file was saved at the same step
    (``on_train_epoch_end`` / ``on_validation_end``: "only save last checkpoint if a checkpoint
    was actually saved"), so once the validation loss stops entering the top k, ``last.ckpt``
    stays at the last improvement: a run of 57 epochs whose best was epoch 42 left ``last.ckpt``
    at epoch 42, and a job killed after that resumed 15 epochs back. Here it is written at the
    same two hooks whenever the parent saved nothing there.
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_unsaved(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_unsaved(trainer)

    def _save_last_if_unsaved(self, trainer) -> None:
        # _should_skip_saving_checkpoint: fast_dev_run, sanity check, not fitting, or already saved at this step
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class PreemptionCheckpoint(Callback):
    """Save ``last.ckpt`` when the run is pre-empted (SIGTERM, or SIGUSR1 off SLURM).

    Args:
        checkpoint: the run's ``ModelCheckpoint`` (its ``last.ckpt`` is the one resumed from).
    """

    def __init__(self, checkpoint: ModelCheckpoint):
        self.checkpoint = checkpoint
        self.saved_path: Optional[str] = None
        self.signal_received: Optional[int] = None

    # SIGUSR1 -> the SIGTERM path, unless someone (Lightning's SLURM requeue) handles it
    def on_train_start(self, trainer, pl_module) -> None:
        if not hasattr(signal, "SIGUSR1"):
            return
        current = signal.getsignal(signal.SIGUSR1)
        if current in (signal.SIG_DFL, None):
            # Lightning restores the handlers it found at fit start when it tears down.
            signal.signal(signal.SIGUSR1, self._forward_as_sigterm)

    def _forward_as_sigterm(self, signum, frame) -> None:
        self.signal_received = signum
        log.info("received signal %d: saving a checkpoint at the next batch boundary", signum)
        signal.raise_signal(signal.SIGTERM)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.sanity_checking:
            return
        path = os.path.join(self.checkpoint.dirpath, ModelCheckpoint.CHECKPOINT_NAME_LAST
                            + ModelCheckpoint.FILE_EXTENSION)
        # Recorded inside the checkpoint, so that the resumed ModelCheckpoint keeps managing it.
        self.checkpoint.last_model_path = path
        trainer.save_checkpoint(path)  # rank 0 writes (atomically); every rank meets at the barrier
        self.saved_path = path
        if trainer.is_global_zero:
            log.warning("pre-empted at epoch %d, global step %d: saved %s; run the same command "
                        "again to resume", trainer.current_epoch, trainer.global_step, path)
