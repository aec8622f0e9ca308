"""GPU-readiness of the training system, on CPU: plain two-process DDP, non-finite batches that
every rank skips together (one host read per step with the per-tensor optimizer, none with the fused one),
and torch.compile failures that are reported (or fatal) instead of silent."""

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from local.config import load_config

REPO = Path(__file__).resolve().parents[1]
MICRO = "tests/conf/micro.yml"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# Two CPU ranks (gloo) with Lightning's plain "ddp" (no find_unused_parameters: every parameter
# that asks for a gradient must get one), launched the way local.train is: Lightning re-runs
# this script once per extra rank. The loss of chosen (rank, step) pairs is made NaN or inf.
DRIVER = textwrap.dedent("""
    import json, sys, time
    from datetime import timedelta
    from pathlib import Path

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import Callback
    from pytorch_lightning.strategies import DDPStrategy
    from torch.utils.data import DataLoader, TensorDataset

    from local.config import load_config
    from local.system import SeparationSystem

    out, fused, limit, bad = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3]), json.loads(sys.argv[4])
    torch.set_num_threads(1)
    conf = load_config("tests/conf/micro.yml", [f"training.max_nonfinite_batches={limit}"])  # cosine schedule
    pl.seed_everything(0)
    system = SeparationSystem(conf, total_steps=8)
    system.fused_optimizer = fused
    common = SeparationSystem.common_step

    def poisoned(self, batch, nb, train=True):
        loss = common(self, batch, nb, train)
        kind = bad.get(f"{self.global_rank}:{self.trainer.global_step}") if train else None
        if kind == "nan":
            loss = loss * float("nan")
        elif kind == "inf":
            loss = loss + float("inf")  # an infinite loss with finite gradients
        return loss

    system.common_step = poisoned.__get__(system)

    def flat(module):
        return torch.cat([p.detach().flatten() for p in module.model.parameters()]).clone()

    class Record(Callback):
        unchanged, before = [], None

        def on_train_batch_start(self, trainer, module, batch, idx):
            self.before = flat(module)

        def on_train_batch_end(self, trainer, module, outputs, batch, idx):
            if torch.equal(flat(module), self.before):
                self.unchanged.append(trainer.global_step - 1)

        def write(self, trainer, module, **extra):
            rank = trainer.global_rank
            torch.save(module.model.state_dict(), out / f"weights{rank}.pt")
            optimizer = trainer.optimizers[0]
            (out / f"rank{rank}.json").write_text(json.dumps(dict(
                unchanged=self.unchanged, total=module.nonfinite_total, in_a_row=module.nonfinite_in_a_row,
                global_step=trainer.global_step, fused=bool(optimizer.param_groups[0].get("fused")),
                scheduler_bound=trainer.lr_scheduler_configs[0].scheduler.optimizer is optimizer, **extra)))

        def on_train_end(self, trainer, module):
            self.write(trainer, module)

        def on_exception(self, trainer, module, exc):
            self.write(trainer, module, error=type(exc).__name__)
            if trainer.global_rank == 0:  # Lightning's rank 0 kills the others next: let them write first
                deadline = time.time() + 20
                while not (out / "rank1.json").exists() and time.time() < deadline:
                    time.sleep(0.05)

    data = TensorDataset(torch.randn(32, 4000), torch.randn(32, 2, 4000))  # 8 steps of 2 per rank
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(timeout=timedelta(seconds=30)),
                         max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, gradient_clip_val=5.0, limit_val_batches=0,
                         num_sanity_val_steps=0, log_every_n_steps=2, callbacks=[Record()])
    trainer.fit(system, train_dataloaders=DataLoader(data, batch_size=2))
""")


def run_ddp(tmp_path, fused, limit, bad):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    # A rank left waiting in a collective would hang: the gloo timeout (30 s) and this one stop it.
    res = subprocess.run([sys.executable, str(driver), str(tmp_path), str(int(fused)), str(limit), json.dumps(bad)],
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    ranks = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    return res, ranks


def _same_finite_weights(tmp_path):
    w0, w1 = (torch.load(tmp_path / f"weights{r}.pt") for r in (0, 1))
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # the ranks never drifted apart
    assert all(torch.isfinite(v).all() for v in w0.values())


def test_plain_ddp_skips_a_bad_batch_of_one_rank_on_every_rank(tmp_path):
    # Step 1: rank 1's loss is NaN (NaN gradients); step 3: rank 0's loss is inf (finite gradients).
    # On CPU the optimizer is the default one: the flag is read on the host.
    res, ranks = run_ddp(tmp_path, fused=False, limit=5, bad={"1:1": "nan", "0:3": "inf"})
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert len(ranks) == 2
    for rank in ranks:
        assert rank["global_step"] == 8 and not rank["fused"] and rank["scheduler_bound"]
        assert rank["unchanged"] == [1, 3]  # the weights moved at every other step
        assert (rank["total"], rank["in_a_row"]) == (2, 0)
    _same_finite_weights(tmp_path)


def test_fused_device_side_skips_and_the_stop_agree_on_every_rank(tmp_path):
    # The fused optimizer (the choice on CUDA and CPU) skips on the device. Two isolated bad steps, then
    # three in a row (more than max_nonfinite_batches=2) from alternating ranks: every rank
    # skips the same steps and stops at the same one (the host looks every 2nd step here).
    bad = {"1:1": "nan", "0:3": "inf", "1:5": "nan", "0:6": "inf", "1:7": "nan"}
    res, ranks = run_ddp(tmp_path, fused=True, limit=2, bad=bad)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "3 batches in a row gave a non-finite loss" in out and "training.max_nonfinite_batches=2" in out
    assert len(ranks) == 2, out[-4000:]
    for rank in ranks:
        assert rank["fused"] and rank["scheduler_bound"]
        assert (rank["error"], rank["global_step"], rank["total"], rank["in_a_row"]) == ("NonFiniteLossError", 7, 5, 3)
        assert rank["unchanged"] == [1, 3, 5, 6]
    _same_finite_weights(tmp_path)


# -- one process: the device-side skip, in detail ---------------------------------------------------

HOST_READS = ("item", "tolist", "__bool__", "__int__", "__float__")


def _fit(monkeypatch, bad_steps, fused, log_every=50, limit=3, n_batches=6, clip=5.0, bad_grad_steps=()):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import Callback
    from torch.utils.data import DataLoader, TensorDataset

    from local.system import SeparationSystem

    pl.seed_everything(0)
    system = SeparationSystem(load_config(MICRO, [f"training.max_nonfinite_batches={limit}"]), total_steps=n_batches)
    system.fused_optimizer = fused
    common = SeparationSystem.common_step
    losses = []

    def poisoned(self, batch, nb, train=True):
        loss = common(self, batch, nb, train)
        if train and self.trainer.global_step in bad_steps:
            loss = loss * float("nan")
        losses.append(float(loss.detach()))
        return loss

    system.common_step = poisoned.__get__(system)
    # A finite loss whose backward gives one parameter a NaN gradient.
    system.model.masker.bottleneck[1].weight.register_hook(
        lambda g: g * float("nan") if system.trainer.global_step in bad_grad_steps else g)
    real_hook = system.configure_gradient_clipping  # where the skip decision is taken

    def no_host_reads(*args):
        raise AssertionError("a host read while deciding whether to skip the step")

    def guarded(optimizer, **kwargs):
        with monkeypatch.context() as m:
            # The fused path reads nothing on the host, except at the logging cadence.
            if fused and (system.trainer.global_step + 1) % log_every:
                for name in HOST_READS:
                    m.setattr(torch.Tensor, name, no_host_reads)
            real_hook(optimizer, **kwargs)

    system.configure_gradient_clipping = guarded

    class Snapshots(Callback):
        states = []

        def on_train_batch_end(self, trainer, module, *args):
            opt = trainer.optimizers[0]
            params = [p for g in opt.param_groups for p in g["params"] if p in opt.state]
            self.states.append((torch.cat([p.detach().flatten() for p in module.model.parameters()]),
                                torch.cat([opt.state[p]["exp_avg"].flatten() for p in params]),
                                [float(opt.state[p]["step"]) for p in params]))

    snapshots = Snapshots()
    data = TensorDataset(torch.randn(2 * n_batches, 4000), torch.randn(2 * n_batches, 2, 4000))
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=clip,
                         limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=log_every,
                         callbacks=[snapshots])
    trainer.fit(system, train_dataloaders=DataLoader(data, batch_size=2))
    return system, trainer, snapshots.states, losses


@pytest.mark.parametrize("fused,clip", [(False, 5.0), (True, 5.0), (True, 0.0)],
                         ids=["host-read", "fused-device-side", "fused-without-clipping"])
def test_a_skipped_step_leaves_weights_and_optimizer_state_untouched(monkeypatch, fused, clip):
    # With clipping the gradient norm is clipping's; without, it is computed for the check.
    system, trainer, states, losses = _fit(monkeypatch, bad_steps={2, 3}, fused=fused, clip=clip)
    assert bool(trainer.optimizers[0].param_groups[0].get("fused")) == fused
    assert "found_inf" not in vars(trainer.optimizers[0])  # never left behind for a later step
    for step in (2, 3):
        before, after = states[step - 1], states[step]
        assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1]) and before[2] == after[2]
    for step in (1, 4, 5):
        assert not torch.equal(states[step - 1][0], states[step][0])
        assert states[step][2] == [s + 1 for s in states[step - 1][2]]
    assert (system.nonfinite_total, system.nonfinite_in_a_row) == (2, 0)
    assert trainer.callback_metrics["skipped_batches"] == 2
    # loss_epoch: the mean over the finite batches only.
    finite = [v for v in losses if v == v]
    assert len(finite) == 4
    assert float(trainer.callback_metrics["loss_epoch"]) == pytest.approx(sum(finite) / 4, rel=1e-6)


def test_cpu_training_chooses_the_fused_optimizer_by_default(monkeypatch):
    """fused_optimizer=None (the default) on CPU without a GradScaler: torch's fused Adam, whose
    one kernel took 1.2 ms against 6.2 ms a step for the per-tensor loop on the demo model."""
    system, trainer, states, losses = _fit(monkeypatch, bad_steps=set(), fused=None)
    assert trainer.optimizers[0].param_groups[0]["fused"] is True
    assert all(states[k][2] == [s + 1 for s in states[k - 1][2]] for k in range(1, len(states)))


@pytest.mark.parametrize("fused,clip", [(False, 5.0), (True, 0.0)], ids=["host-read", "fused-without-clipping"])
def test_a_finite_loss_with_a_nan_gradient_is_skipped_too(monkeypatch, fused, clip):
    system, trainer, states, losses = _fit(monkeypatch, bad_steps=set(), bad_grad_steps={3}, fused=fused, clip=clip)
    assert all(v == v for v in losses)
    assert torch.equal(states[2][0], states[3][0]) and states[2][2] == states[3][2]
    assert (system.nonfinite_total, system.nonfinite_in_a_row) == (1, 0)
    assert all(torch.isfinite(p).all() for p in system.parameters())


def test_device_side_skips_are_reported_at_the_logging_cadence(monkeypatch, caplog):
    from local.system import NonFiniteLossError

    # More than 2 in a row by global step 3; the host looks every 5th step (global step 4),
    # sees 4 in a row then and stops the run there. The skipped steps changed nothing meanwhile.
    with caplog.at_level("WARNING", logger="local.system"):
        with pytest.raises(NonFiniteLossError, match=r"4 batches in a row .*global step 4;"):
            _fit(monkeypatch, bad_steps={1, 2, 3, 4, 5}, fused=True, log_every=5, limit=2)
    assert "4 optimizer step(s) skipped by global step 4" in caplog.text


# -- torch.compile failures -----------------------------------------------------------------------

@pytest.fixture
def broken_compiler(monkeypatch):
    """torch.compile with a backend that always fails, as an inductor bug or a missing header would."""
    def backend(gm, example_inputs):
        raise RuntimeError("backend exploded")

    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=backend))
    yield
    torch._dynamo.reset()


def _micro_model():
    from local.model import make_model

    torch.manual_seed(0)
    return make_model(load_config(MICRO))


def test_a_compile_failure_is_a_warning_naming_it_and_training_runs_eagerly(broken_compiler, caplog):
    from local.system import CompiledForward

    model = _micro_model()
    forward = CompiledForward(model)
    mix = torch.randn(2, 4000)
    with caplog.at_level("WARNING", logger="local.system"):
        out = forward(mix)
    assert torch.equal(out, model(mix))
    assert "torch.compile failed (BackendCompilerFailed" in caplog.text and "backend exploded" in caplog.text
    assert "training continues eagerly" in caplog.text
    assert forward.failure is not None
    caplog.clear()
    with caplog.at_level("WARNING", logger="local.system"):
        forward(mix)  # eager from now on, without trying (and warning) again
    assert caplog.text == ""


def test_compile_fallback_false_makes_a_compile_failure_an_error(broken_compiler):
    from local.system import CompiledForward, CompileError

    forward = CompiledForward(_micro_model(), fallback=False)
    with pytest.raises(CompileError, match=r"torch.compile failed \(BackendCompilerFailed.*compile_fallback=false") as err:
        forward(torch.randn(2, 4000))
    assert "backend exploded" in str(err.value.__cause__)


def test_an_error_of_the_model_itself_is_not_called_a_compile_failure(broken_compiler, caplog):
    from local.system import CompiledForward, CompileError

    forward = CompiledForward(_micro_model())
    with caplog.at_level("WARNING", logger="local.system"):
        with pytest.raises(ValueError, match="too many values to unpack") as err:
            forward(torch.randn(2, 3, 4, 4000))  # no such input layout: asteroid's own error, eagerly
    assert not isinstance(err.value, CompileError)
    assert forward.failure is None and "torch.compile failed" not in caplog.text


def test_strict_compile_without_a_cxx_compiler_stops_at_fit_start(monkeypatch):
    import shutil

    from local.system import CompileError, SeparationSystem

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    conf = load_config(MICRO, ["training.compile=true"])
    conf["training"]["compile_fallback"] = False  # TODO(config): a --set once the key is in the schema
    with pytest.raises(CompileError, match="no C\\+\\+ compiler"):
        SeparationSystem(conf).on_fit_start()
    conf["training"]["compile_fallback"] = True
    system = SeparationSystem(conf)
    system.on_fit_start()
    assert system._train_forward is None  # the default: a warning, then eager training
