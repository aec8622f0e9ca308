"""The whole recipe through run.sh on a micro corpus and a micro model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
MICRO_PREP = "--n-speakers 4 2 2 --utts-per-speaker 3 3 3 --n-mixtures 8 4 4 --quiet"


def run_sh(*args, timeout=600):
    res = subprocess.run(["bash", str(REPO / "run.sh"), *args], cwd=REPO, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data, exp = root / "data", root / "exp"
    args = ["--conf", "tests/conf/micro.yml", "--data-dir", str(data), "--exp-dir", str(exp),
            "--nj", "1", "--prep-opts", MICRO_PREP]
    first = run_sh(*args)
    return args, data, exp, first


def test_all_stages_produce_their_outputs(micro_run):
    _, data, exp, first = micro_run
    for split in ("tr", "cv", "tt"):
        meta = json.loads((data / "wav8k" / "min" / split / "mix.json").read_text())
        assert len(meta) == {"tr": 8, "cv": 4, "tt": 4}[split]
    for rel in ("conf.yml", "env.json", "best_model.pth", "best_k_models.json", "checkpoints/last.ckpt",
                "logs/metrics.csv", "eval/metrics.csv", "eval/metrics.json", "export/model.pth",
                "export/README.md", "export/conf.yml", "export/metrics.json"):
        assert (exp / rel).is_file(), rel
    summary = json.loads((exp / "eval" / "metrics.json").read_text())
    assert summary["n_utterances"] == 4
    for key in ("si_sdr", "si_sdr_imp", "sdr_imp", "stoi"):
        assert isinstance(summary[key], float)
    examples = sorted((exp / "eval" / "examples").iterdir())
    assert len(examples) == 2
    assert {p.name for p in examples[0].iterdir()} == {"mixture.wav", "s1.wav", "s2.wav",
                                                      "s1_estimate.wav", "s2_estimate.wav"}
    separated = sorted(p.name for p in (exp / "separated").iterdir())
    assert separated == ["mixture_s1.wav", "mixture_s2.wav"]
    for stage in ("Stage 0", "Stage 1", "Stage 2", "Stage 3", "Stage 4"):
        assert stage in first.stderr


def test_export_loads_with_plain_asteroid_and_separates(micro_run, tmp_path):
    _, data, exp, _ = micro_run
    from asteroid.models import ConvTasNet

    from local.separate import load_separator

    plain = ConvTasNet.from_pretrained(str(exp / "export" / "model.pth")).eval()
    ours = load_separator(exp / "export")
    mix, rate = sf.read(next((exp / "eval" / "examples").glob("*/mixture.wav")), dtype="float32")
    x = torch.from_numpy(mix)[None]
    with torch.no_grad():
        assert torch.allclose(plain(x), ours(x), atol=1e-6)
    # any wav file, at another rate, in stereo: one file per speaker at the input's rate
    stereo = tmp_path / "talk.wav"
    sf.write(stereo, torch.stack([x[0], x[0]], 1).repeat(2, 1).numpy(), 16000)
    subprocess.run([sys.executable, "-m", "local.separate", "--model", str(exp / "export"), str(stereo),
                    "--out-dir", str(tmp_path / "out")], cwd=REPO, check=True, capture_output=True)
    for k in (1, 2):
        info = sf.info(tmp_path / "out" / f"talk_s{k}.wav")
        assert info.samplerate == 16000 and info.frames == 2 * len(mix)


def test_rerun_skips_finished_stages(micro_run):
    args, data, exp, _ = micro_run
    before = {p: p.stat().st_mtime_ns for p in (exp / "best_model.pth", exp / "eval" / "metrics.csv",
                                                exp / "export" / "model.pth",
                                                next((data / "wav8k" / "min" / "tr" / "mix").glob("*.wav")))}
    second = run_sh(*args)
    out = second.stdout + second.stderr
    assert "training already finished" in out
    assert "evaluation is up to date" in out
    assert "export is up to date" in out
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())


def test_single_stage_and_bad_input(micro_run, tmp_path):
    args, data, exp, _ = micro_run
    res = subprocess.run(["bash", str(REPO / "run.sh"), "--stage", "2", "--stop-stage", "2",
                          "--conf", "tests/conf/micro.yml", "--data-dir", str(data),
                          "--exp-dir", str(tmp_path / "never_trained")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "not found: train first" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_training_resumes_after_being_killed(micro_run, tmp_path):
    _, data, _, _ = micro_run
    exp = tmp_path / "killed"
    cmd = [sys.executable, "-m", "local.train", "--conf", "tests/conf/micro.yml", "--data-dir", str(data),
           "--exp-dir", str(exp), "--no-progress-bar", "--set", "training.epochs=40",
           "--set", "training.limit_train_batches=2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = exp / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert last.exists(), "training never wrote last.ckpt"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < step_at_kill < 80, "the run finished before it could be killed"
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming from" in res.stderr
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["global_step"] == 80  # 40 epochs x 2 batches: no step done twice or lost
    assert (exp / "best_model.pth").is_file()


def _train(data, exp, *extra):
    cmd = [sys.executable, "-m", "local.train", "--conf", "tests/conf/micro.yml", "--data-dir", str(data),
           "--exp-dir", str(exp), "--no-progress-bar", *extra]
    res = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout + res.stderr


def _first_logged_step(exp):
    import csv

    with open(exp / "logs" / "metrics.csv") as f:
        return min(int(row["step"]) for row in csv.DictReader(f) if row["step"])


def test_force_and_new_data_train_again_from_scratch(micro_run, tmp_path):
    """--force used to delete only the marker, then 'resume' the finished last.ckpt and train nothing;
    re-prepared data (new metadata) did not retrain at all."""
    _, data, _, _ = micro_run
    exp = tmp_path / "forced"
    _train(data, exp)
    first = (exp / "best_model.pth").stat().st_mtime_ns
    assert "training already finished" in _train(data, exp)
    out = _train(data, exp, "--force")
    assert "from scratch" in out and "resuming from" not in out
    assert (exp / "best_model.pth").stat().st_mtime_ns != first
    assert _first_logged_step(exp) < 2  # a new run's log, not the old one continued
    ckpt = torch.load(exp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4  # 2 epochs x 2 batches, once
    # Data prepared again (its metadata rewritten): the finished run no longer counts.
    data2 = tmp_path / "data2"
    import shutil

    shutil.copytree(data, data2, symlinks=True)
    _train(data2, exp)  # same files, copied: new fingerprints -> retrain
    out = _train(data2, exp)
    assert "training already finished" in out
    meta = data2 / "wav8k" / "min" / "tr" / "mix.json"
    meta.write_text(meta.read_text())
    os.utime(meta, ns=(time.time_ns(), time.time_ns() + 10**9))
    out = _train(data2, exp)
    assert "changed since this folder was trained" in out and "from scratch" in out


def test_every_run_keeps_its_log_with_the_command_line(micro_run):
    args, _, exp, first = micro_run
    run_sh(*args)
    logs = sorted((exp / "logs").glob("train.*.log"))
    assert len(logs) >= 2  # the first (training) run's log was not overwritten by the skipped re-run
    assert "best model" in "".join(p.read_text() for p in logs)
    assert (exp / "logs" / "train.log").resolve() == logs[-1].resolve() or \
        (exp / "logs" / "train.log").resolve() in [p.resolve() for p in logs]
    head, stage_command = logs[0].read_text().splitlines()[:2]
    assert head.startswith("# ") and "run.sh" in head and "--conf tests/conf/micro.yml" in head
    # run.sh tells training when the command began and that stages follow (a whole-run time budget)
    started = float(stage_command.split("--run-started ")[1].split()[0])
    assert 0 < time.time() - started < 3600 and stage_command.endswith("--more-stages")


def test_settings_that_would_not_reach_the_model_are_refused(micro_run):
    """--set of a model setting with stage 1 not run used to be accepted and ignored."""
    args, data, exp, _ = micro_run
    res = subprocess.run(["bash", str(REPO / "run.sh"), *args, "--stage", "2", "--stop-stage", "2",
                          "--set", "optim.lr=0.5"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "optim.lr" in res.stderr and "different config" in res.stderr
    assert "Traceback" not in res.stderr


def test_paths_with_spaces_stay_whole(micro_run, tmp_path):
    args, data, exp, _ = micro_run
    folder = tmp_path / "my recordings"
    folder.mkdir()
    mix = next((exp / "eval" / "examples").glob("*/mixture.wav"))
    (folder / "a talk.wav").write_bytes(mix.read_bytes())
    out = run_sh(*args, "--stage", "4", "--stop-stage", "4", "--inputs", str(folder / "a talk.wav"))
    assert (exp / "separated" / "a talk_s1.wav").is_file(), out.stderr[-2000:]


def test_evaluation_settings_apply_without_retraining(micro_run, tmp_path):
    """--set evaluation.* with stage 1 not run used to be accepted and ignored (exit 0)."""
    args, data, exp, _ = micro_run
    copy = tmp_path / "exp_copy"
    import shutil

    shutil.copytree(exp, copy, symlinks=True)
    moved = [a if a != str(exp) else str(copy) for a in args]
    best = (copy / "best_model.pth").stat().st_mtime_ns
    res = run_sh(*moved, "--stage", "2", "--stop-stage", "2", "--set", "evaluation.n_examples=1")
    assert "evaluation is up to date" not in res.stderr
    assert len(list((copy / "eval" / "examples").iterdir())) == 1
    assert (copy / "best_model.pth").stat().st_mtime_ns == best  # same model, re-scored
