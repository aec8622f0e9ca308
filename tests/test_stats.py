"""Bootstrap intervals, paired comparisons, and the seed x utterance statistics of the ablation (local.stats).

The two-level statistics are checked on synthetic studies whose answer is known: rows drawn
from one distribution must get "cannot tell" (false verdicts at most ~the nominal rate),
rows 2 dB apart "yes".
"""

import csv

import numpy as np
import pytest
from scipy.stats import wilcoxon

from local.stats import (CANNOT_TELL, NO, YES, bootstrap_ci, compare_rows, detectable_difference,
                         last_ranking_change, paired_comparison, paired_markdown, ranking_by_epoch,
                         read_metrics_csv, seed_matrix, seed_spread, two_level_ci, two_level_diff_ci,
                         utterance_values, verdict, welch_test)


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


# ---- two levels: seeds and utterances -----------------------------------------------------
def synthetic_study(rng, delta, n_seeds=3, n_utts=100, seed_sd=0.2, utt_sd=3.0, shared=True, noise_sd=0.65):
    """Two rows (A = B + delta) of ``n_seeds`` runs x ``n_utts`` utterances.

    shared: the test utterances have a difficulty (sd ``utt_sd``) common to every run, as on a
    real test set, plus per-run noise (``noise_sd``; 0.65 dB matches the committed demo study's
    paired differences). Otherwise every run's utterance values are independent (sd ``utt_sd``).
    """
    difficulty = rng.normal(0, utt_sd, n_utts) if shared else 0.0
    noise = noise_sd if shared else utt_sd

    def row(mean):
        return mean + rng.normal(0, seed_sd, (n_seeds, 1)) + difficulty + rng.normal(0, noise, (n_seeds, n_utts))

    return row(5.0 + delta), row(5.0)


def test_two_level_ci_of_constants_and_of_one_seed():
    assert two_level_ci(np.full((3, 50), 4.25)) == pytest.approx((4.25, 4.25), abs=1e-12)
    x = np.random.default_rng(4).normal(10, 3, size=300)
    lo, hi = two_level_ci(x[None, :])  # one seed: the utterance bootstrap of that run
    blo, bhi = bootstrap_ci(x)
    assert lo == pytest.approx(blo, abs=0.08) and hi == pytest.approx(bhi, abs=0.08)
    assert two_level_ci(x[None, :]) == (lo, hi)  # seeded
    with pytest.raises(ValueError, match="NaN"):
        two_level_ci(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="at least one"):
        two_level_ci(np.zeros((0, 4)))


def test_two_level_ci_sees_the_spread_between_seeds():
    # utterances agree exactly, seeds do not: an utterance bootstrap would be [5, 5]
    X = np.array([[4.0] * 40, [5.0] * 40, [6.0] * 40])
    lo, hi = two_level_ci(X)
    assert 4.0 - 1e-9 <= lo < 4.7 and 5.3 < hi <= 6.0 + 1e-9
    assert bootstrap_ci(X.mean(axis=0)) == (5.0, 5.0)


def test_shared_utterance_draw_keeps_the_test_set_term():
    """Every run is scored on the same utterances: drawing them anew per seed (nested) would
    shrink the test-set part of the variance by the number of seeds."""
    rng = np.random.default_rng(5)
    n_seeds, n_utts = 4, 200
    X = rng.normal(0, 3, n_utts) + rng.normal(0, 0.3, (n_seeds, n_utts))  # shared difficulty, no seed effect
    lo, hi = two_level_ci(X)
    nlo, nhi = two_level_ci(X, shared_utterances=False)
    expected = 2 * 1.96 * 3 / np.sqrt(n_utts)  # the test-set term alone
    assert hi - lo == pytest.approx(expected, rel=0.15)
    assert (nhi - nlo) < 0.7 * (hi - lo)


def test_two_level_diff_is_paired_on_utterances():
    rng = np.random.default_rng(6)
    difficulty = rng.normal(0, 3, 150)
    XB = np.tile(difficulty, (3, 1))  # three runs that agree: only the utterances vary
    XA = XB + 0.5
    lo, hi = two_level_diff_ci(XA, XB)
    assert lo == pytest.approx(0.5, abs=1e-9) and hi == pytest.approx(0.5, abs=1e-9)
    lo, hi = two_level_diff_ci(XA + rng.normal(0, 0.5, XA.shape), XB)
    assert lo < 0.5 < hi and hi - lo < 0.5  # the 3 dB utterance difficulty cancels
    with pytest.raises(ValueError, match="same utterances"):
        two_level_diff_ci(XA, XB[:, :-1])


def test_welch_test_matches_scipy_and_needs_two_seeds():
    from scipy.stats import ttest_ind

    a, b = [5.1, 5.3, 5.2], [4.8, 5.0, 4.7, 4.9]
    res = welch_test(a, b)
    ref = ttest_ind(a, b, equal_var=False)
    assert res["t"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    assert res["df"] == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3))
    assert welch_test([5.0], [4.0, 4.1]) is None
    assert welch_test([5.0, 5.0], [5.0, 5.0])["p"] == 1.0
    assert welch_test([5.0, 5.0], [4.0, 4.0])["p"] == 0.0


def test_verdict_needs_both_the_interval_and_the_seed_level_test():
    assert verdict([0.1, 0.5], 0.01) == YES
    assert verdict([-0.5, -0.1], 0.01) == NO
    assert verdict([0.1, 0.5], 0.2) == CANNOT_TELL  # the runs do not agree enough
    assert verdict([-0.1, 0.5], 0.01) == CANNOT_TELL  # the utterances do not
    assert verdict([0.1, 0.5], None) == CANNOT_TELL  # one seed: no seed-level test


def test_seed_spread_and_detectable_difference():
    assert seed_spread([5.0, 5.2, 5.4]) == pytest.approx({"n": 3, "mean": 5.2, "sd": 0.2, "min": 5.0, "max": 5.4})
    assert seed_spread([5.0])["sd"] is None and seed_spread([])["mean"] is None
    # 3 seeds per row: about 2.3 seed sd for an even chance, about 3 for 80% power
    assert detectable_difference(1.0, 3) == pytest.approx(2.776 * np.sqrt(2 / 3), rel=1e-3)
    assert 2.9 < detectable_difference(1.0, 3, power=0.8) < 3.1
    assert detectable_difference(1.0, 10) < detectable_difference(1.0, 3)
    assert detectable_difference(1.0, 1) is None


@pytest.mark.parametrize("shared", [True, False], ids=["shared-difficulty", "independent-utterances"])
def test_equal_rows_are_cannot_tell_at_about_the_nominal_rate(shared):
    """200 synthetic studies, 3 seeds x 100 utterances, seed sd 0.2 dB, utterance sd 3 dB."""
    rng = np.random.default_rng(7 if shared else 8)
    verdicts = [compare_rows(*synthetic_study(rng, 0.0, shared=shared), n_boot=1000, seed=i)["verdict"]
                for i in range(200)]
    told = sum(v != CANNOT_TELL for v in verdicts) / len(verdicts)
    assert told <= 0.1, told
    assert set(verdicts) <= {YES, NO, CANNOT_TELL}


@pytest.mark.parametrize("shared", [True, False], ids=["shared-difficulty", "independent-utterances"])
def test_rows_two_db_apart_are_told_apart(shared):
    rng = np.random.default_rng(9)
    results = [compare_rows(*synthetic_study(rng, 2.0, shared=shared), n_boot=1000, seed=i) for i in range(20)]
    assert sum(r["verdict"] == YES for r in results) >= 19
    r = results[0]
    assert r["diff"] == pytest.approx(r["mean_a"] - r["mean_b"]) and r["ci"][0] < r["diff"] < r["ci"][1]
    assert (r["seeds_a"], r["seeds_b"], r["n_utterances"]) == (3, 3, 100) and r["welch"]["p"] < 0.05
    XA, XB = synthetic_study(rng, 2.0, shared=shared)
    assert compare_rows(XB, XA)["verdict"] == NO  # the same pair the other way round


def test_one_seed_per_row_is_never_a_verdict():
    rng = np.random.default_rng(10)
    XA, XB = synthetic_study(rng, 2.0, n_seeds=1)
    res = compare_rows(XA, XB)
    assert res["welch"] is None and res["verdict"] == CANNOT_TELL and res["ci"][0] > 0


def test_seed_matrix_uses_the_utterances_every_run_scored(tmp_path):
    runs = [{"u1": 1.0, "u2": 2.0, "u3": 3.0}, {"u2": 5.0, "u3": 6.0}, {"u3": 9.0, "u2": 8.0, "u4": 0.0}]
    utts, X = seed_matrix(runs)
    assert utts == ["u2", "u3"] and X.tolist() == [[2.0, 3.0], [5.0, 6.0], [8.0, 9.0]]
    rows = [{"utt": "a", "flag": "", "si_sdr": 7.0, "input_si_sdr": 1.0, "sdr": "", "input_sdr": ""},
            {"utt": "b", "flag": "silent", "si_sdr": "", "input_si_sdr": "", "sdr": "", "input_sdr": ""}]
    _write(tmp_path / "metrics.csv", rows)
    assert utterance_values(tmp_path / "metrics.csv") == {"a": 6.0}
    assert utterance_values(tmp_path / "metrics.csv", "sdr_imp") == {}  # not computed
    assert utterance_values(tmp_path / "missing.csv") == {}


def test_ranking_by_epoch_and_when_it_settled():
    curves = {"a": {1: 1.0, 2: 3.0, 3: 4.0, 4: 5.0}, "b": {1: 2.0, 2: 2.5, 3: 4.5, 4: 4.9}, "c": {1: 0.0, 2: 1.0, 3: 2.0}}
    ranking = ranking_by_epoch(curves)
    assert [e for e, _ in ranking] == [1, 2, 3]  # epochs every row has
    assert ranking[0][1] == ["b", "a", "c"] and ranking[1][1] == ["a", "b", "c"]
    assert last_ranking_change(ranking) == 3  # b passed a again at epoch 3
    assert last_ranking_change(ranking_by_epoch({k: v for k, v in curves.items() if k != "b"})) == 1
    assert ranking_by_epoch({}) == [] and last_ranking_change([]) is None
