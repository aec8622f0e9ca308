"""Train a Conv-TasNet variant with a Lightning Trainer.

Usage (what ``./run.sh --stage 1 --stop-stage 1`` runs):

    python -m local.train --conf conf/demo.yml --data-dir data/demo --exp-dir exp/demo \
        [--set optim.lr=5e-4 --set training.epochs=10] [--devices 1] [--num-workers 2]

Writes into the experiment folder:
    conf.yml              the resolved config (refuses to train into a folder made by another config)
    env.json              package versions, device, git commit, command line
    checkpoints/          best-k checkpoints on val_loss and last.ckpt (resumed from on re-run)
    logs/                 CSV (and TensorBoard) logs
    best_k_models.json    {checkpoint path: val_loss}
    best_model.pth        asteroid ``serialize`` package of the best checkpoint
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
from pathlib import Path

log = logging.getLogger("local.train")


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
    p.add_argument("--num-workers", type=int, default=None, help="overrides data.num_workers")
    p.add_argument("--fast-dev-run", action="store_true", help="one batch of train and valid, for smoke tests")
    p.add_argument("--no-progress-bar", action="store_true")
    return p


def resolve_config(args) -> dict:
    from local.config import load_config

    overrides = list(args.overrides)
    for flag, key in (("devices", "training.devices"), ("accelerator", "training.accelerator"),
                      ("num_nodes", "training.num_nodes"), ("num_workers", "data.num_workers")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(args.conf, overrides)


def environment_info() -> dict:
    """What produced this experiment: versions, device, git commit, command."""
    import asteroid
    import pytorch_lightning as pl
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "asteroid": asteroid.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
        "git_commit": commit,
        "command": " ".join(sys.argv),
    }


def check_exp_dir(exp_dir: Path, conf: dict) -> None:
    """An experiment folder belongs to one config: refuse to mix two in one folder."""
    from local.config import save_config
    import yaml

    saved = exp_dir / "conf.yml"
    if saved.is_file():
        with open(saved) as f:
            previous = yaml.safe_load(f)
        # Devices and workers may change between a run and its resumption.
        volatile = {("training", "devices"), ("training", "accelerator"), ("training", "num_nodes"),
                    ("data", "num_workers"), ("training", "strategy")}
        diffs = [f"{s}.{k}: {previous.get(s, {}).get(k)!r} -> {v!r}"
                 for s, sec in conf.items() for k, v in sec.items()
                 if (s, k) not in volatile and previous.get(s, {}).get(k) != v]
        if diffs:
            raise SystemExit(
                f"error: {saved} was written by a different config ({'; '.join(diffs)}). "
                "Use another --tag / --exp-dir, or delete the folder to start over."
            )
        return  # keep the file (and its time stamp, which later stages' markers record)
    save_config(conf, saved)


def steps_per_epoch(n_items: int, conf: dict, world_size: int = 1) -> int:
    batches = n_items // (conf["data"]["batch_size"] * world_size)
    limit = conf["training"]["limit_train_batches"]
    batches = min(batches, int(limit)) if isinstance(limit, int) else int(batches * limit)
    return max(1, math.ceil(batches / conf["training"]["accumulate_grad_batches"]))


def export_best(exp_dir: Path, checkpoint_cb, conf: dict) -> Path:
    """best_model.pth (asteroid serialize format) + best_k_models.json from the checkpoints."""
    import torch

    from local.model import make_model, serialize_model

    best_path = checkpoint_cb.best_model_path or checkpoint_cb.last_model_path
    best_k = {k: float(v) for k, v in checkpoint_cb.best_k_models.items()}
    (exp_dir / "best_k_models.json").write_text(json.dumps(best_k, indent=2))
    state = torch.load(best_path, map_location="cpu", weights_only=False)
    model = make_model(conf)
    model.load_state_dict({k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")})
    package = serialize_model(model, training_config=conf, checkpoint=os.path.relpath(best_path, exp_dir),
                              val_loss=best_k.get(best_path))
    out = exp_dir / "best_model.pth"
    tmp = out.with_name(out.name + ".tmp")
    torch.save(package, tmp)
    os.replace(tmp, out)
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from local.config import ConfigError

    try:
        conf = resolve_config(args)
    except ConfigError as err:
        raise SystemExit(f"error: {err}")
    exp_dir = Path(args.exp_dir)
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise SystemExit(f"error: --data-dir {data_dir} does not exist: run data preparation first")

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from local.data import SeparationDataModule
    from local.stage_state import is_done, mark_done
    from local.system import SeparationSystem

    tc = conf["training"]
    if tc["num_threads"] > 0:
        torch.set_num_threads(tc["num_threads"])
    exp_dir.mkdir(parents=True, exist_ok=True)
    check_exp_dir(exp_dir, conf)
    marker = exp_dir / ".train.done"
    if not args.fast_dev_run and is_done(marker, [exp_dir / "conf.yml"]) and (exp_dir / "best_model.pth").is_file():
        log.info("training already finished in %s (delete %s to train again)", exp_dir, marker)
        return 0
    (exp_dir / "env.json").write_text(json.dumps(environment_info(), indent=2))
    log.info("config:\n%s", json.dumps(conf, indent=1))

    pl.seed_everything(tc["seed"], workers=True)
    datamodule = SeparationDataModule(data_dir, conf["data"])
    try:
        datamodule.setup("fit")
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    if getattr(datamodule.train_set, "n_dropped", 0):
        log.warning("%d training utterances shorter than data.min_segment were dropped",
                    datamodule.train_set.n_dropped)
    epoch_steps = steps_per_epoch(len(datamodule.train_set), conf)
    total_steps = tc["max_steps"] if tc["max_steps"] > 0 else epoch_steps * tc["epochs"]
    system = SeparationSystem(conf, total_steps=total_steps)
    log.info("model: %d parameters, receptive field %.3f s",
             system.model.n_parameters(), system.model.receptive_field())

    ckpt_dir = exp_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="epoch{epoch:03d}-val{val_loss:.3f}",
                                 auto_insert_metric_name=False, monitor="val_loss", mode="min",
                                 save_top_k=tc["save_top_k"], save_last=True, verbose=False)
    callbacks = [checkpoint, LearningRateMonitor(logging_interval="epoch")]
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
        accelerator=tc["accelerator"],
        devices=tc["devices"],
        num_nodes=tc["num_nodes"],
        strategy=tc["strategy"],
        precision=tc["precision"],
        accumulate_grad_batches=tc["accumulate_grad_batches"],
        log_every_n_steps=tc["log_every_n_steps"],
        callbacks=callbacks,
        logger=loggers,
        default_root_dir=exp_dir,
        fast_dev_run=args.fast_dev_run,
        enable_progress_bar=not args.no_progress_bar,
        deterministic=False,
    )
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if last.is_file() and not args.fast_dev_run else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(system, datamodule=datamodule, ckpt_path=resume)
    if args.fast_dev_run:
        return 0
    if trainer.is_global_zero:
        best = export_best(exp_dir, checkpoint, conf)
        mark_done(marker, [exp_dir / "conf.yml"], best_model=str(best))
        log.info("best model: %s (val_loss %.3f)", best, float(checkpoint.best_model_score or float("nan")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
