"""The ablation report: aggregation of eval/metrics.json, "not run" rows, the paper's columns.

Also the shell driver's row selection and option errors (run_ablation.sh), which rest on
``local.report --list``.
"""

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from local.config import load_config
from local.report import collect, consistency_warnings, main, paper_reference, select_configs, write_report

REPO = Path(__file__).resolve().parents[1]
DEMO_ROWS = sorted(str(p) for p in (REPO / "conf" / "ablation_demo").glob("*.yml"))
TEST_SET = "data/demo/wav8k/min/tt"


def fake_metrics(eval_dir, si, sdr, stoi=0.9, n=200, test_set=TEST_SET, **extra):
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / "metrics.json").write_text(json.dumps({
        "n_utterances": n, "si_sdr": si + 0.1, "input_si_sdr": 0.1, "si_sdr_imp": si, "sdr": sdr + 0.2,
        "input_sdr": 0.2, "sdr_imp": sdr, "stoi": stoi, "input_stoi": 0.7, "test_set": test_set, **extra}))


@pytest.fixture
def exp_root(tmp_path):
    root = tmp_path / "exp"
    fake_metrics(root / "linear_sigmoid" / "eval", 9.5, 9.9)
    fake_metrics(root / "pinv_softmax" / "eval", 7.25, 7.75, stoi=0.85)
    fake_metrics(root / "sigmoid_sigmoid" / "eval", 8.0, 8.5)
    fake_metrics(root / "oracle" / "wfm" / "eval", 14.0, 14.5, stoi=0.97, mask="WFM")
    (root / "relu_softmax").mkdir()
    # trained, not evaluated; the file is broken, so its basis figure fails (a warning, not an error)
    (root / "relu_softmax" / "best_model.pth").write_bytes(b"")
    return root


def by_name(rows):
    return {r["name"]: r for r in rows}


def test_rows_values_not_run_and_paper_columns(exp_root):
    rows = by_name(collect(DEMO_ROWS, exp_root, exp_root / "oracle"))
    assert "base" not in rows  # shared settings, not a row
    assert set(rows) == {"pinv_softmax", "linear_softmax", "linear_sigmoid", "relu_softmax", "relu_sigmoid",
                         "sigmoid_sigmoid", "linear_relu", "oracle_ibm", "oracle_irm", "oracle_wfm"}
    ls = rows["linear_sigmoid"]
    assert (ls["status"], ls["si_snri"], ls["sdri"], ls["stoi"], ls["n_utterances"]) == ("done", 9.5, 9.9, 0.9, 200)
    assert (ls["encoder"], ls["mask"], ls["decoder"]) == ("linear", "sigmoid", "learned")
    assert (ls["paper_si_snri"], ls["paper_sdri"]) == (13.1, 13.4)
    pinv = rows["pinv_softmax"]
    assert (pinv["encoder"], pinv["mask"], pinv["decoder"]) == ("pinv", "softmax", "learned")
    assert (pinv["si_snri"], pinv["paper_si_snri"], pinv["paper_sdri"]) == (7.25, 12.1, 12.4)
    # rows whose paper values are equal must still come from their own key
    assert (rows["linear_softmax"]["paper_si_snri"], rows["relu_sigmoid"]["paper_si_snri"]) == (12.9, 12.9)
    assert (rows["relu_softmax"]["paper_si_snri"], rows["relu_softmax"]["paper_sdri"]) == (13.0, 13.3)
    for name in ("sigmoid_sigmoid", "linear_relu"):  # not in the paper's table
        assert rows[name]["paper_si_snri"] is None and rows[name]["paper_source"] is None
    assert rows["linear_relu"]["status"] == "not run" and rows["linear_relu"]["si_snri"] is None
    assert rows["relu_softmax"]["status"].startswith("not run")
    # parameters and receptive field come from the config even when nothing ran
    assert rows["linear_relu"]["parameters"] == rows["linear_sigmoid"]["parameters"] > 0
    assert rows["linear_relu"]["receptive_field_s"] == pytest.approx(1.275)
    assert rows["pinv_softmax"]["parameters"] < rows["linear_sigmoid"]["parameters"]  # one shared basis
    wfm, ibm = rows["oracle_wfm"], rows["oracle_ibm"]
    assert (wfm["status"], wfm["si_snri"], wfm["paper_si_snri"], wfm["paper_sdri"]) == ("done", 14.0, 13.4, 13.8)
    assert (ibm["status"], ibm["paper_si_snri"], ibm["paper_sdri"]) == ("not run", 13.0, 13.5)
    assert rows["oracle_irm"]["paper_si_snri"] == 12.2


def test_table_iii_rows_come_first_in_the_papers_order(exp_root):
    names = [r["name"] for r in collect(DEMO_ROWS, exp_root)]
    assert names[:5] == ["pinv_softmax", "linear_softmax", "linear_sigmoid", "relu_softmax", "relu_sigmoid"]
    assert names[-3:] == ["oracle_ibm", "oracle_irm", "oracle_wfm"]


def test_paper_reference_of_whole_architectures():
    assert paper_reference(load_config(REPO / "conf/paper_best.yml")) == (15.3, 15.6, "Table II best")
    assert paper_reference(load_config(REPO / "conf/paper_best_causal.yml")) == (10.6, 11.0, "Table II causal")
    # asteroid's per-frame cLN is not the paper's cumulative norm: no paper figure beside it.
    assert paper_reference(load_config(REPO / "conf/paper_best_causal_cln.yml")) is None
    assert paper_reference(load_config(REPO / "conf/ablation/relu_sigmoid.yml"))[:2] == (12.9, 13.2)
    three = load_config(REPO / "conf/paper_best.yml", ["data.n_src=3"])
    assert paper_reference(three)[:2] == (12.7, 13.1)
    # a causal model is not a row of the (non-causal) Table III
    causal_row = load_config(REPO / "conf/ablation/linear_softmax.yml",
                             ["masknet.causal=true", "masknet.norm_type=cLN"])
    assert paper_reference(causal_row) is None


def test_written_files_and_printed_table(exp_root, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["--exp-root", str(exp_root), "--confs", *DEMO_ROWS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / "ablation.md").read_text()
    assert printed.strip() == md.strip()
    line = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in md.splitlines()
            if ln.startswith("| ") and not ln.startswith("| config")}
    assert line["linear_sigmoid"][5:10] == ["9.50", "9.90", "0.900", "13.1", "13.4"]
    assert line["linear_relu"][5] == "not run" and line["linear_relu"][-1] == "not in the paper"
    assert line["oracle_ibm"][5] == "not run" and line["oracle_ibm"][8:10] == ["13.0", "13.5"]
    assert line["oracle_wfm"][:3] == ["STFT 32/8 ms", "WFM", "iSTFT"]
    with open(out / "ablation.csv") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert rows["pinv_softmax"]["si_snri"] == "7.25" and rows["pinv_softmax"]["paper_sdri"] == "12.4"
    assert rows["linear_relu"]["status"] == "not run" and rows["linear_relu"]["si_snri"] == ""
    assert (out / "ablation_bars.png").is_file() and "![ablation_bars](ablation_bars.png)" in md
    assert not (out / "training_curves.png").exists()  # no training logs in this fake study


def test_nothing_run_yet_is_not_an_error(tmp_path):
    rows = collect(DEMO_ROWS, tmp_path / "empty")
    assert all(r["status"] == "not run" for r in rows)
    text = write_report(rows, tmp_path / "empty", tmp_path / "out")
    assert "no results yet" in text and not (tmp_path / "out" / "ablation_bars.png").exists()


def test_training_curves_figure_when_logs_exist(exp_root, tmp_path):
    log = exp_root / "linear_sigmoid" / "logs" / "metrics.csv"
    log.parent.mkdir(parents=True)
    log.write_text("epoch,step,loss_epoch,val_loss\n0,9,-3.0,\n0,9,,-4.0\n1,19,-5.0,\n1,19,,-5.5\n")
    write_report(collect(DEMO_ROWS, exp_root), exp_root, tmp_path / "out")
    assert (tmp_path / "out" / "training_curves.png").is_file()


def test_different_test_sets_are_flagged(exp_root):
    fake_metrics(exp_root / "linear_relu" / "eval", 9.0, 9.4, n=20, test_set="data/other/tt")
    warnings = consistency_warnings(collect(DEMO_ROWS, exp_root, exp_root / "oracle"))
    assert any("different test sets" in w for w in warnings)
    assert any("different numbers of utterances" in w for w in warnings)


def test_config_selection(tmp_path):
    assert [Path(p).name for p in select_configs(DEMO_ROWS)] == [Path(p).name for p in DEMO_ROWS
                                                                 if not p.endswith("base.yml")]
    with pytest.raises(SystemExit, match="would both be experiment 'linear_relu'"):
        select_configs([REPO / "conf/ablation/linear_relu.yml", REPO / "conf/ablation_demo/linear_relu.yml"])
    with pytest.raises(SystemExit, match="not found"):
        select_configs([tmp_path / "missing.yml"])
    with pytest.raises(SystemExit, match="no config selected"):
        select_configs([REPO / "conf/ablation/base.yml"])


# ---- run_ablation.sh: row selection and option errors (nothing is trained) ----------------
def run_ablation(*args):
    return subprocess.run(["bash", str(REPO / "run_ablation.sh"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ})


def test_run_ablation_splits_rows_across_jobs():
    # --stage 9: past every stage, so only the selection is logged
    res = run_ablation("--confs", "conf/ablation", "--stage", "9", "--job-index", "1", "--n-jobs", "3")
    assert res.returncode == 0, res.stderr
    # sorted by file name, base.yml skipped
    assert "7 configs: linear_relu linear_sigmoid linear_softmax pinv_softmax" in res.stderr
    assert ("job 1 of 3: 2 configs: conf/ablation/linear_sigmoid.yml conf/ablation/relu_sigmoid.yml"
            in res.stderr)


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--jobs"], "option --jobs needs a value"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--job-index", "2", "--n-jobs", "2"], "--job-index 2 must be below --n-jobs 2"),
    (["--corpus", "nope"], "--corpus nope: no folder egs/nope"),
    (["--confs", "conf/nope/*.yml"], "config conf/nope/*.yml not found"),
    (["--jobs", "2", "--gpus", "0"], "names fewer GPUs than --jobs 2"),
])
def test_run_ablation_bad_input_is_a_clear_error(args, message):
    res = run_ablation(*args)
    assert res.returncode != 0
    assert message in res.stderr
    assert "Traceback" not in res.stderr
