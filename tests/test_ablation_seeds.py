"""run_ablation.sh with seeds: folders, training.seed forwarding, job units, skipping, resuming.

The driver runs in a sandbox copy of the recipe: run_ablation.sh and tools/log.sh copied, the
repository's local/, conf/, egs/ and .venv linked, and a no-op tools/setup_env.sh (a test never
touches the environment). Most tests put a stub run.sh there that records every call and fakes
what stages 1-2 leave behind; the last one runs the real run.sh on a micro corpus and a micro
config, to see a seed reach the trained model and a finished run be skipped for real.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = "conf/ablation_demo"
TWO_ROWS = f"{DEMO}/relu_softmax.yml {DEMO}/linear_sigmoid.yml"
MICRO_PREP = "--n-speakers 4 2 2 --utts-per-speaker 3 3 3 --n-mixtures 8 4 4 --quiet"

STUB_RUN_SH = r"""#!/usr/bin/env bash
# Stub of run.sh (tests/test_ablation_seeds.py): one line per call in $STUB_CALLS
# (exp dir, every training.seed given, stages, CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS, the call);
# stage 1 "trains" unless .train.done exists; stage 2 writes eval/metrics.{json,csv}.
set -euo pipefail
stage=0; stop=100; exp=; seeds=
call=$(printf '%q ' "$@")
while [ $# -gt 0 ]; do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop=$2; shift 2 ;;
    --exp-dir) exp=$2; shift 2 ;;
    --set) case $2 in training.seed=*) seeds+="${2#training.seed=},";; esac; shift 2 ;;
    *) shift ;;
  esac
done
printf '%s\t%s\t%s-%s\t%s\t%s\t%s\n' "$exp" "$seeds" "$stage" "$stop" "${CUDA_VISIBLE_DEVICES-unset}" \
  "${OMP_NUM_THREADS-unset}" "$call" >> "$STUB_CALLS"
sleep "${STUB_SLEEP:-0}"
if [ -n "$exp" ] && [ "$stage" -le 1 ] && [ "$stop" -ge 1 ]; then
  if [ -f "$exp/.train.done" ]; then
    echo "skip $exp" >> "$STUB_CALLS.events"
  else
    if [ -n "${STUB_FAIL:-}" ] && [[ $exp == *"$STUB_FAIL" ]]; then echo "fail $exp" >> "$STUB_CALLS.events"; exit 1; fi
    mkdir -p "$exp"; touch "$exp/.train.done"; echo "train $exp" >> "$STUB_CALLS.events"
  fi
fi
if [ -n "$exp" ] && [ "$stage" -le 2 ] && [ "$stop" -ge 2 ]; then
  seed=${seeds%,}; seed=${seed##*,}
  mkdir -p "$exp/eval"
  printf 'utt,flag,si_sdr,input_si_sdr,sdr,input_sdr\nu1,,%s.5,0,%s.9,0\nu2,,%s.0,0,%s.4,0\n' \
    $((5 + seed)) $((5 + seed)) $((6 + seed)) $((6 + seed)) > "$exp/eval/metrics.csv"
  printf '{"n_utterances": 2, "si_sdr_imp": %s.75, "sdr_imp": %s.15, "test_set": "tt"}\n' \
    $((5 + seed)) $((6 + seed)) > "$exp/eval/metrics.json"
fi
"""


def make_sandbox(root: Path, real_run_sh: bool = False) -> Path:
    root.mkdir(parents=True)
    shutil.copy2(REPO / "run_ablation.sh", root / "run_ablation.sh")
    (root / "tools").mkdir()
    shutil.copy2(REPO / "tools" / "log.sh", root / "tools" / "log.sh")
    setup = root / "tools" / "setup_env.sh"
    setup.write_text("#!/usr/bin/env bash\nexit 0  # the sandbox uses the repository's .venv as it is\n")
    setup.chmod(0o755)
    for name in ("local", "conf", "egs", ".venv"):
        (root / name).symlink_to(REPO / name)
    run_sh = root / "run.sh"
    if real_run_sh:
        shutil.copy2(REPO / "run.sh", run_sh)
    else:
        run_sh.write_text(STUB_RUN_SH)
        run_sh.chmod(0o755)
    return root


@pytest.fixture
def sandbox(tmp_path):
    return make_sandbox(tmp_path / "recipe")


def run_ablation(sandbox, *args, env=None, timeout=120):
    environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    environ.update(STUB_CALLS=str(sandbox / "calls.tsv"), **(env or {}))
    return subprocess.run(["bash", str(sandbox / "run_ablation.sh"), *args], cwd=sandbox, capture_output=True,
                          text=True, timeout=timeout, env=environ)


def calls(sandbox):
    path = sandbox / "calls.tsv"
    if not path.is_file():
        return []
    keys = ("exp", "seeds", "stages", "gpu", "threads", "call")
    return [dict(zip(keys, line.split("\t"))) for line in path.read_text().splitlines()]


def events(sandbox):
    path = sandbox / "calls.tsv.events"
    return path.read_text().split("\n")[:-1] if path.is_file() else []


# ---- the units: (row, seed), seed by seed ------------------------------------------------------
def test_every_row_and_seed_is_its_own_folder_with_its_seed(sandbox):
    res = run_ablation(sandbox, "--confs", TWO_ROWS, "--seeds", "2", "--stage", "1", "--stop-stage", "2",
                       "--exp-root", "exp/study", "--set", "training.epochs=1")
    assert res.returncode == 0, res.stderr
    seen = calls(sandbox)
    assert [c["exp"] for c in seen] == ["exp/study/relu_softmax/seed0", "exp/study/linear_sigmoid/seed0",
                                        "exp/study/relu_softmax/seed1", "exp/study/linear_sigmoid/seed1"]
    assert [c["seeds"] for c in seen] == ["0,", "0,", "1,", "1,"]  # one training.seed per call, its own
    assert all(c["stages"] == "1-2" and "--set training.epochs=1" in c["call"] for c in seen)
    assert all(f"--conf {DEMO}/{Path(c['exp']).parent.name}.yml" in c["call"] for c in seen)
    for c in seen:
        assert (sandbox / c["exp"] / "eval" / "metrics.json").is_file()
    assert "2 configs: relu_softmax linear_sigmoid x 2 seeds (0 1): 4 runs" in res.stderr
    assert "---- linear_sigmoid/seed1" in res.stderr


@pytest.mark.parametrize("seeds,expected", [
    ("1", "x 1 seeds (0): 7 runs"),       # the default: seed 0 alone, in seed0/
    ("3", "x 3 seeds (0 1 2): 21 runs"),
    ("0 5 7", "x 3 seeds (0 5 7): 21 runs"),
    ("7,", "x 1 seeds (7): 7 runs"),      # a one-seed list
    ("2,04", "x 2 seeds (2 4): 14 runs"),
])
def test_seed_counts_and_lists(sandbox, seeds, expected):
    res = run_ablation(sandbox, "--confs", DEMO, "--seeds", seeds, "--stage", "9")  # past every stage
    assert res.returncode == 0, res.stderr
    assert expected in res.stderr and not calls(sandbox)


def test_paper_rows_and_shares_of_a_job_array(sandbox):
    res = run_ablation(sandbox, "--paper-rows", "--seeds", "3", "--stage", "9", "--job-index", "1",
                       "--n-jobs", "4")
    assert res.returncode == 0, res.stderr
    rows = ["linear_sigmoid", "linear_softmax", "pinv_softmax", "relu_sigmoid", "relu_softmax"]  # file order
    assert f"5 configs: {' '.join(rows)} x 3 seeds (0 1 2): 15 runs" in res.stderr
    units = [f"{row}/seed{k}" for k in range(3) for row in rows]
    assert f"job 1 of 4: 4 runs: {' '.join(units[1::4])}" in res.stderr


def test_jobs_share_one_queue_of_runs(sandbox):
    res = run_ablation(sandbox, "--confs", TWO_ROWS, "--seeds", "3", "--stage", "1", "--stop-stage", "2",
                       "--jobs", "2", "--gpus", "4 5", env={"STUB_SLEEP": "0.3"})
    assert res.returncode == 0, res.stderr
    seen = calls(sandbox)
    exps = sorted(c["exp"] for c in seen)
    assert exps == sorted(f"exp/demo/{row}/seed{k}" for row in ("relu_softmax", "linear_sigmoid") for k in range(3))
    assert {c["gpu"] for c in seen} == {"4", "5"}  # both workers took runs
    expected_threads = str(max(1, os.cpu_count() // 2))
    assert {c["threads"] for c in seen} == {expected_threads}  # cores / jobs, not every core each
    assert all(c["seeds"] == Path(c["exp"]).name[len("seed"):] + "," for c in seen)
    logs = sandbox / "exp" / "demo" / "ablation_logs"
    assert "---- worker" in (logs / "worker0.log").read_text() + (logs / "worker1.log").read_text()
    res = run_ablation(sandbox, "--confs", TWO_ROWS, "--seeds", "1", "--stage", "1", "--stop-stage", "1",
                       "--jobs", "2", env={"OMP_NUM_THREADS": "3"})
    assert res.returncode == 0 and {c["threads"] for c in calls(sandbox)[6:]} == {"3"}  # the caller's setting wins


def test_a_failed_run_is_reported_and_the_rerun_only_does_what_is_left(sandbox):
    args = ["--confs", TWO_ROWS, "--seeds", "2", "--stage", "1", "--stop-stage", "2"]
    res = run_ablation(sandbox, *args, env={"STUB_FAIL": "linear_sigmoid/seed0"})
    assert res.returncode != 0
    assert "1 runs failed: linear_sigmoid/seed0" in res.stderr and "re-run the same command" in res.stderr
    assert len(calls(sandbox)) == 4  # the others went on
    assert sorted(e.split()[0] for e in events(sandbox)) == ["fail", "train", "train", "train"]
    res = run_ablation(sandbox, *args)  # the same command again
    assert res.returncode == 0, res.stderr
    again = events(sandbox)[4:]
    assert sorted(again) == sorted(["skip exp/demo/relu_softmax/seed0", "train exp/demo/linear_sigmoid/seed0",
                                    "skip exp/demo/relu_softmax/seed1", "skip exp/demo/linear_sigmoid/seed1"])


def test_the_report_stage_reads_the_seeds(sandbox):
    args = ["--confs", TWO_ROWS, "--seeds", "2"]
    assert run_ablation(sandbox, *args, "--stage", "1", "--stop-stage", "2").returncode == 0
    res = run_ablation(sandbox, *args, "--stage", "4", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    md = (sandbox / "exp" / "demo" / "ablation_report" / "ablation.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| relu_softmax | relu"))
    assert "| 2/2 | 6.25 |" in line  # seeds 0 and 1: 5.75 and 6.75 (the stub's metrics)
    assert "| linear_sigmoid | relu_softmax |" in md  # the paper's order


def test_a_single_run_folder_of_before_seeds_is_left_alone(sandbox):
    old = sandbox / "exp" / "demo" / "relu_softmax"
    old.mkdir(parents=True)
    (old / "conf.yml").write_text("training: {seed: 0}\n")
    res = run_ablation(sandbox, "--confs", TWO_ROWS, "--stage", "1", "--stop-stage", "1")
    assert res.returncode == 0, res.stderr
    assert "holds a run of the single-run layout" in res.stderr
    assert calls(sandbox)[0]["exp"] == "exp/demo/relu_softmax/seed0" and (old / "conf.yml").is_file()


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--jobs"], "option --jobs needs a value"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--job-index", "2", "--n-jobs", "2"], "--job-index 2 must be below --n-jobs 2"),
    (["--corpus", "nope"], "--corpus nope: no folder egs/nope"),
    (["--confs", "conf/nope/*.yml"], "config conf/nope/*.yml not found"),
    (["--jobs", "2", "--gpus", "0"], "names fewer GPUs than --jobs 2"),
    (["--seeds", "0"], "--seeds 0: at least one seed"),
    (["--seeds", "1 1"], "seed 1 is given twice"),
    (["--seeds", "0 x"], "'x' is not a non-negative integer"),
    (["--seeds", "-1,"], "'-1' is not a non-negative integer"),
    (["--seeds"], "option --seeds needs a value"),
    (["--set", "training.seed=3"], "the seeds of the study are set with --seeds"),
    (["--run-opts", "--set training.seed=3"], "set the seeds of the study with --seeds"),
])
def test_bad_input_is_a_clear_error(sandbox, args, message):
    res = run_ablation(sandbox, *args)
    assert res.returncode != 0
    assert message in res.stderr
    assert "Traceback" not in res.stderr and not calls(sandbox)


# ---- the real run.sh: micro corpus, micro config ---------------------------------------------
def test_seeds_reach_the_models_and_finished_runs_are_skipped(tmp_path):
    box = make_sandbox(tmp_path / "recipe", real_run_sh=True)
    rows = tmp_path / "rows"
    rows.mkdir()
    (rows / "tiny.yml").write_text(f"base: {REPO / 'tests' / 'conf' / 'micro.yml'}\n"
                                   "training: {epochs: 1, limit_train_batches: 1}\nevaluation: {n_examples: 0}\n")
    args = ["--confs", str(rows), "--seeds", "2", "--stop-stage", "2", "--data-dir", str(tmp_path / "data"),
            "--exp-root", str(tmp_path / "exp"), "--nj", "1", "--prep-opts", MICRO_PREP]
    res = run_ablation(box, *args, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    weights = []
    for k in (0, 1):
        exp = tmp_path / "exp" / "tiny" / f"seed{k}"
        assert yaml.safe_load((exp / "conf.yml").read_text())["training"]["seed"] == k
        assert json.loads((exp / "eval" / "metrics.json").read_text())["n_utterances"] == 4
        weights.append(torch.load(exp / "best_model.pth", map_location="cpu", weights_only=True)["state_dict"])
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # two seeds, two models
    # Again: each folder's saved config (its seed included) matches what the driver passes, so
    # the finished training is skipped, not refused or redone (the evaluation skips alike,
    # tests/test_end_to_end.py).
    res = run_ablation(box, *args, "--stage", "1", "--stop-stage", "1", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (res.stdout + res.stderr).count("training already finished") == 2


def test_the_training_seed_drives_initialisation_and_the_mixing_stream(tmp_path):
    """What local.train does with training.seed: seed_everything, then the model and the data module."""
    import pytorch_lightning as pl

    from local.config import load_config
    from local.data import SeparationDataModule
    from local.system import SeparationSystem
    from tests.test_data import _dm_conf, make_split

    make_split(tmp_path, [8000] * 6)
    conf = load_config(REPO / "tests" / "conf" / "micro.yml")

    def start(seed):
        pl.seed_everything(seed, workers=True)
        weights = SeparationSystem(conf).model.state_dict()
        data = SeparationDataModule(tmp_path, _dm_conf(), seed=seed)
        data.setup("fit")
        return weights, data.train_set[3]

    (w0, mix0), (w0_again, mix0_again), (w1, mix1) = start(0), start(0), start(1)
    assert all(torch.equal(w0[k], w0_again[k]) for k in w0) and torch.equal(mix0[0], mix0_again[0])
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)  # another seed, another initialisation
    assert not torch.equal(mix0[0], mix1[0])  # ... and another stream of training mixtures
