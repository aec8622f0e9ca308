"""Statistics over utterances: bootstrap confidence intervals and paired comparisons.

Usage::

    from local.stats import bootstrap_ci, paired_comparison
    lo, hi = bootstrap_ci(values)                     # 95% percentile bootstrap, seeded
    res = paired_comparison(system_b, system_a)       # b - a, utterance by utterance
    # {"n": 3000, "mean_diff": 0.21, "ci": [0.15, 0.27], "p_value": 1e-9}

``paired_markdown`` compares the ``eval/metrics.csv`` of several experiments
evaluated on the same test set against a reference row (the ablation report).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

#: Bootstrap resamples and seed used everywhere, so every table is reproducible.
N_BOOT = 2000
SEED = 0


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
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // x.size)  # bound the memory of the index matrix
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def paired_comparison(values: Sequence[float], reference: Sequence[float], confidence: float = 0.95,
                      n_boot: int = N_BOOT, seed: int = SEED) -> dict:
    """Compare two systems on the same utterances: ``values - reference``.

    Returns ``{"n", "mean_diff", "ci": [lo, hi], "p_value"}``: the mean paired
    difference, its bootstrap interval, and the two-sided Wilcoxon signed-rank
    p-value (scipy; 1.0 when every difference is zero).
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
        if not all(base in rows[u] and "input_" + base in rows[u] for u in utts):
            return None
        return np.array([rows[u][base] - rows[u]["input_" + base] for u in utts])
    if not all(isinstance(rows[u].get(metric), float) for u in utts):
        return None
    return np.array([rows[u][metric] for u in utts])


def paired_markdown(eval_dirs: dict, reference: str, metrics: Sequence[str] = ("si_sdr_imp", "sdr_imp"),
                    ) -> str:
    """A markdown section comparing every experiment with ``reference``, utterance by utterance.

    ``eval_dirs`` maps a row name to its ``eval`` folder (with ``metrics.csv``). Rows
    without results, or the reference itself, are skipped; only utterances scored by
    both systems are compared. Returns "" when there is nothing to compare.
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


def paired_report_section(rows: list[dict], reference: Optional[str] = None) -> str:
    """The ablation report's paired comparison: every evaluated model row against ``reference``.

    ``rows`` are ``local.report`` rows (``name``, ``exp_dir``, ``status``); the reference is
    the named row, else the first evaluated one. Returns "" when fewer than two rows have
    results. Used by ``local.report.render_markdown``.
    """
    dirs = {r["name"]: Path(r["exp_dir"]) / "eval" for r in rows
            if r.get("exp_dir") and r.get("status") == "done"}
    if len(dirs) < 2:
        return ""
    ref = reference if reference in dirs else next(iter(dirs))
    return paired_markdown(dirs, ref)
