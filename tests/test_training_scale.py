"""Training at scale: device settings, two-process CPU DDP, pre-emption and resume,
atomic checkpoints, NaN/inf batches, reproducibility, the stored environment."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from local.config import ConfigError
import soundfile as sf
import torch

from local.metadata import write_split_metadata

REPO = Path(__file__).resolve().parents[1]
MICRO = "tests/conf/micro.yml"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_corpus(root: Path, n_items=(16, 4), n_samples=4000, rate=8000) -> Path:
    """A tiny corpus in the standard layout: tr and cv splits of two-sine mixtures with noise."""
    rng = np.random.default_rng(0)
    for split, n in zip(("tr", "cv"), n_items):
        split_dir = root / "wav8k" / "min" / split
        for i in range(n):
            t = np.arange(n_samples) / rate
            sources = [0.3 * np.sin(2 * np.pi * rng.uniform(150, 900) * t) + 0.02 * rng.standard_normal(n_samples)
                       for _ in range(2)]
            for k, s in enumerate(sources):
                (split_dir / f"s{k + 1}").mkdir(parents=True, exist_ok=True)
                sf.write(split_dir / f"s{k + 1}" / f"u{i:02d}.wav", s, rate, subtype="FLOAT")
            (split_dir / "mix").mkdir(parents=True, exist_ok=True)
            sf.write(split_dir / "mix" / f"u{i:02d}.wav", sum(sources), rate, subtype="FLOAT")
        write_split_metadata(split_dir, 2)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def train_cmd(data, exp, *extra):
    return [sys.executable, "-m", "local.train", "--conf", MICRO, "--data-dir", str(data), "--exp-dir", str(exp),
            "--no-progress-bar", "--set", "training.num_threads=1", "--set", "training.limit_train_batches=1.0",
            "--set", "training.early_stop_patience=0", *extra]


def load_ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=False)


# -- device settings --------------------------------------------------------------------------

def test_trainer_settings_from_config_and_cli():
    from local.train import get_parser, resolve_config, trainer_settings

    args = get_parser().parse_args(["--conf", MICRO, "--data-dir", "d", "--exp-dir", "e", "--devices", "4",
                                    "--num-nodes", "2", "--precision", "bf16", "--accumulate-grad-batches", "3"])
    s = trainer_settings(resolve_config(args)["training"])
    # passed as written: Lightning parses the spellings (resolve_devices below)
    assert s == {"accelerator": "auto", "devices": 4, "num_nodes": 2, "strategy": "auto",
                 "precision": "bf16", "accumulate_grad_batches": 3}


# Every spelling of "how many processes": what Lightning resolves it to (CPU here, so the
# accelerator is named: accelerator auto with several devices and no GPU is refused, below).
@pytest.mark.parametrize("overrides,world,strategy", [
    (["training.devices=1"], 1, "SingleDeviceStrategy"),
    (["training.devices=auto"], 1, "SingleDeviceStrategy"),
    (["training.devices=2"], 2, "DDPStrategy"),
    (["training.devices=3"], 3, "DDPStrategy"),
    (["training.devices=1", "training.num_nodes=2"], 2, "DDPStrategy"),
    (["training.devices=2", "training.strategy=ddp_spawn"], 2, "DDPStrategy"),
])
def test_every_devices_spelling_resolves_to_ddp_without_unused_parameter_search(overrides, world, strategy):
    from local.config import load_config
    from local.train import resolve_devices

    r = resolve_devices(load_config(MICRO, ["training.accelerator=cpu", *overrides])["training"])
    assert (r["world_size"], r["strategy"]) == (world, strategy)
    if strategy == "DDPStrategy":
        # plain DDP: the model has no parameter that misses its gradient (local.model.freeze_unused_residual)
        assert not r["find_unused_parameters"]


# On the CPU Lightning runs 16-mixed as bf16-mixed (CPU autocast has no fp16 GradScaler path).
@pytest.mark.parametrize("precision,resolved", [("32", "32-true"), ("32-true", "32-true"), ("16", "bf16-mixed"),
                                                ("16-mixed", "bf16-mixed"), ("bf16", "bf16-mixed"),
                                                ("bf16-mixed", "bf16-mixed")])
def test_precision_spellings_are_lightnings(precision, resolved):
    from local.config import load_config
    from local.train import resolve_devices

    conf = load_config(MICRO, ["training.accelerator=cpu", f"training.precision={precision}"])
    assert resolve_devices(conf["training"])["precision"] == resolved


def test_bad_device_settings_are_config_errors():
    from local.config import load_config
    from local.train import resolve_devices

    with pytest.raises(ConfigError, match="precision"):
        resolve_devices(load_config(MICRO, ["training.precision=8"])["training"])
    with pytest.raises(ConfigError, match="strategy"):
        resolve_devices(load_config(MICRO, ["training.strategy=nonsense"])["training"])
    with pytest.raises(ConfigError, match="should be an int > 0"):  # -1 means "all GPUs", not CPUs
        resolve_devices(load_config(MICRO, ["training.accelerator=cpu", "training.devices=-1"])["training"])
    if not torch.cuda.is_available():
        # 2 would start two CPU processes (refused here); -1 and "0,1" Lightning refuses on a CPU itself
        for devices in ("2", "-1", "0,1"):
            with pytest.raises(ConfigError, match="asks for several GPUs|should be an int > 0"):
                resolve_devices(load_config(MICRO, [f"training.devices={devices}"])["training"])


# -- two-process DDP on CPU ---------------------------------------------------------------------

def test_ddp_two_cpu_processes(corpus, tmp_path):
    exp = tmp_path / "ddp"
    # 16 training mixtures, batch 2, 2 ranks -> 4 steps per epoch; dynamic mixing on, so the
    # per-rank sampler path is exercised too.
    res = subprocess.run(train_cmd(corpus, exp, "--accelerator", "cpu", "--devices", "2",
                                   "--set", "training.epochs=2", "--set", "data.dynamic_mixing=true"),
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=85)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "world size 2, strategy DDPStrategy" in out
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out
    ckpt = load_ckpt(exp / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2 * 4
    assert (exp / "best_model.pth").is_file() and (exp / ".train.done").is_file()


# -- pre-emption --------------------------------------------------------------------------------

# Runs local.train with a training step slowed down and traced, so the test can signal it at
# a known point mid-epoch and count the steps each run does.
DRIVER = textwrap.dedent("""
    import sys, time
    import local.system as S
    trace = open(sys.argv[1], "a", buffering=1)
    step = S.SeparationSystem.training_step
    def traced(self, batch, nb):
        trace.write(f"{self.trainer.global_step} {self.current_epoch} {nb}\\n")
        time.sleep(float(sys.argv[2]))
        return step(self, batch, nb)
    S.SeparationSystem.training_step = traced
    from local.train import main
    sys.exit(main(sys.argv[3:]))
""")


def _trace(path):
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigterm_mid_epoch_saves_and_resume_continues_at_the_same_step(corpus, tmp_path, signum=signal.SIGTERM):
    exp = tmp_path / "preempted"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    args = train_cmd(corpus, exp, "--set", "training.epochs=3")[3:]  # 8 steps per epoch
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    proc = subprocess.Popen([sys.executable, str(driver), str(first), "0.15", *args], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        trace = _trace(first)
        if trace and trace[-1][1] == 1 and trace[-1][2] >= 2:  # epoch 1, third batch: mid-epoch
            break
        time.sleep(0.02)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out[-3000:]
    assert "pre-empted at epoch 1" in out
    ckpt = load_ckpt(exp / "checkpoints" / "last.ckpt")
    saved_step = ckpt["global_step"]
    assert 8 < saved_step < 16, "the checkpoint should be mid-epoch 1"
    assert saved_step == len(_trace(first)), "the checkpoint holds every step the killed run did"
    assert not (exp / ".train.done").exists()

    res = subprocess.run([sys.executable, str(driver), str(second), "0", *args], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from" in res.stderr
    resumed = _trace(second)
    assert resumed[0][0] == saved_step  # the step counter continues where it stopped
    assert [s for s, _, _ in resumed] == list(range(saved_step, 24))  # no step lost or done twice
    assert load_ckpt(exp / "checkpoints" / "last.ckpt")["global_step"] == 24
    assert (exp / ".train.done").is_file()


def test_sigusr1_off_slurm_also_saves_last_checkpoint(tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import Callback, ModelCheckpoint
    from pytorch_lightning.utilities.exceptions import SIGTERMException
    from torch.utils.data import DataLoader, TensorDataset

    from local.callbacks import AtomicCheckpointIO, PreemptionCheckpoint
    from local.config import load_config
    from local.system import SeparationSystem

    class SignalAtStep3(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                os.kill(os.getpid(), signal.SIGUSR1)

    pl.seed_everything(0)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    preemption = PreemptionCheckpoint(checkpoint)
    data = TensorDataset(torch.randn(12, 4000), torch.randn(12, 2, 4000))
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         callbacks=[checkpoint, preemption, SignalAtStep3()], plugins=[AtomicCheckpointIO()])
    with pytest.raises(SIGTERMException):
        trainer.fit(SeparationSystem(load_config(MICRO)), train_dataloaders=DataLoader(data, batch_size=2))
    assert preemption.signal_received == signal.SIGUSR1
    ckpt = load_ckpt(tmp_path / "last.ckpt")
    assert ckpt["global_step"] == 3 and ckpt["epoch"] == 0
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handlers restored after the run


# -- atomic checkpoints -------------------------------------------------------------------------

KILLED_WRITE = textwrap.dedent("""
    import os, signal, sys, torch
    from local.callbacks import AtomicCheckpointIO

    class KilledMidWrite:
        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGKILL)

    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, sys.argv[1])
    io.save_checkpoint({"global_step": 2, "w": torch.zeros(10**6), "x": KilledMidWrite()}, sys.argv[1])
""")


def test_a_killed_checkpoint_write_leaves_the_old_checkpoint(tmp_path):
    from local.callbacks import remove_stale_temporaries

    script = tmp_path / "killed_write.py"
    script.write_text(KILLED_WRITE)
    last = tmp_path / "checkpoints" / "last.ckpt"
    res = subprocess.run([sys.executable, str(script), str(last)], cwd=REPO, env=ENV, capture_output=True,
                         timeout=60)
    assert res.returncode == -signal.SIGKILL
    assert load_ckpt(last)["global_step"] == 1  # the previous checkpoint, whole
    leftovers = [p.name for p in last.parent.iterdir() if p != last]
    assert leftovers and all(n.startswith(".last.ckpt.tmp-") for n in leftovers)
    assert remove_stale_temporaries(last.parent) and sorted(last.parent.iterdir()) == [last]


def test_a_failed_write_such_as_a_full_disk_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    import errno

    from local import callbacks

    last = tmp_path / "last.ckpt"
    io = callbacks.AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, last)

    def full_disk(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(callbacks.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 2}, last)
    monkeypatch.undo()
    assert load_ckpt(last)["global_step"] == 1
    assert sorted(tmp_path.iterdir()) == [last]  # no temporary left behind


# -- NaN / inf losses ---------------------------------------------------------------------------

def _fit_with_bad_batches(bad_steps, max_nonfinite, n_batches=6, fused=None):
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from local.config import load_config
    from local.system import SeparationSystem

    conf = load_config(MICRO, [f"training.max_nonfinite_batches={max_nonfinite}", "scheduler.name=none"])
    pl.seed_everything(0)
    system = SeparationSystem(conf)
    system.fused_optimizer = fused
    common = SeparationSystem.common_step
    calls = []

    def poisoned(self, batch, nb, train=True):
        loss = common(self, batch, nb, train)
        calls.append(nb)
        if train and len(calls) - 1 in bad_steps:
            loss = loss * float("nan") if len(calls) % 2 else loss + float("inf")
        return loss

    system.common_step = poisoned.__get__(system)
    data = TensorDataset(torch.randn(2 * n_batches, 4000), torch.randn(2 * n_batches, 2, 4000))
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=5.0,
                         limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(system, train_dataloaders=DataLoader(data, batch_size=2))
    return system, trainer


def test_nonfinite_batches_are_skipped_and_counted():
    system, trainer = _fit_with_bad_batches(bad_steps={1, 2, 4}, max_nonfinite=2)
    assert system.nonfinite_total == 3 and system.nonfinite_in_a_row == 0
    assert all(torch.isfinite(p).all() for p in system.parameters())
    assert trainer.callback_metrics["skipped_batches"] == 3
    ckpt = {}
    system.on_save_checkpoint(ckpt)
    assert ckpt["nonfinite_batches"] == {"total": 3, "in_a_row": 0} and "training_config" in ckpt


@pytest.mark.parametrize("fused,in_a_row", [(False, 3), (None, 4)], ids=["per-tensor", "default-fused"])
def test_too_many_nonfinite_batches_in_a_row_stop_with_a_message(fused, in_a_row):
    """The per-tensor optimizer reads the counters every step and stops at the third bad batch
    in a row; the fused one (the CPU default) reads them only at the logging cadence or the
    epoch's end, here after the fourth (the skipped steps changed nothing meanwhile)."""
    from local.system import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=rf"{in_a_row} batches in a row gave a non-finite loss.*"
                                                 r"training.max_nonfinite_batches=2"):
        _fit_with_bad_batches(bad_steps={1, 2, 3, 4}, max_nonfinite=2, fused=fused)


# -- reproducibility and the stored environment -------------------------------------------------

def _step_losses(exp):
    import csv

    with open(exp / "logs" / "metrics.csv") as f:
        return [float(r["loss_step"]) for r in csv.DictReader(f) if r.get("loss_step")]


def test_same_seed_same_losses_and_environment_is_stored(corpus, tmp_path):
    from local.train import main

    common = ["--conf", MICRO, "--data-dir", str(corpus), "--no-progress-bar", "--set", "training.epochs=1",
              "--set", "training.limit_train_batches=4", "--set", "data.dynamic_mixing=true",
              "--set", "training.early_stop_patience=0", "--set", "data.num_workers=0"]
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert main([*common, "--exp-dir", str(tmp_path / name), "--set", f"training.seed={seed}"]) == 0
        runs[name] = _step_losses(tmp_path / name)
    assert len(runs["a"]) == 4
    assert runs["a"] == runs["b"]  # bit-identical on CPU
    assert runs["a"] != runs["c"]
    env = json.loads((tmp_path / "a" / "env.json").read_text())
    for key in ("python", "torch", "pytorch-lightning", "asteroid", "asteroid-filterbanks", "numpy",
                "soundfile", "git_commit", "git_dirty", "command", "packages"):
        assert key in env, key
    assert env["torch"] == torch.__version__
    assert env["packages"]["pytorch-lightning"] == env["pytorch-lightning"]


def test_resume_picks_the_newest_of_last_and_slurm_hpc_checkpoints(tmp_path):
    from local.train import resume_checkpoint

    assert resume_checkpoint(tmp_path) is None
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"x")
    os.utime(last, ns=(1, 1_000_000_000))
    assert resume_checkpoint(tmp_path) == str(hpc)  # saved on SLURM's requeue signal, after last.ckpt
    os.utime(last, ns=(1, hpc.stat().st_mtime_ns + 1))
    assert resume_checkpoint(tmp_path) == str(last)


def test_folders_made_before_new_config_keys_still_resume(tmp_path):
    import yaml

    from local.config import load_config
    from local.train import check_exp_dir

    conf = load_config(MICRO)
    old = {s: dict(v) for s, v in conf.items()}
    del old["training"]["max_nonfinite_batches"], old["training"]["deterministic"]
    (tmp_path / "conf.yml").write_text(yaml.safe_dump(old))
    check_exp_dir(tmp_path, conf)  # no "different config" error
    with pytest.raises(ConfigError, match="training.max_nonfinite_batches: 20 -> 3"):
        check_exp_dir(tmp_path, load_config(MICRO, ["training.max_nonfinite_batches=3"]))


def test_slurm_example_is_valid_bash_and_matches_the_cli():
    from local.train import get_parser

    script = (REPO / "slurm" / "train.sbatch").read_text()
    subprocess.run(["bash", "-n", str(REPO / "slurm" / "train.sbatch")], check=True)
    known = {opt for action in get_parser()._actions for opt in action.option_strings}
    command = script[script.index('srun "$PYTHON" -m local.train'):]
    assert {w for w in command.split() if w.startswith("--")} <= known
    assert "#SBATCH --signal=SIGUSR1@" in script and "#SBATCH --requeue" in script


def test_bf16_mixed_precision_and_gradient_accumulation_run_on_cpu(corpus, tmp_path):
    from local.train import main

    exp = tmp_path / "bf16"
    assert main(["--conf", MICRO, "--data-dir", str(corpus), "--exp-dir", str(exp), "--no-progress-bar",
                 "--accelerator", "cpu", "--devices", "1", "--precision", "bf16", "--accumulate-grad-batches", "2",
                 "--set", "training.epochs=1", "--set", "training.limit_train_batches=1.0",
                 "--set", "training.early_stop_patience=0"]) == 0
    ckpt = load_ckpt(exp / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 4  # 8 batches, one optimizer step per 2
    assert ckpt["training_config"]["training"]["precision"] == "bf16"
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
