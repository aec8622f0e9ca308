"""Statistics of the ablation study: utterances, seeds, and whether two rows differ.

Usage::

    from local.stats import bootstrap_ci, paired_comparison, two_level_ci, compare_rows
    lo, hi = bootstrap_ci(values)                     # 95% percentile bootstrap over utterances, seeded
    res = paired_comparison(system_b, system_a)       # b - a, utterance by utterance (one run each)
    lo, hi = two_level_ci(X)                          # X: (seeds, utterances) of one row
    res = compare_rows(XA, XB)                        # two rows, the same utterances (columns)
    # {"diff": 0.21, "ci": [-0.05, 0.47], "welch": {"t": 1.9, "df": 3.7, "p": 0.13}, "verdict": "cannot tell", ...}

Two sources of variance. A row of the ablation is trained with several seeds
(initialisation and the dynamic-mixing stream: ``training.seed``) and every run
is scored on the same test utterances. The mean of a row therefore moves
(a) with the training run (another seed lands elsewhere) and (b) with the test
utterances (another test set of the same kind would score differently).
Resampling utterances alone, as :func:`paired_comparison` does, measures (b)
only: how precisely one trained model was scored, not whether training it again
would land in the same place.

- :func:`two_level_ci`: percentile interval of the mean over seeds of the mean over
  utterances. Each bootstrap replicate resamples the seeds with replacement, then
  the utterances with replacement. The design is *crossed* (every run is scored on
  the same utterances), so by default one utterance draw is applied to every
  resampled seed (``shared_utterances=True``); an independent draw per seed
  (``False``, the nested design) would treat the test set as if each seed had its
  own, and shrink the test-set term of the variance by the number of seeds.
- :func:`two_level_diff_ci`: the same for the difference of two rows, paired on the
  utterances (one utterance draw for both rows, the seeds of each row resampled on
  their own: seed k of one row is not the same training run as seed k of another).
- :func:`welch_test`: Welch's t-test on the per-seed means of two rows: its unit of
  replication is the training run. With 3 seeds per row it has little power (see
  :func:`detectable_difference`); a permutation test of 3 + 3 runs cannot reach
  p < 0.05 at all (its smallest two-sided p is 2/20 = 0.1), which is why the t-test.
- :func:`verdict`: "yes" (A > B) only when the two-level interval of A - B excludes 0
  *and* Welch's p < 0.05; "no" (B > A) symmetrically; otherwise "cannot tell".

Every bootstrap is seeded (``SEED``), so the same inputs always give the same table.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

#: Bootstrap resamples and seed used everywhere, so every table is reproducible.
N_BOOT = 2000
SEED = 0
ALPHA = 0.05
YES, NO, CANNOT_TELL = "yes", "no", "cannot tell"
#: Index matrices are built in chunks of at most this many entries.
_CHUNK_ENTRIES = 2_000_000


# ---------------------------------------------------------------------------------------
# one run: utterances only
# ---------------------------------------------------------------------------------------
def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_boot: int = N_BOOT,
                 seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling utterances).

    Seeded, so the same values always give the same interval. One value gives a
    zero-width interval; an empty or non-finite input is an error (never a NaN).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci: no values")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci: values contain NaN or inf")
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, _CHUNK_ENTRIES // x.size)  # bound the memory of the index matrix
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    return _percentiles(means, confidence)


def paired_comparison(values: Sequence[float], reference: Sequence[float], confidence: float = 0.95,
                      n_boot: int = N_BOOT, seed: int = SEED) -> dict:
    """Compare two systems (one trained run each) on the same utterances: ``values - reference``.

    Returns ``{"n", "mean_diff", "ci": [lo, hi], "p_value"}``: the mean paired
    difference, its bootstrap interval over utterances, and the two-sided Wilcoxon
    signed-rank p-value (scipy; 1.0 when every difference is zero). This says how
    well two trained models were scored, not whether retraining them would keep
    their order: for that, :func:`compare_rows` on several seeds.
    """
    from scipy.stats import wilcoxon

    a = np.asarray(values, dtype=np.float64).ravel()
    b = np.asarray(reference, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same utterances: {a.size} vs {b.size} values")
    diff = a - b
    lo, hi = bootstrap_ci(diff, confidence, n_boot, seed)
    if np.all(diff == 0):
        p = 1.0
    else:
        p = float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)
    return {"n": int(diff.size), "mean_diff": float(diff.mean()), "ci": [lo, hi], "p_value": p}


# ---------------------------------------------------------------------------------------
# per-utterance results of runs (eval/metrics.csv)
# ---------------------------------------------------------------------------------------
def read_metrics_csv(path: str | Path) -> dict[str, dict]:
    """``eval/metrics.csv`` -> ``{utt: row}``, numbers as floats, unscored rows left out."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("flag"):
                continue
            parsed = {}
            for k, v in row.items():
                try:
                    parsed[k] = float(v)
                except (TypeError, ValueError):
                    parsed[k] = v
            out[row["utt"]] = parsed
    return out


def _metric_values(rows: dict, utts: list, metric: str) -> Optional[np.ndarray]:
    if metric.endswith("_imp"):
        base = metric[: -len("_imp")]
        if not all(isinstance(rows[u].get(base), float) and isinstance(rows[u].get("input_" + base), float)
                   for u in utts):
            return None
        return np.array([rows[u][base] - rows[u]["input_" + base] for u in utts])
    if not all(isinstance(rows[u].get(metric), float) for u in utts):
        return None
    return np.array([rows[u][metric] for u in utts])


def utterance_values(metrics_csv: str | Path, metric: str = "si_sdr_imp") -> dict[str, float]:
    """``{utt: value}`` of one run's ``metrics.csv`` (``si_sdr_imp`` = si_sdr - input_si_sdr).

    Unscored (flagged) or non-finite utterances are left out; a missing file or a
    missing column gives ``{}``.
    """
    path = Path(metrics_csv)
    if not path.is_file():
        return {}
    rows = read_metrics_csv(path)
    utts = sorted(rows)
    values = _metric_values(rows, utts, metric) if utts else None
    if values is None:
        return {}
    return {u: float(v) for u, v in zip(utts, values) if np.isfinite(v)}


def seed_matrix(runs: Sequence[Mapping[str, float]], utts: Optional[Sequence[str]] = None
                ) -> tuple[list[str], np.ndarray]:
    """(utterances, X) with ``X[s, u]`` the value of run ``s`` on utterance ``u``.

    ``runs``: one ``{utt: value}`` per seed. The utterances are those every run
    scored (or ``utts``, which every run must hold), sorted: rows of the ablation are
    compared on the same utterances.
    """
    if not runs:
        return [], np.zeros((0, 0))
    if utts is None:
        common = set(runs[0])
        for r in runs[1:]:
            common &= set(r)
        utts = sorted(common)
    utts = list(utts)
    return utts, np.array([[r[u] for u in utts] for r in runs], dtype=np.float64).reshape(len(runs), len(utts))


# ---------------------------------------------------------------------------------------
# two levels: seeds and utterances
# ---------------------------------------------------------------------------------------
def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _as_matrix(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name}: need a (seeds, utterances) matrix with at least one of each, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name}: values contain NaN or inf")
    return X


def _counts(rng, n_rep: int, n: int) -> np.ndarray:
    """(n_rep, n) multinomial counts of n draws with replacement from n items, divided by n."""
    idx = rng.integers(0, n, size=(n_rep, n)) + n * np.arange(n_rep)[:, None]
    return np.bincount(idx.ravel(), minlength=n_rep * n).reshape(n_rep, n) / n


def two_level_draws(matrices: Sequence[np.ndarray], signs: Sequence[float] = (1.0,), n_boot: int = N_BOOT,
                    seed: int = SEED, shared_utterances: bool = True) -> np.ndarray:
    """Bootstrap draws of ``sum_k sign_k * mean_seeds(mean_utterances(X_k))``.

    ``matrices``: (seeds, utterances) arrays on the same utterance columns (one per
    row; one row gives that row's mean, two rows with signs (1, -1) their
    difference). Per replicate the seeds of every matrix are resampled with
    replacement, on their own; the utterances with replacement, one draw shared by
    every resampled seed and every matrix (``shared_utterances``; the runs were
    scored on the same utterances) or one draw per resampled seed (the nested design).
    """
    mats = [_as_matrix(X, "two_level_draws") for X in matrices]
    if len(signs) != len(mats):
        raise ValueError(f"{len(mats)} matrices but {len(signs)} signs")
    n = mats[0].shape[1]
    if any(X.shape[1] != n for X in mats):
        raise ValueError("two_level_draws: every matrix needs the same utterances (columns): "
                         + ", ".join(str(X.shape[1]) for X in mats))
    rng = np.random.default_rng(seed)
    out = np.zeros(n_boot)
    width = sum(X.shape[0] for X in mats) if not shared_utterances else 1
    chunk = max(1, _CHUNK_ENTRIES // (n * width))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        b = stop - start
        shared = _counts(rng, b, n) if shared_utterances else None
        for X, sign in zip(mats, signs):
            S = X.shape[0]
            seeds = rng.integers(0, S, size=(b, S))  # (b, S): which seed fills each slot
            if shared_utterances:
                # mean over slots of X[seed] . weights  =  (seed weights @ X) . weights
                seed_w = np.bincount((seeds + S * np.arange(b)[:, None]).ravel(),
                                     minlength=b * S).reshape(b, S) / S
                out[start:stop] += sign * np.einsum("bs,su,bu->b", seed_w, X, shared)
            else:
                per_slot = np.stack([np.einsum("bu,bu->b", X[seeds[:, j]], _counts(rng, b, n))
                                     for j in range(S)], axis=1)
                out[start:stop] += sign * per_slot.mean(axis=1)
    return out


def two_level_ci(X, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = SEED,
                 shared_utterances: bool = True) -> tuple[float, float]:
    """95% interval of a row's mean over seeds and utterances; ``X``: (seeds, utterances).

    With one seed it is the utterance bootstrap of that run (the seed level cannot
    be estimated from one run: say so wherever it is shown).
    """
    _check_confidence(confidence)
    return _percentiles(two_level_draws([X], (1.0,), n_boot, seed, shared_utterances), confidence)


def two_level_diff_ci(XA, XB, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = SEED,
                      shared_utterances: bool = True) -> tuple[float, float]:
    """95% interval of mean(A) - mean(B), paired on the utterances (the columns of both)."""
    _check_confidence(confidence)
    return _percentiles(two_level_draws([XA, XB], (1.0, -1.0), n_boot, seed, shared_utterances), confidence)


# ---------------------------------------------------------------------------------------
# seeds: spread, Welch's test, power
# ---------------------------------------------------------------------------------------
def seed_spread(values: Sequence[float]) -> dict:
    """``{"n", "mean", "sd", "min", "max"}`` of per-seed means (sd: n-1 in the denominator; None for one)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    return {"n": int(x.size), "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else None,
            "min": float(x.min()), "max": float(x.max())}


def welch_test(a: Sequence[float], b: Sequence[float]) -> Optional[dict]:
    """Welch's two-sided t-test of mean(a) = mean(b); ``a``, ``b``: per-seed means of two rows.

    Returns ``{"t", "df", "p"}`` (Welch-Satterthwaite degrees of freedom), or None
    when a row has fewer than two seeds (no spread to test against). Two rows
    without any spread give p = 1 when equal, p = 0 when not.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or b.size < 2:
        return None
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = float(a.mean() - b.mean())
    if va + vb == 0:
        return {"t": 0.0 if diff == 0 else math.copysign(math.inf, diff), "df": float(a.size + b.size - 2),
                "p": 1.0 if diff == 0 else 0.0}
    from scipy.stats import t as student_t

    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    return {"t": float(t), "df": float(df), "p": float(2 * student_t.sf(abs(t), df))}


def detectable_difference(seed_sd: float, n_a: int, n_b: Optional[int] = None, alpha: float = ALPHA,
                          power: float = 0.5) -> Optional[float]:
    """The difference of row means that Welch's test detects with probability ``power``.

    Normal-theory approximation with equal seed spread ``seed_sd`` and
    ``n_a + n_b - 2`` degrees of freedom: ``(t_{1-alpha/2} + t_power) * sd * sqrt(1/n_a + 1/n_b)``.
    With 3 seeds per row that is about 2.3 seed sd for an even chance, 3.0 for 80%.
    None with fewer than two seeds in a row.
    """
    n_b = n_a if n_b is None else n_b
    if n_a < 2 or n_b < 2 or seed_sd is None:
        return None
    from scipy.stats import t as student_t

    df = n_a + n_b - 2
    return float((student_t.ppf(1 - alpha / 2, df) + student_t.ppf(power, df))
                 * seed_sd * math.sqrt(1 / n_a + 1 / n_b))


def verdict(ci: Sequence[float], p: Optional[float], alpha: float = ALPHA) -> str:
    """"yes" (A > B), "no" (B > A) or "cannot tell", from the interval of A - B and Welch's p.

    Both must agree: the two-level interval excludes 0 *and* the seed-level test is
    significant. A row with one seed never gets past "cannot tell".
    """
    if p is None or not p < alpha:
        return CANNOT_TELL
    if ci[0] > 0:
        return YES
    if ci[1] < 0:
        return NO
    return CANNOT_TELL


def compare_rows(XA, XB, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = SEED,
                 alpha: float = ALPHA) -> dict:
    """Row A against row B on the same utterances (the columns of ``XA`` and ``XB``).

    Returns ``{"n_utterances", "seeds_a", "seeds_b", "mean_a", "mean_b", "diff", "ci",
    "seed_means_a", "seed_means_b", "welch", "verdict"}``: the difference of the
    means over seeds and utterances, its two-level interval, Welch's test on the
    per-seed means, and the verdict of :func:`verdict`.
    """
    XA, XB = _as_matrix(XA, "row A"), _as_matrix(XB, "row B")
    if XA.shape[1] != XB.shape[1]:
        raise ValueError(f"compare_rows needs the same utterances: {XA.shape[1]} vs {XB.shape[1]}")
    ma, mb = XA.mean(axis=1), XB.mean(axis=1)
    ci = two_level_diff_ci(XA, XB, confidence, n_boot, seed)
    welch = welch_test(ma, mb)
    return {"n_utterances": int(XA.shape[1]), "seeds_a": int(XA.shape[0]), "seeds_b": int(XB.shape[0]),
            "mean_a": float(ma.mean()), "mean_b": float(mb.mean()), "diff": float(ma.mean() - mb.mean()),
            "ci": list(ci), "seed_means_a": ma.tolist(), "seed_means_b": mb.tolist(), "welch": welch,
            "verdict": verdict(ci, welch["p"] if welch else None, alpha)}


# ---------------------------------------------------------------------------------------
# did the ordering settle? (validation curves)
# ---------------------------------------------------------------------------------------
def ranking_by_epoch(curves: Mapping[str, Mapping[int, float]]) -> list[tuple[int, list[str]]]:
    """``[(epoch, row names best first), ...]`` for every epoch that all rows have.

    ``curves``: ``{row: {epoch: value}}``, higher is better (e.g. the mean over seeds
    of the validation SI-SNR).
    """
    if not curves:
        return []
    epochs = set.intersection(*(set(c) for c in curves.values()))
    return [(e, sorted(curves, key=lambda name: -curves[name][e])) for e in sorted(epochs)]


def last_ranking_change(ranking: Sequence[tuple[int, list[str]]]) -> Optional[int]:
    """The first epoch from which the ranking stays the final one (None without epochs)."""
    if not ranking:
        return None
    final = ranking[-1][1]
    settled = ranking[-1][0]
    for epoch, order in reversed(ranking):
        if order != final:
            break
        settled = epoch
    return settled


# ---------------------------------------------------------------------------------------
# the older one-run section: every row against a reference, utterance by utterance
# ---------------------------------------------------------------------------------------
def paired_markdown(eval_dirs: dict, reference: str, metrics: Sequence[str] = ("si_sdr_imp", "sdr_imp"),
                    ) -> str:
    """A markdown section comparing every experiment with ``reference``, utterance by utterance.

    ``eval_dirs`` maps a row name to its ``eval`` folder (with ``metrics.csv``). Rows
    without results, or the reference itself, are skipped; only utterances scored by
    both systems are compared. Returns "" when there is nothing to compare. One
    trained run per row: the interval is over test utterances only.
    """
    if reference not in eval_dirs or not (Path(eval_dirs[reference]) / "metrics.csv").is_file():
        return ""
    ref_rows = read_metrics_csv(Path(eval_dirs[reference]) / "metrics.csv")
    lines = [f"### Paired comparison with {reference}", "",
             "Mean difference per utterance (row minus reference), its 95% bootstrap interval "
             "and the Wilcoxon signed-rank p-value. ", "",
             "| row | metric | n | mean difference | 95% CI | p-value |", "|---|---|---|---|---|---|"]
    n_rows = 0
    for name, folder in eval_dirs.items():
        path = Path(folder) / "metrics.csv"
        if name == reference or not path.is_file():
            continue
        rows = read_metrics_csv(path)
        utts = sorted(set(rows) & set(ref_rows))
        if not utts:
            continue
        for metric in metrics:
            a, b = _metric_values(rows, utts, metric), _metric_values(ref_rows, utts, metric)
            if a is None or b is None:
                continue
            res = paired_comparison(a, b)
            lines.append(f"| {name} | {metric} | {res['n']} | {res['mean_diff']:+.2f} | "
                         f"[{res['ci'][0]:+.2f}, {res['ci'][1]:+.2f}] | {res['p_value']:.2g} |")
            n_rows += 1
    return "\n".join(lines) + "\n" if n_rows else ""
