"""training.compile: torch.compile'd training steps compute what eager ones do, and degrade safely."""

import shutil

import pytest
import torch

from local.config import load_config
from local.system import SeparationSystem, compile_forward
from tests.test_training_scale import MICRO, _step_losses, make_corpus

needs_cxx = pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "clang++", "c++")),
                               reason="torch.compile needs a C++ compiler")


@needs_cxx
def test_compiled_forward_matches_eager_and_leaves_the_state_dict_alone():
    torch.manual_seed(0)
    system = SeparationSystem(load_config(MICRO, ["training.compile=true"]))
    keys = set(system.state_dict())
    forward = compile_forward(system.model)
    system._train_forward = forward  # what on_fit_start does
    assert set(system.state_dict()) == keys  # a plain function, not a submodule: checkpoints unchanged
    mix = torch.randn(2, 4000)
    expected = system.model(mix)
    got = forward(mix)
    assert got.shape == expected.shape == (2, 2, 4000)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
    got.pow(2).mean().backward()
    grads = [p.grad for p in system.model.masker.bottleneck.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


@needs_cxx
def test_compiled_training_run_gives_the_eager_losses(tmp_path, monkeypatch):
    import local.system
    from local.train import main

    corpus = make_corpus(tmp_path / "corpus", n_items=(8, 2))
    compiled = []
    real = local.system.compile_forward

    def spy(model):
        compiled.append(real(model))
        return compiled[-1]

    monkeypatch.setattr(local.system, "compile_forward", spy)
    common = ["--conf", MICRO, "--data-dir", str(corpus), "--no-progress-bar", "--set", "training.epochs=1",
              "--set", "training.limit_train_batches=3", "--set", "training.early_stop_patience=0",
              "--set", "data.num_workers=0", "--set", "training.num_threads=1"]
    assert main([*common, "--exp-dir", str(tmp_path / "eager")]) == 0
    assert compiled == []  # compile: false (the micro config) never compiles
    assert main([*common, "--exp-dir", str(tmp_path / "compiled"), "--set", "training.compile=true"]) == 0
    assert len(compiled) == 1 and compiled[0] is not None
    eager, comp = _step_losses(tmp_path / "eager"), _step_losses(tmp_path / "compiled")
    assert len(eager) == len(comp) == 3
    assert comp == pytest.approx(eager, rel=1e-3, abs=1e-3)
    ckpt = torch.load(tmp_path / "compiled" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not any("_orig_mod" in k or "_train_forward" in k for k in ckpt["state_dict"])


def test_without_a_cxx_compiler_training_runs_eagerly_and_says_so(monkeypatch, caplog):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    system = SeparationSystem(load_config(MICRO, ["training.compile=true"]))
    with caplog.at_level("WARNING", logger="local.system"):
        assert compile_forward(system.model) is None
    assert "no C++ compiler" in caplog.text and "training.compile" in caplog.text


@needs_cxx
def test_benchmark_script_prints_both_timings_and_checks_the_loss(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark_compile.py"
    spec = importlib.util.spec_from_file_location("benchmark_compile", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--conf", MICRO, "--steps", "1", "--repeats", "1", "--threads", "1", "--profile", "3"]) == 0
    out = capsys.readouterr().out
    for name in ("eager", "compiled"):  # the profile: three operators of each step, with their share
        block = out.split(f"\nprofile of the {name} step: ")[1].splitlines()
        assert float(block[0].split()[0]) > 0 and len(block) >= 4
        assert all(line.split()[1] == "ms" and line.split()[2].endswith("%") for line in block[2:4])
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in (["eager"], ["compiled"])}
    assert set(rows) == {"eager", "compiled"}
    assert all(float(ms) > 0 and float(rate) > 0 for ms, rate in rows.values())
    assert "speed-up:" in out and "loss eager" in out
