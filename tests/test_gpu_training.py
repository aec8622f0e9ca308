"""GPU training: paper_best steps in every precision, eager and compiled, and a resume (``pytest -m gpu``).

Skipped without CUDA (CI has none); ``benchmarks/gpu_acceptance.sh`` runs them on a GPU machine.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data = tmp_path_factory.mktemp("gpu") / "data"
    subprocess.run([sys.executable, "-m", "egs.demo.prepare", "--out", str(data), "--nj", "2", "--quiet",
                    "--n-speakers", "4", "2", "2", "--utts-per-speaker", "3", "2", "2",
                    "--n-mixtures", "16", "4", "4"], cwd=REPO, env=ENV, check=True, capture_output=True)
    return data


def train_cmd(corpus, exp, *extra, epochs=1):
    return [sys.executable, "-m", "local.train", "--conf", str(REPO / "conf" / "paper_best.yml"),
            "--data-dir", str(corpus), "--exp-dir", str(exp), "--no-progress-bar",
            "--accelerator", "gpu", "--devices", "1",
            "--set", "data.segment=1.0", "--set", "data.min_segment=0.5", "--set", "data.batch_size=2",
            "--set", "data.num_workers=0", "--set", f"training.epochs={epochs}",
            "--set", "training.limit_train_batches=3", *extra]


def train(corpus, exp, *extra, epochs=1):
    res = subprocess.run(train_cmd(corpus, exp, *extra, epochs=epochs), cwd=REPO, env=ENV, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stderr


@pytest.mark.parametrize("precision", ["32-true", "16-mixed", "bf16-mixed"])
@pytest.mark.parametrize("compiled", [False, True])
def test_paper_best_trains_on_the_gpu(corpus, tmp_path, precision, compiled):
    exp = tmp_path / "exp"
    train(corpus, exp, "--precision", precision, "--set", f"training.compile={str(compiled).lower()}",
          "--set", "training.compile_fallback=false")
    ckpt = torch.load(exp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_a_gpu_checkpoint_resumes(corpus, tmp_path):
    """Interrupted (SIGTERM, as a scheduler does) after its first epoch, the run resumes on the GPU."""
    import signal
    import time

    exp = tmp_path / "exp"
    cmd = train_cmd(corpus, exp, epochs=40)
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = exp / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) in (0, 143)
    res = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from" in res.stderr
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 40 * 3
