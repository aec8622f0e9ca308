"""Train a Conv-TasNet variant with a Lightning Trainer.

Usage (what ``./run.sh --stage 1 --stop-stage 1`` runs):

    python -m local.train --conf conf/demo.yml --data-dir data/demo --exp-dir exp/demo \
        [--set optim.lr=5e-4 --set training.epochs=10] [--devices 1] [--num-workers 2]

Scale (each flag overrides the config's ``training`` key of the same name):

    python -m local.train ... --accelerator gpu --devices 4 [--num-nodes 2] \
        [--strategy ddp] [--precision bf16-mixed] [--accumulate-grad-batches 2]

More than one device (or node) means DDP unless ``--strategy`` says otherwise; the
effective batch is ``data.batch_size x devices x num_nodes x accumulate_grad_batches``.
On SLURM, launch one task per GPU with ``srun`` (see ``slurm/train.sbatch``):
Lightning reads the ranks from SLURM and requeues the job on SIGUSR1.

Fault safety: checkpoints are written atomically (``local.callbacks.AtomicCheckpointIO``);
SIGTERM (or SIGUSR1 off SLURM) saves ``checkpoints/last.ckpt`` at the next batch and
exits with status 143; re-running the same command resumes from it at the same global
step. A batch whose loss is NaN/inf is skipped (counted in the ``skipped_batches`` log
column); more than ``training.max_nonfinite_batches`` in a row stop the run with a message.

Writes into the experiment folder:
    conf.yml              the resolved config (refuses to train into a folder made by another config)
    env.json              package versions, device, git commit, command line
    checkpoints/          best-k checkpoints on val_loss and last.ckpt (resumed from on re-run)
    logs/                 CSV (and TensorBoard) logs
    best_k_models.json    {checkpoint path: val_loss}
    best_model.pth        asteroid ``serialize`` package of the best checkpoint (or the mean of
                          the ``training.average_best_k`` best)
    training_curves.png   training and validation SI-SNR per epoch (local.curves; .csv beside it)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from local.config import ConfigError

log = logging.getLogger("local.train")
_STARTED = time.time()  # this process's start: what a run-scope time budget counts from without run.sh


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", required=True, help="experiment YAML config")
    p.add_argument("--data-dir", required=True, help="corpus folder, e.g. data/demo")
    p.add_argument("--exp-dir", required=True, help="experiment folder to write")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable)")
    p.add_argument("--devices", default=None, help="Lightning devices (e.g. 1, 4, auto); overrides training.devices")
    p.add_argument("--accelerator", default=None, help="cpu, gpu or auto; overrides training.accelerator")
    p.add_argument("--num-nodes", type=int, default=None, help="overrides training.num_nodes")
    p.add_argument("--strategy", default=None,
                   help="Lightning strategy (auto, ddp, ddp_spawn, ...); overrides training.strategy. "
                        "auto = ddp when more than one device or node")
    p.add_argument("--precision", default=None,
                   help="32-true, 16-mixed or bf16-mixed (also 32, 16, bf16); overrides training.precision")
    p.add_argument("--accumulate-grad-batches", type=int, default=None,
                   help="optimizer step every K batches; overrides training.accumulate_grad_batches")
    p.add_argument("--num-workers", type=int, default=None, help="overrides data.num_workers")
    p.add_argument("--fast-dev-run", action="store_true", help="one batch of train and valid, for smoke tests")
    p.add_argument("--force", action="store_true",
                   help="train again from scratch: removes this folder's checkpoints and best model first")
    p.add_argument("--check-only", action="store_true",
                   help="validate the config, the devices and the experiment folder, then exit (no data needed)")
    p.add_argument("--run-started", type=float, default=None, metavar="UNIX_TIME",
                   help="when the command that runs this training began (run.sh passes its own start): with "
                        "training.time_budget_scope=run the budget counts from then [this process's start]")
    p.add_argument("--more-stages", action="store_true",
                   help="stages follow training in the same command (run.sh says so): with "
                        "training.time_budget_scope=run, training.time_budget_after is kept for them")
    p.add_argument("--no-progress-bar", action="store_true")
    return p


def time_budget_callback(tc: dict, args, exp_dir: Path):
    """The :class:`local.time_budget.TimeBudget` of this run: ``Trainer.fit``'s own budget (scope ``fit``),
    or what the whole command's budget leaves for training (scope ``run``)."""
    from local.config import parse_duration
    from local.time_budget import TimeBudget, format_duration

    budget_s = parse_duration(tc["time_budget"])
    if budget_s is None or tc["time_budget_scope"] == "fit":
        return TimeBudget(budget_s, exp_dir)  # without a budget: the ETA of the fixed step count
    started = _STARTED if args.run_started is None else args.run_started
    after_s = (parse_duration(tc["time_budget_after"]) or 0.0) if args.more_stages else 0.0
    deadline = started + budget_s - after_s
    log.info("time budget: %s for the whole command, begun %s ago; training has %s of it, %s kept for the "
             "stages after it", format_duration(budget_s), format_duration(time.time() - started),
             format_duration(deadline - time.time()), format_duration(after_s))
    return TimeBudget(None, exp_dir, deadline=deadline)


def resolve_config(args) -> dict:
    from local.config import load_config

    overrides = list(args.overrides)
    for flag, key in (("devices", "training.devices"), ("accelerator", "training.accelerator"),
                      ("num_nodes", "training.num_nodes"), ("num_workers", "data.num_workers"),
                      ("strategy", "training.strategy"), ("precision", "training.precision"),
                      ("accumulate_grad_batches", "training.accumulate_grad_batches")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(args.conf, overrides)


# Distributions whose versions decide the numbers a run produces (all installed ones
# are stored too, under "packages").
KEY_PACKAGES = ("torch", "pytorch-lightning", "asteroid", "asteroid-filterbanks",
                "numpy", "scipy", "soundfile", "torchmetrics", "pyyaml", "fsspec", "pystoi", "pesq",
                "mir-eval")


def _git(*args: str) -> Optional[str]:
    # --no-optional-locks: never take .git/index.lock (another process may be committing).
    try:
        res = subprocess.run(["git", "--no-optional-locks", *args], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.rstrip("\n") if res.returncode == 0 else None


def environment_info() -> dict:
    """What produced this experiment: versions of every package, device, git commit (and whether
    the work tree had uncommitted changes), command line, host."""
    from importlib import metadata

    import torch

    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name.lower().replace("_", "-")] = dist.version
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        **{name: packages.get(name) for name in KEY_PACKAGES},
        "torch": torch.__version__,  # with the build tag (e.g. +cu130) that the wheel's metadata lacks
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
        "git_commit": (_git("rev-parse", "HEAD") or "").strip() or None,
        "git_dirty": None if status is None else bool(status),
        "git_diff_files": None if not status else [line[3:] for line in status.splitlines()],
        "command": " ".join([sys.executable, *sys.argv]),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "packages": dict(sorted(packages.items())),
    }


def trainer_settings(tc: dict) -> dict:
    """The Trainer's device arguments from the ``training`` section, passed as written.

    Lightning parses every spelling itself (``devices: auto | -1 | 4 | "0,1" | [0, 1]``,
    ``precision: 32 | 16-mixed | bf16 ...``; :func:`resolve_devices` checks them early);
    ``strategy: auto`` becomes plain DDP whenever more than one process is asked for. That
    works with asteroid's TCN because the model freezes the one parameter pair DDP would
    otherwise wait for (``local.model.freeze_unused_residual``), so no per-step search for
    unused parameters is needed.
    """
    return {key: tc[key] for key in ("accelerator", "devices", "num_nodes", "strategy", "precision",
                                     "accumulate_grad_batches")}


def resolve_devices(tc: dict) -> dict:
    """What Lightning makes of the device settings, without starting anything: accelerator,
    world size, strategy and precision. Bad spellings become a ``ConfigError`` naming the key.

    Refuses several processes on an accelerator that is not there: ``accelerator: auto``
    falls back to the CPU without a GPU, where ``devices: 2`` would silently start two-process
    CPU DDP (twice the effective batch). Several CPU processes stay possible when asked for by
    name (``accelerator: cpu``).
    """
    import warnings

    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    settings = trainer_settings(tc)
    quiet = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the real Trainer says "GPU available ..." once, not twice
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "GPU available but not used" and the like
            trainer = pl.Trainer(**settings, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as err:
        raise ConfigError(f"training.accelerator/devices/num_nodes/strategy/precision "
                          f"({tc['accelerator']!r}, {tc['devices']!r}, {tc['num_nodes']!r}, {tc['strategy']!r}, "
                          f"{tc['precision']!r}): {' '.join(str(err).split())}") from None
    finally:
        quiet.setLevel(level)
    accelerator = type(trainer.accelerator).__name__.replace("Accelerator", "").lower()
    per_node = trainer.num_devices
    if accelerator == "cpu" and str(tc["accelerator"]) != "cpu" and per_node > 1:
        raise ConfigError(
            f"training.devices={tc['devices']!r} asks for several GPUs, but this machine has none visible "
            "(torch.cuda.is_available() is False): use --devices 1, or set training.accelerator=cpu to run "
            "that many CPU processes of DDP on purpose")
    return {"accelerator": accelerator, "devices_per_node": per_node, "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__, "precision": trainer.precision,
            "find_unused_parameters": getattr(trainer.strategy, "_ddp_kwargs", {}).get("find_unused_parameters")}


def check_exp_dir(exp_dir: Path, conf: dict) -> None:
    """An experiment folder belongs to one config: refuse to mix two in one folder.

    Only the settings that define the model count (``local.config.identity``): devices,
    workers and the evaluation section may change between a run and its resumption.
    """
    from local.config import identity_diffs, read_experiment_config, save_config

    saved = exp_dir / "conf.yml"
    if saved.is_file():
        diffs = identity_diffs(read_experiment_config(saved), conf)
        if diffs:
            raise ConfigError(
                f"{saved} was written by a different config ({'; '.join(diffs)}). "
                "Use another --tag / --exp-dir, or --force to train this folder again from scratch."
            )
        return  # keep the file (and its time stamp, which later stages' markers record)
    save_config(conf, saved)


def training_inputs(exp_dir: Path, data_dir: Path, conf: dict) -> list[Path]:
    """The files a finished training run was made from: its config and the metadata of the
    splits it read. The marker fingerprints them, so re-prepared data means re-training."""
    from local.data import split_dir

    dc = conf["data"]
    names = ["mix"] + [f"s{i + 1}" for i in range(dc["n_src"])]
    return [exp_dir / "conf.yml"] + [split_dir(data_dir, dc, split) / f"{name}.json"
                                     for split in (dc["train_set"], dc["valid_set"]) for name in names]


# What a training run writes (besides conf.yml and run.sh's logs/*.log), removed to start over.
TRAINING_OUTPUTS = ("checkpoints", "best_model.pth", "best_k_models.json", "logs/metrics.csv",
                    "logs/hparams.yaml", "logs/tb", "training_curves.png", "training_curves.csv", "env.json")


def start_over(exp_dir: Path, reason: str) -> None:
    """Remove a previous run's training outputs so that training starts from step 0.

    The marker goes first: a start-over that is killed half-way leaves no finished-looking folder.
    """
    import shutil

    log.warning("%s: training %s from scratch (removing its checkpoints and best model)", reason, exp_dir)
    (exp_dir / ".train.done").unlink(missing_ok=True)
    for name in TRAINING_OUTPUTS:
        path = exp_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for stale in exp_dir.glob("hpc_ckpt_*.ckpt"):
        stale.unlink()


def steps_per_epoch(n_items: int, conf: dict, world_size: int = 1) -> int:
    batches = n_items // (conf["data"]["batch_size"] * world_size)
    limit = conf["training"]["limit_train_batches"]
    batches = min(batches, int(limit)) if isinstance(limit, int) else int(batches * limit)
    return max(1, math.ceil(batches / conf["training"]["accumulate_grad_batches"]))


def resume_checkpoint(exp_dir: Path) -> Optional[str]:
    """The newest of ``checkpoints/last.ckpt`` (end of epoch, pre-emption) and Lightning's SLURM
    ``hpc_ckpt_N.ckpt`` (saved on the requeue signal), or None for a fresh start."""
    candidates = [p for p in [exp_dir / "checkpoints" / "last.ckpt", *exp_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return str(max(candidates, key=lambda p: p.stat().st_mtime_ns)) if candidates else None


def export_best(exp_dir: Path, checkpoint_cb, conf: dict) -> Path:
    """best_model.pth (asteroid serialize format) + best_k_models.json from the checkpoints.

    The weights are those of the best checkpoint, or with ``training.average_best_k`` > 1
    the mean of the k best (fewer if fewer were kept; see ``local.checkpoint_average``).
    """
    import torch

    from local.callbacks import atomic_torch_save
    from local.checkpoint_average import average_state_dicts, best_k_paths
    from local.model import make_model, serialize_model
    from local.stage_state import atomic_write_text

    best_k = {k: float(v) for k, v in checkpoint_cb.best_k_models.items()}
    atomic_write_text(exp_dir / "best_k_models.json", json.dumps(best_k, indent=2))
    # Without any validation score, the callback's own choice (its last checkpoint).
    chosen = (best_k_paths(best_k, conf["training"]["average_best_k"])
              or [checkpoint_cb.best_model_path or checkpoint_cb.last_model_path])
    # The mean of one checkpoint is that checkpoint exactly (float32 -> float64 -> float32).
    state = average_state_dicts([torch.load(p, map_location="cpu", weights_only=False)["state_dict"]
                                 for p in chosen])
    model = make_model(conf)
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    rel = [os.path.relpath(p, exp_dir) for p in chosen]
    infos = dict(checkpoint=rel[0], val_loss=best_k.get(chosen[0]))
    if len(chosen) > 1:
        infos["averaged_checkpoints"] = rel
        log.info("best_model.pth: weights averaged over the %d best checkpoints: %s", len(rel), ", ".join(rel))
    package = serialize_model(model, training_config=conf, **infos)
    out = exp_dir / "best_model.pth"
    atomic_torch_save(package, out)
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    exp_dir = Path(args.exp_dir)
    data_dir = Path(args.data_dir)
    try:
        conf = resolve_config(args)
        settings = trainer_settings(conf["training"])
        resolved = resolve_devices(conf["training"])
        if args.check_only:
            # run.sh calls this before stage 0: a config that cannot train fails in seconds,
            # not after the data preparation.
            if not args.force and (exp_dir / "conf.yml").is_file():
                check_exp_dir(exp_dir, conf)
            return 0
    except (ConfigError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    if not data_dir.is_dir():
        raise SystemExit(f"error: --data-dir {data_dir} does not exist: run data preparation first")

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, TQDMProgressBar
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
    from pytorch_lightning.utilities import rank_zero_only
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from local.callbacks import (AtomicCheckpointIO, EveryEpochLastCheckpoint, PreemptionCheckpoint,
                                 remove_stale_temporaries)
    from local.data import SeparationDataModule
    from local.stage_state import atomic_write_text, is_done, mark_done
    from local.system import CompileError, NonFiniteLossError, SeparationSystem

    # Under DDP every rank runs this function (Lightning re-launches the command, or
    # srun starts it once per task on SLURM); only global rank 0 writes files. Lightning's
    # rank comes from RANK/LOCAL_RANK/SLURM_PROCID; a plain multi-node launch sets only NODE_RANK.
    is_rank_zero = rank_zero_only.rank == 0 and int(os.environ.get("NODE_RANK", "0") or 0) == 0
    tc = conf["training"]
    if tc["num_threads"] > 0:
        torch.set_num_threads(tc["num_threads"])
    ckpt_dir = exp_dir / "checkpoints"
    marker = exp_dir / ".train.done"
    inputs = training_inputs(exp_dir, data_dir, conf)
    # A fresh start (no resume from last.ckpt) after --force, or when the folder holds a run that
    # finished on other inputs (re-prepared data): resuming a finished run would train nothing.
    fresh = args.force
    if is_rank_zero:
        exp_dir.mkdir(parents=True, exist_ok=True)
        try:
            if args.force and not args.fast_dev_run:
                start_over(exp_dir, "--force")
                (exp_dir / "conf.yml").unlink(missing_ok=True)  # --force may bring another config
            check_exp_dir(exp_dir, conf)
        except ConfigError as err:
            raise SystemExit(f"error: {err}")
        if not args.fast_dev_run and marker.is_file() and not is_done(marker, inputs):
            start_over(exp_dir, "the data or config changed since this folder was trained")
            fresh = True
        for stale in remove_stale_temporaries(ckpt_dir):
            log.warning("removed %s, left by a checkpoint write that was killed", stale)
    if not args.fast_dev_run and is_done(marker, inputs) and (exp_dir / "best_model.pth").is_file():
        log.info("training already finished in %s (run.sh --force, or train.py --force, trains it again)",
                 exp_dir)
        return 0
    if is_rank_zero:
        atomic_write_text(exp_dir / "env.json", json.dumps(environment_info(), indent=2))
        log.info("config:\n%s", json.dumps(conf, indent=1))

    pl.seed_everything(tc["seed"], workers=True)
    datamodule = SeparationDataModule(data_dir, conf["data"], seed=tc["seed"])
    try:
        datamodule.setup("fit")
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    if getattr(datamodule.train_set, "n_dropped", 0):
        log.warning("%d training utterances shorter than data.min_segment were dropped",
                    datamodule.train_set.n_dropped)

    checkpoint = EveryEpochLastCheckpoint(dirpath=ckpt_dir, filename="epoch{epoch:03d}-val{val_loss:.3f}",
                                          auto_insert_metric_name=False, monitor="val_loss", mode="min",
                                          save_top_k=tc["save_top_k"], save_last=True, verbose=False)
    preemption = PreemptionCheckpoint(checkpoint)
    budget = time_budget_callback(tc, args, exp_dir)
    callbacks = [checkpoint, preemption, budget, LearningRateMonitor(logging_interval="epoch")]
    if not args.no_progress_bar:
        # Redrawing the bar (and formatting its metrics) at every step cost ~6 ms of a
        # ~100 ms CPU demo step; every 10th step is as readable.
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    if tc["early_stop_patience"] > 0:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=tc["early_stop_patience"]))
    loggers = [CSVLogger(exp_dir, name="logs", version="")]
    try:
        loggers.append(TensorBoardLogger(exp_dir, name="logs", version="tb"))
    except ModuleNotFoundError:
        pass  # tensorboard is optional; the CSV log is always written

    trainer = pl.Trainer(
        max_epochs=tc["epochs"],
        max_steps=tc["max_steps"],
        limit_train_batches=tc["limit_train_batches"],
        gradient_clip_val=tc["gradient_clip_val"],
        log_every_n_steps=tc["log_every_n_steps"],
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=exp_dir,
        fast_dev_run=args.fast_dev_run,
        enable_progress_bar=not args.no_progress_bar,
        deterministic=tc["deterministic"],
        **settings,
    )
    epoch_steps = steps_per_epoch(len(datamodule.train_set), conf, trainer.world_size)
    total_steps = tc["max_steps"] if tc["max_steps"] > 0 else epoch_steps * tc["epochs"]
    system = SeparationSystem(conf, total_steps=total_steps)
    log.info("model: %d parameters, receptive field %.3f s; %s, %d device(s) x %d node(s), world size %d, "
             "strategy %s, precision %s", system.model.n_parameters(), system.model.receptive_field(),
             resolved["accelerator"], resolved["devices_per_node"], settings["num_nodes"], trainer.world_size,
             type(trainer.strategy).__name__, trainer.precision)

    resume = None if (args.fast_dev_run or fresh) else resume_checkpoint(exp_dir)
    if resume:
        log.info("resuming from %s", resume)
    try:
        trainer.fit(system, datamodule=datamodule, ckpt_path=resume)
    except SIGTERMException:
        log.warning("training interrupted by a signal after global step %d; %s", trainer.global_step,
                    f"checkpoint saved to {preemption.saved_path}" if preemption.saved_path
                    else "no checkpoint could be saved")
        return 143
    except (NonFiniteLossError, CompileError, FileNotFoundError) as err:
        # FileNotFoundError: local.metadata.CorpusChanged, a corpus file gone during the run
        raise SystemExit(f"error: {err}")
    if args.fast_dev_run:
        return 0
    if trainer.is_global_zero:
        best = export_best(exp_dir, checkpoint, conf)
        mark_done(marker, inputs, best_model=str(best))
        log.info("best model: %s (val_loss %.3f)", best, float(checkpoint.best_model_score or float("nan")))
        from local.curves import plot_after_training

        plot_after_training(exp_dir)  # training_curves.png; a failure is only a warning
    return 0


if __name__ == "__main__":
    sys.exit(main())
