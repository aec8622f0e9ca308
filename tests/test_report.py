"""The ablation report: rows over seeds, spreads, two-level intervals, verdicts, the paper's columns.

The study is a synthetic experiment tree: per (row, seed) an ``eval/metrics.csv`` (per utterance)
and ``eval/metrics.json`` with known means, so every number of the report can be checked.
The shell driver (run_ablation.sh) is tested in tests/test_ablation_seeds.py.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from local.config import load_config
from local.report import (best_run, collect, consistency_warnings, main, pair_statistics, paper_reference,
                          run_dirs, select_configs, write_report)

REPO = Path(__file__).resolve().parents[1]
DEMO_ROWS = sorted(str(p) for p in (REPO / "conf" / "ablation_demo").glob("*.yml"))
TEST_SET = "data/demo/wav8k/min/tt"
N_UTTS = 60
DIFFICULTY = np.random.default_rng(0).normal(0, 3, N_UTTS)  # the same test utterances for every run


def fake_run(run_dir, si, sdr=None, seed=0, noise=0.3, test_set=TEST_SET, conf=None, log_val=None, n=N_UTTS,
             **extra):
    """One evaluated run: per-utterance SI-SNRi = si + shared difficulty + noise (seeded by ``seed``);
    metrics.json holds the exact means of metrics.csv. ``conf``: a config file to save as conf.yml
    with training.seed=seed; ``log_val``: validation SI-SNR per epoch for logs/metrics.csv."""
    rng = np.random.default_rng(1000 + seed + int(si * 100))
    si_u = si + DIFFICULTY[:n] + rng.normal(0, noise, n)
    sdr_u = si_u + (0.4 if sdr is None else sdr - si)
    eval_dir = Path(run_dir) / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    with open(eval_dir / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["utt", "flag", "si_sdr", "input_si_sdr", "sdr", "input_sdr", "stoi", "input_stoi"])
        for i in range(n):
            w.writerow([f"u{i:03d}", "", si_u[i] + 0.1, 0.1, sdr_u[i] + 0.2, 0.2, 0.9, 0.7])
    (eval_dir / "metrics.json").write_text(json.dumps({
        "n_utterances": n, "si_sdr_imp": float(si_u.mean()), "sdr_imp": float(sdr_u.mean()), "stoi": 0.9,
        "input_stoi": 0.7, "test_set": test_set, "si_sdr_imp_ci": [float(si_u.mean()) - 0.5,
                                                                   float(si_u.mean()) + 0.5], **extra}))
    if conf is not None:
        saved = load_config(conf, [f"training.seed={seed}"])
        (Path(run_dir) / "conf.yml").write_text(yaml.safe_dump(saved, sort_keys=False))
    if log_val is not None:
        write_log(Path(run_dir) / "logs" / "metrics.csv", log_val)
    return float(si_u.mean())


def write_log(path, val_si_snr):
    """A Lightning CSVLogger file whose validation SI-SNR per epoch (from 1) is ``val_si_snr``."""
    lines = ["epoch,step,loss_epoch,val_loss"]
    for e, v in enumerate(val_si_snr):
        lines += [f"{e},{10 * e + 9},{-v - 1.0},", f"{e},{10 * e + 9},,{-v}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


ROW_MEANS = {"relu_softmax": 7.0, "linear_sigmoid": 5.0, "linear_softmax": 5.0, "pinv_softmax": 4.5}
SEED_OFFSETS = [-0.15, 0.0, 0.15]
MEANS = {}  # per-seed SI-SNRi of the fixture's rows, filled by exp_root


@pytest.fixture
def exp_root(tmp_path):
    """A study over seeds 0 1 2 in every state a study can be in."""
    root = tmp_path / "exp"
    conf_dir = REPO / "conf" / "ablation_demo"
    means = {}
    for name, mean in ROW_MEANS.items():
        seeds = [0, 1] if name == "pinv_softmax" else [0, 1, 2]  # pinv: seed 2 not run yet
        means[name] = [fake_run(root / name / f"seed{k}", mean + SEED_OFFSETS[k], seed=k,
                                conf=conf_dir / f"{name}.yml", log_val=[1.0 + mean / 4, 2.0 + mean / 4 + k / 10])
                       for k in seeds]
    # trained, not evaluated (the file is broken: its basis figure fails, a warning, not an error)
    (root / "relu_sigmoid" / "seed0").mkdir(parents=True)
    (root / "relu_sigmoid" / "seed0" / "best_model.pth").write_bytes(b"")
    # the single-run layout of before --seeds: the row folder is the experiment (seed 0)
    means["sigmoid_sigmoid"] = [fake_run(root / "sigmoid_sigmoid", 3.0, conf=conf_dir / "sigmoid_sigmoid.yml")]
    fake_run(root / "oracle" / "wfm", 14.0, mask="WFM")
    MEANS.clear()
    MEANS.update(means)
    return root


def by_name(rows):
    return {r["name"]: r for r in rows}


def test_rows_over_seeds_spreads_and_intervals(exp_root):
    rows = by_name(collect(DEMO_ROWS, exp_root, exp_root / "oracle", seeds=[0, 1, 2]))
    assert "base" not in rows  # shared settings, not a row
    assert set(rows) == {"pinv_softmax", "linear_softmax", "linear_sigmoid", "relu_softmax", "relu_sigmoid",
                         "sigmoid_sigmoid", "linear_relu", "oracle_ibm", "oracle_irm", "oracle_wfm"}
    rs = rows["relu_softmax"]
    seed_means = MEANS["relu_softmax"]
    assert (rs["status"], rs["n_seeds"], rs["seeds"], rs["n_utterances"]) == ("done", 3, [0, 1, 2], N_UTTS)
    assert rs["si_snri"] == pytest.approx(np.mean(seed_means))
    assert rs["si_snri_seed_sd"] == pytest.approx(np.std(seed_means, ddof=1))
    assert (rs["si_snri_seed_min"], rs["si_snri_seed_max"]) == pytest.approx((min(seed_means), max(seed_means)))
    assert rs["si_snri_seed_values"] == pytest.approx(seed_means)
    lo, hi = rs["si_snri_ci"]
    assert lo < min(seed_means) <= max(seed_means) < hi  # seeds and utterances: wider than the seeds alone
    assert rs["sdri"] == pytest.approx(np.mean(seed_means) + 0.4) and rs["sdri_ci"][0] < rs["sdri"]
    assert rs["budget"] == "6 x 250 = 1500 steps"
    assert (rs["encoder"], rs["mask"], rs["decoder"], rs["paper_si_snri"], rs["paper_sdri"]) == (
        "relu", "softmax", "learned", 13.0, 13.3)
    pinv = rows["pinv_softmax"]
    assert (pinv["status"], pinv["seeds"], pinv["encoder"]) == ("2 of 3 seeds", [0, 1], "pinv")
    assert pinv["si_snri"] == pytest.approx(np.mean(MEANS["pinv_softmax"]))
    assert [r["status"] for r in pinv["runs"]] == ["done", "done", "not run"]
    assert rows["relu_sigmoid"]["status"] == "not run (trained, not evaluated)"
    assert rows["relu_sigmoid"]["si_snri"] is None and rows["relu_sigmoid"]["si_snri_ci"] is None
    ss = rows["sigmoid_sigmoid"]  # single-run layout: its conf.yml says seed 0
    assert ss["status"] == "1 of 3 seeds" and ss["runs"][0]["layout"] == "single"
    assert ss["runs"][0]["exp_dir"] == str(exp_root / "sigmoid_sigmoid") and ss["si_snri_seed_sd"] is None
    lr = rows["linear_relu"]
    assert lr["status"] == "not run" and lr["si_snri"] is None and lr["paper_si_snri"] is None
    assert lr["parameters"] == rows["linear_sigmoid"]["parameters"] > 0  # from the config, nothing ran
    assert lr["receptive_field_s"] == pytest.approx(1.275)
    assert rows["pinv_softmax"]["parameters"] < rows["linear_sigmoid"]["parameters"]  # one shared basis
    wfm, ibm = rows["oracle_wfm"], rows["oracle_ibm"]
    assert (wfm["status"], wfm["paper_si_snri"], wfm["paper_sdri"], wfm["n_seeds"]) == ("done", 13.4, 13.8, None)
    assert wfm["si_snri_ci"] == pytest.approx([wfm["si_snri"] - 0.5, wfm["si_snri"] + 0.5])  # utterances only
    assert (ibm["status"], ibm["paper_si_snri"], ibm["paper_sdri"]) == ("not run", 13.0, 13.5)


def test_rows_without_seeds_given_are_found_on_disk(exp_root):
    rows = by_name(collect(DEMO_ROWS, exp_root))
    assert rows["relu_softmax"]["seeds"] == [0, 1, 2] and rows["pinv_softmax"]["status"] == "done"
    assert rows["sigmoid_sigmoid"]["status"] == "done" and rows["linear_relu"]["runs"] == []
    assert [k for k, _, _ in run_dirs(exp_root / "relu_softmax")] == [0, 1, 2]
    assert run_dirs(exp_root / "nothing") == []
    # once a row has seed<k> folders, its old single-run folder no longer stands in for seed 0
    fake_run(exp_root / "sigmoid_sigmoid" / "seed1", 3.5, seed=1)
    assert [(k, layout) for k, _, layout in run_dirs(exp_root / "sigmoid_sigmoid", [0, 1])] == [
        (0, "seeds"), (1, "seeds")]
    assert [k for k, _, _ in run_dirs(exp_root / "sigmoid_sigmoid")] == [1]


def test_table_iii_rows_come_first_in_the_papers_order(exp_root):
    names = [r["name"] for r in collect(DEMO_ROWS, exp_root)]
    assert names[:5] == ["pinv_softmax", "linear_softmax", "linear_sigmoid", "relu_softmax", "relu_sigmoid"]
    assert names[-3:] == ["oracle_ibm", "oracle_irm", "oracle_wfm"]


def test_pairs_and_verdicts(exp_root):
    pairs = pair_statistics(collect(DEMO_ROWS, exp_root, seeds=[0, 1, 2]))
    si = {(p["a"], p["b"]): p for p in pairs if p["metric"] == "si_snri"}
    # rows with results: pinv (2 seeds), linear_softmax, linear_sigmoid, relu_softmax, sigmoid_sigmoid (1)
    assert len(si) == 10 and len(pairs) == 20
    far = si[("linear_sigmoid", "relu_softmax")]  # 2 dB apart, B is better
    assert far["verdict"] == "no" and far["diff"] == pytest.approx(-2.0, abs=0.1) and far["ci"][1] < 0
    assert far["welch"]["p"] < 0.05 and far["paper_diff"] == pytest.approx(0.1)
    assert (far["seeds_a"], far["seeds_b"], far["n_utterances"]) == (3, 3, N_UTTS)
    same = si[("linear_softmax", "linear_sigmoid")]  # one distribution
    assert same["verdict"] == "cannot tell"
    assert si[("pinv_softmax", "relu_softmax")]["verdict"] == "no"  # 2 seeds against 3 still a test
    one_seed = si[("relu_softmax", "sigmoid_sigmoid")]
    assert one_seed["welch"] is None and one_seed["verdict"] == "cannot tell"  # 4 dB, but one run
    assert one_seed["ci"][0] > 0


def test_written_files_and_printed_table(exp_root, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["--exp-root", str(exp_root), "--confs", *DEMO_ROWS, "--seeds", "0", "1", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / "ablation.md").read_text()
    assert printed.strip() == md.strip()
    table = md.split("### Every run")[0]
    line = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in table.splitlines()
            if ln.startswith("| ") and not ln.startswith("| config")}
    rs = line["relu_softmax"]
    assert rs[:7] == ["relu", "softmax", "learned", "0.40M", "1.275", "3/3", rs[6]]
    mean = np.mean(MEANS["relu_softmax"])
    assert rs[6] == f"{mean:.2f}" and rs[7].startswith("[") and rs[8] == f"{np.std(MEANS['relu_softmax'], ddof=1):.2f}"
    assert rs[-3:] == ["13.0", "13.3", "Table III (1.5M)"]
    assert line["pinv_softmax"][5] == "2/3"
    assert line["linear_relu"][5:7] == ["0/3", "not run"] and line["linear_relu"][-1] == "not in the paper"
    assert line["oracle_ibm"][6] == "not run" and line["oracle_ibm"][-3:-1] == ["13.0", "13.5"]
    assert line["oracle_wfm"][:3] == ["STFT 32/8 ms", "WFM", "iSTFT"] and line["oracle_wfm"][5] == "-"
    # the runs, the pairs with their verdicts, and the method
    assert "| relu_softmax | 2 |" in md and "| pinv_softmax | 2 |" in md and "| not run |" in md
    assert "| linear_sigmoid | relu_softmax | +0.1 |" in md and "**no** (relu_softmax > linear_sigmoid)" in md
    assert "cannot tell at this budget" in md
    for words in ("two-level percentile bootstrap", "Welch's t-test", "unit of replication",
                  "permutation test of 3 + 3 runs cannot", "Power is low", "crossed design",
                  "without a correction for multiplicity"):
        assert words in md, words
    assert "6 x 250 = 1500 steps" in md
    with open(out / "ablation.csv") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert rows["relu_softmax"]["seeds"] == "0 1 2" and rows["relu_softmax"]["n_seeds"] == "3"
    assert float(rows["relu_softmax"]["si_snri_ci_low"]) < mean < float(rows["relu_softmax"]["si_snri_ci_high"])
    assert rows["pinv_softmax"]["paper_sdri"] == "12.4" and rows["linear_relu"]["si_snri"] == ""
    with open(out / "ablation_runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 7 * 3 and {r["seed"] for r in runs} == {"0", "1", "2"}
    with open(out / "ablation_pairs.csv") as f:
        pairs = list(csv.DictReader(f))
    assert len(pairs) == 20 and {p["verdict"] for p in pairs} >= {"no", "cannot tell"}
    for png in ("ablation_bars.png", "ablation_seeds.png", "training_curves.png"):
        assert (out / png).is_file() and f"]({png})" in md
    assert not (out / "basis_relu_sigmoid.png").exists()  # broken best_model.pth: a warning only


def test_ranking_section_from_the_validation_curves(exp_root, tmp_path):
    text = write_report(collect(DEMO_ROWS, exp_root, seeds=[0, 1, 2]), exp_root, tmp_path / "out", figures=False)
    section = text.split("### Did the ranking settle?")[1]
    assert "| 2 | relu_softmax" in section  # best first
    assert "The ranking is the same at every epoch (1-2)." in section


def test_a_run_still_training_leaves_the_ranking_of_the_finished_ones(exp_root, tmp_path):
    write_log(exp_root / "relu_softmax" / "seed3" / "logs" / "metrics.csv", [9.0])  # one epoch so far
    (exp_root / "relu_softmax" / "seed3" / "checkpoints").mkdir()
    (exp_root / "relu_softmax" / "seed3" / "checkpoints" / "last.ckpt").write_bytes(b"")
    rows = collect(DEMO_ROWS, exp_root, seeds=[0, 1, 2, 3])
    assert by_name(rows)["relu_softmax"]["runs"][3]["status"].startswith("training")
    section = write_report(rows, exp_root, tmp_path / "out", figures=False).split("### Did the ranking settle?")[1]
    assert "| 2 | relu_softmax" in section and "(1-2)" in section


def test_best_seed_is_chosen_on_validation(exp_root):
    row = by_name(collect(DEMO_ROWS, exp_root, seeds=[0, 1, 2]))["relu_softmax"]
    assert best_run(row) is None  # no best_model.pth anywhere
    for k in (0, 1, 2):
        (exp_root / "relu_softmax" / f"seed{k}" / "best_model.pth").write_bytes(b"")
    row = by_name(collect(DEMO_ROWS, exp_root, seeds=[0, 1, 2]))["relu_softmax"]
    assert best_run(row)["seed"] == 2  # the highest validation SI-SNR (fake_run: 2.0 + mean/4 + k/10)


def test_nothing_run_yet_is_not_an_error(tmp_path):
    rows = collect(DEMO_ROWS, tmp_path / "empty", seeds=[0, 1, 2])
    assert all(r["status"] == "not run" for r in rows)
    text = write_report(rows, tmp_path / "empty", tmp_path / "out")
    assert "no results yet" in text and not (tmp_path / "out" / "ablation_bars.png").exists()


def test_inconsistent_runs_are_flagged(exp_root):
    fake_run(exp_root / "linear_relu" / "seed0", 9.0, n=20, test_set="data/other/tt")
    conf = load_config(REPO / "conf/ablation_demo/relu_softmax.yml", ["training.seed=1", "training.epochs=4"])
    (exp_root / "relu_softmax" / "seed1" / "conf.yml").write_text(yaml.safe_dump(conf))
    warnings = consistency_warnings(collect(DEMO_ROWS, exp_root, exp_root / "oracle", seeds=[0, 1, 2]))
    assert any("different test sets" in w for w in warnings)
    assert any("different numbers of utterances" in w for w in warnings)
    assert any("relu_softmax: seed 1 was trained with other settings" in w and "training.epochs: 6 -> 4" in w
               for w in warnings)
    assert any("rows have results for different seeds" in w for w in warnings)


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


def test_config_selection(tmp_path):
    assert [Path(p).name for p in select_configs(DEMO_ROWS)] == [Path(p).name for p in DEMO_ROWS
                                                                 if not p.endswith("base.yml")]
    with pytest.raises(SystemExit, match="would both be experiment 'linear_relu'"):
        select_configs([REPO / "conf/ablation/linear_relu.yml", REPO / "conf/ablation_demo/linear_relu.yml"])
    with pytest.raises(SystemExit, match="not found"):
        select_configs([tmp_path / "missing.yml"])
    with pytest.raises(SystemExit, match="no config selected"):
        select_configs([REPO / "conf/ablation/base.yml"])


def test_paper_rows_selection():
    rows = [p.stem for p in select_configs(DEMO_ROWS, paper_rows=True)]
    assert rows == ["linear_sigmoid", "linear_softmax", "pinv_softmax", "relu_sigmoid", "relu_softmax"]
    with pytest.raises(SystemExit, match="paper-rows"):
        select_configs([REPO / "conf/ablation_demo/linear_relu.yml"], paper_rows=True)


def test_list_prints_the_rows(capsys):
    assert main(["--list", "--paper-rows", "--confs", *DEMO_ROWS]) == 0
    assert capsys.readouterr().out.split() == [p for p in DEMO_ROWS if Path(p).stem in ROW_MEANS or
                                               Path(p).stem in ("linear_sigmoid", "relu_sigmoid")]
