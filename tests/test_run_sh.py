"""run.sh: help, and bad input that must fail early with a message naming it."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_sh(*args, cwd=REPO):
    return subprocess.run(["bash", str(REPO / "run.sh"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ})


def test_help_lists_stages_and_options():
    res = run_sh("--help")
    assert res.returncode == 0
    for text in ("0  data preparation", "1  training", "2  evaluation", "3  export",
                 "--stage", "--stop-stage", "--corpus", "--conf", "--tag", "--devices", "--num-workers",
                 "--exp-dir", "--wsj0", "--wsj0-2mix", "--ablation", "--precision", "--strategy", "--num-nodes",
                 "--device", "--seeds", "--inputs"):
        assert text in res.stdout, text


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--stage"], "option --stage needs a value"),
    (["--stage", "x"], "--stage must be a non-negative integer"),
    (["--corpus", "nope"], "--corpus nope: no folder egs/nope"),
    (["--conf", "conf/missing.yml"], "--conf conf/missing.yml: no such file"),
    (["--wsj0", "/no/such/wsj0"], "--wsj0 /no/such/wsj0: no such folder"),
    (["--wsj0-2mix", "/no/such/mix"], "--wsj0-2mix /no/such/mix: no such folder"),
    (["--ablation", "/no/such/confs"], "--ablation /no/such/confs: no such folder of configs"),
    (["--wsj0"], "option --wsj0 needs a value"),
    # accepted and ignored before (exit 0):
    (["--stage", "9"], "--stage 9: there is no such stage (the stages are 0-4)"),
    (["--stage", "2", "--stop-stage", "0"], "--stop-stage 0 is before --stage 2"),
    # names, not paths: these trained outside exp/ (and outside the checkout)
    (["--tag", "../../etc"], "--tag '../../etc' must be a plain name"),
    (["--tag", "a/b"], "--tag 'a/b' must be a plain name"),
    (["--corpus", "../egs"], "--corpus '../egs' must be a folder name under egs/"),
    # the resolved config is checked before stage 0 (lr=-1 was saved, then failed in stage 1)
    (["--set", "optim.lr=-1"], "optim.lr=-1.0 must be > 0"),
    (["--set", "data.batch_size=0"], "data.batch_size=0 must be >= 1"),
    (["--ablation", "conf/ablation_demo", "--tag", "x"], "--tag has no meaning with --ablation"),
    (["--inputs", "/no/such/file.wav", "--stage", "4"], "--inputs /no/such/file.wav: no such file"),
    (["--seeds", "3"], "--seeds has a meaning only with --ablation"),
    (["--precision", "8", "--stop-stage", "1"], "Precision 8 is invalid"),
    (["--strategy", "nonsense", "--stop-stage", "1"], "training.accelerator/devices/num_nodes/strategy/precision"),
])
def test_bad_input_is_a_clear_error(args, message):
    res = run_sh(*args)
    assert res.returncode != 0
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_config_errors_stop_before_any_stage(tmp_path):
    data = tmp_path / "data"
    res = run_sh("--set", "optim.lr=-1", "--data-dir", str(data))
    assert res.returncode != 0 and "nothing was run" in res.stderr
    assert not data.exists()  # stage 0 never started


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_several_devices_without_a_gpu_are_refused(tmp_path):
    """--devices 2 on a CPU-only machine silently ran two-process CPU DDP (twice the batch)."""
    res = run_sh("--devices", "2", "--data-dir", str(tmp_path / "data"))
    assert res.returncode != 0
    assert "training.devices=2 asks for several GPUs" in res.stderr
    assert "training.accelerator=cpu" in res.stderr  # how to ask for CPU processes on purpose


def test_ablation_passes_every_run_option_on(tmp_path):
    """run.sh --ablation dropped --set, --devices, --data-dir, --wsj0 and --force."""
    data = tmp_path / "my data"  # a space: the path must stay one word all the way down
    res = run_sh("--ablation", "conf/ablation_demo", "--stop-stage", "0", "--data-dir", str(data),
                 "--set", "training.epochs=1", "--devices", "1", "--force", "--nj", "1",
                 "--prep-opts", "--n-speakers 4 2 2 --utts-per-speaker 2 2 2 --n-mixtures 4 2 2 --quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (data / "wav8k" / "min" / "tt" / "mix.json").is_file()
    # run_ablation.sh logs its command line: every option arrived, each value whole
    line = next(l for l in res.stderr.splitlines() if "run_ablation.sh --confs" in l and "(run_ablation.sh" in l)
    for part in ("--set training.epochs=1", "--devices 1", "--force", "--nj 1", "my\\ data"):
        assert part in line, (part, line)
