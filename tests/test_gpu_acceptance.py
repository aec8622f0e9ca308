"""The GPU acceptance command's CPU dry run, so that it cannot rot between GPU sessions."""

import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_acceptance_dry_run_prints_and_writes_its_table(tmp_path):
    out = tmp_path / "acceptance.md"
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_acceptance.sh"), "--device", "cpu", "--quick",
                          "--conf", str(REPO / "tests" / "conf" / "micro.yml"), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    table = out.read_text()
    assert table in res.stdout
    for row in ("| fp32 | recipe |", "| fp32 | asteroid ConvTasNet (stock) |", "| bf16-mixed | recipe |",
                "mixtures of 1 s"):
        assert row in table, row
    assert "failed" not in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_acceptance_refuses_cuda_without_a_gpu(tmp_path):
    res = subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(REPO / "benchmarks" / "gpu_acceptance.py"),
                          "--device", "cuda", "--out", str(tmp_path / "t.md")], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode != 0 and "no GPU is visible" in res.stderr
