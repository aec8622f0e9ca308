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
                 "--exp-dir", "--wsj0", "--wsj0-2mix", "--ablation"):
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
])
def test_bad_input_is_a_clear_error(args, message):
    res = run_sh(*args)
    assert res.returncode != 0
    assert message in res.stderr
    assert "Traceback" not in res.stderr
