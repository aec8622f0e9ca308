"""Bootstrap intervals and paired comparisons (local.stats)."""

import csv

import numpy as np
import pytest
from scipy.stats import wilcoxon

from local.stats import bootstrap_ci, paired_comparison, paired_markdown, read_metrics_csv


def test_bootstrap_of_a_constant_is_that_constant():
    assert bootstrap_ci([3.5] * 40) == (3.5, 3.5)
    assert bootstrap_ci([-1.25]) == (-1.25, -1.25)


def test_bootstrap_known_answer_half_ones():
    # mean 0.5, standard error sqrt(0.25 / 100) = 0.05: the 95% interval is 0.5 -+ 1.96 * 0.05
    lo, hi = bootstrap_ci([0.0] * 50 + [1.0] * 50)
    assert lo == pytest.approx(0.5 - 1.96 * 0.05, abs=0.012)
    assert hi == pytest.approx(0.5 + 1.96 * 0.05, abs=0.012)


def test_bootstrap_matches_normal_theory_and_is_seeded():
    x = np.random.default_rng(3).normal(10.0, 2.0, size=400)
    lo, hi = bootstrap_ci(x)
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.2 * se)
    assert hi == pytest.approx(x.mean() + 1.96 * se, abs=0.2 * se)
    assert bootstrap_ci(x) == (lo, hi)  # same seed, same interval
    assert bootstrap_ci(x, seed=1) != (lo, hi)
    lo90, hi90 = bootstrap_ci(x, confidence=0.9)
    assert lo < lo90 < hi90 < hi


def test_bootstrap_refuses_empty_and_non_finite_input():
    with pytest.raises(ValueError, match="no values"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])


def test_paired_comparison_sign_interval_and_p_value():
    rng = np.random.default_rng(0)
    ref = rng.normal(10, 3, size=200)  # large between-utterance spread ...
    better = ref + 0.3 + rng.normal(0, 0.2, size=200)  # ... small, consistent gain
    res = paired_comparison(better, ref)
    assert res["n"] == 200
    assert res["mean_diff"] == pytest.approx(np.mean(better - ref))
    assert 0 < res["ci"][0] < res["mean_diff"] < res["ci"][1]
    assert res["p_value"] == pytest.approx(wilcoxon(better - ref).pvalue)
    assert res["p_value"] < 1e-10
    worse = paired_comparison(ref, better)
    assert worse["mean_diff"] == pytest.approx(-res["mean_diff"])
    assert worse["ci"][1] < 0
    assert worse["p_value"] == pytest.approx(res["p_value"])


def test_paired_comparison_of_no_real_difference():
    rng = np.random.default_rng(1)
    ref = rng.normal(10, 3, size=200)
    same = paired_comparison(ref, ref)
    assert same == {"n": 200, "mean_diff": 0.0, "ci": [0.0, 0.0], "p_value": 1.0}
    noisy = paired_comparison(ref + rng.normal(0, 0.5, size=200), ref)
    assert noisy["ci"][0] < 0 < noisy["ci"][1]
    assert noisy["p_value"] > 0.05
    with pytest.raises(ValueError, match="same utterances"):
        paired_comparison(ref, ref[:-1])


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_paired_markdown_compares_rows_with_the_reference(tmp_path):
    rng = np.random.default_rng(2)
    utts = [f"u{i}" for i in range(60)]
    inp = rng.normal(0, 2, size=60)
    base = inp + rng.normal(10, 2, size=60)
    systems = {"base": base, "better": base + 0.5 + rng.normal(0, 0.1, size=60), "same": base.copy()}
    dirs = {}
    for name, out in systems.items():
        rows = [{"utt": u, "flag": "", "input_si_sdr": i, "si_sdr": o} for u, i, o in zip(utts, inp, out)]
        if name == "better":
            rows[0].update(flag="silent estimate s1", si_sdr="", input_si_sdr="")  # left out
        (tmp_path / name).mkdir()
        _write(tmp_path / name / "metrics.csv", rows)
        dirs[name] = tmp_path / name
    dirs["not_run"] = tmp_path / "missing"
    assert len(read_metrics_csv(tmp_path / "better" / "metrics.csv")) == 59
    md = paired_markdown(dirs, reference="base", metrics=["si_sdr_imp", "sdr_imp"])
    lines = [line for line in md.splitlines() if line.startswith("| better") or line.startswith("| same")]
    assert len(lines) == 2  # no SDR columns, the missing experiment is skipped
    better = lines[0].split("|")
    assert better[3].strip() == "59" and abs(float(better[4]) - 0.5) < 0.05
    assert float(better[6]) < 1e-6
    assert lines[1].split("|")[4].strip() == "+0.00" and lines[1].split("|")[6].strip() == "1"
    assert paired_markdown(dirs, reference="not_run") == ""


def test_paired_report_section_uses_the_first_evaluated_row(tmp_path):
    from local.stats import paired_report_section

    rows = []
    for k, name in enumerate(["a", "b", "c"]):
        (tmp_path / name / "eval").mkdir(parents=True)
        _write(tmp_path / name / "eval" / "metrics.csv",
               [{"utt": f"u{i}", "flag": "", "input_si_sdr": 0.0, "si_sdr": 10.0 + k + 0.1 * i} for i in range(8)])
        rows.append({"name": name, "exp_dir": str(tmp_path / name), "status": "done" if name != "c" else "not run"})
    rows.append({"name": "oracle_ibm", "exp_dir": None, "status": "done"})
    md = paired_report_section(rows)
    assert "Paired comparison with a" in md and "| b | si_sdr_imp | 8 | +1.00 |" in md and "| c |" not in md
    assert "Paired comparison with b" in paired_report_section(rows, reference="b")
    assert paired_report_section(rows[:1]) == ""
