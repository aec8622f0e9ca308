"""The ablation report: rows trained with several seeds, next to the paper's and to ideal masks.

Usage (what ``./run_ablation.sh`` runs last):

    python -m local.report --exp-root exp/demo --confs conf/ablation_demo/*.yml \
        [--seeds 0 1 2] [--oracle-dir exp/demo/oracle] [--out exp/demo/ablation_report] [--no-figures]

Layout: every (row, seed) is its own experiment, ``<exp-root>/<config basename>/seed<k>``
(``run_ablation.sh --seeds``), trained with ``training.seed=k``. Without ``--seeds``
every ``seed<k>`` folder found is a run of the row; a row folder that is itself an
experiment (the single-run layout of studies made before seeds) counts as one run, with the
seed of its ``conf.yml``.

Per row: encoder, mask, decoder, parameters, receptive field; over the seeds that
have results, the mean SI-SNRi and SDRi, their spread across seeds (sd, min-max)
and a 95% interval over seeds *and* test utterances (two-level bootstrap on each
run's ``eval/metrics.csv``, ``local.stats``); STOI; the paper's SI-SNRi / SDRi for
that row. The ideal masks of ``local.oracle`` follow as extra rows. Between rows:
the difference on the same utterances, its two-level interval, Welch's t-test on
the per-seed means (the training run as the unit) and a verdict "yes / no / cannot
tell". The method and its limits are written into the report. Writes into ``--out``:

    ablation.md            the tables (also printed), the method, the figures linked
    ablation.csv           one line per row, machine-readable
    ablation_runs.csv      one line per (row, seed) run
    ablation_pairs.csv     one line per pair of rows and metric
    ablation_bars.png      bar chart of the rows (two-level intervals), the paper's values marked
    ablation_seeds.png     each seed's SI-SNRi per row with the interval, beside the paper's value
    training_curves.png    training and validation SI-SNR per epoch of every (row, seed)
    basis_<name>.png       UPGMA-sorted encoder/decoder bases of the row's best seed (validation)

``python -m local.report --list --confs ... [--paper-rows]`` prints the selected
configs (one per line) and exits: the shell driver uses it to pick its rows.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import re
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

log = logging.getLogger("local.report")

# ---------------------------------------------------------------------------------------
# The paper's numbers (Luo & Mesgarani 2019, wsj0-2mix, SI-SNRi / SDRi in dB)
# ---------------------------------------------------------------------------------------
#: Table III, 1.5M-parameter model, keyed by (encoder_activation, mask_act, who_is_pinv).
PAPER_TABLE3 = {
    ("linear", "softmax", "encoder"): (12.1, 12.4),  # Pinv encoder, learned decoder
    ("linear", "softmax", None): (12.9, 13.2),
    ("linear", "sigmoid", None): (13.1, 13.4),
    ("relu", "softmax", None): (13.0, 13.3),
    ("relu", "sigmoid", None): (12.9, 13.2),
}

_BEST = {"n_filters": 512, "kernel_size": 16, "stride": 8, "bn_chan": 128, "hid_chan": 512,
         "skip_chan": 128, "conv_kernel_size": 3, "n_blocks": 8, "n_repeats": 3}
#: Table II rows that pin down a whole architecture: (architecture, n_src, norm, causal, values, label).
PAPER_TABLE2 = [
    (_BEST, 2, "gLN", False, (15.3, 15.6), "Table II best"),
    # The paper's causal model uses cumulative layer norm: asteroid's cgLN (its cLN is per frame).
    (_BEST, 2, "cgLN", True, (10.6, 11.0), "Table II causal"),
    (_BEST, 3, "gLN", False, (12.7, 13.1), "Table II wsj0-3mix"),
]
#: Table IV, ideal masks (STFT 32 ms / 8 ms, mixture phase).
PAPER_ORACLE = {"ibm": (13.0, 13.5), "irm": (12.2, 12.6), "wfm": (13.4, 13.8)}
ORACLE_KINDS = ("ibm", "irm", "wfm")
#: (report key, key in eval/metrics.json and column stem in metrics.csv)
METRICS = (("si_snri", "si_sdr_imp"), ("sdri", "sdr_imp"))
SEED_DIR = re.compile(r"^seed(\d+)$")

COLUMNS = ["name", "kind", "config", "encoder", "mask", "decoder", "parameters", "receptive_field_s",
           "n_seeds", "seeds", "si_snri", "si_snri_ci_low", "si_snri_ci_high", "si_snri_seed_sd",
           "si_snri_seed_min", "si_snri_seed_max", "sdri", "sdri_ci_low", "sdri_ci_high", "sdri_seed_sd",
           "sdri_seed_min", "sdri_seed_max", "stoi", "input_stoi", "paper_si_snri", "paper_sdri",
           "paper_source", "status", "n_utterances", "test_set", "budget"]
RUN_COLUMNS = ["name", "seed", "exp_dir", "layout", "status", "si_snri", "sdri", "stoi", "n_utterances",
               "best_val_si_snr", "best_val_epoch", "epochs_logged", "test_set"]
PAIR_COLUMNS = ["a", "b", "metric", "n_utterances", "seeds_a", "seeds_b", "mean_a", "mean_b", "diff",
                "ci_low", "ci_high", "welch_t", "welch_df", "welch_p", "verdict", "paper_diff"]


def variant_key(conf: dict) -> tuple:
    """(encoder_activation, mask_act, who_is_pinv): the key of PAPER_TABLE3."""
    fb = conf["filterbank"]
    return (fb["encoder_activation"] or "linear", conf["masknet"]["mask_act"], fb["who_is_pinv"])


def paper_reference(conf: dict) -> Optional[tuple[float, float, str]]:
    """(SI-SNRi, SDRi, where from) of the paper for a config's row, or None."""
    fb, mn, data = conf["filterbank"], conf["masknet"], conf["data"]
    variant = variant_key(conf)
    arch = {**fb, **mn}
    for best, n_src, norm, causal, values, label in PAPER_TABLE2:
        if (all(arch[k] == v for k, v in best.items()) and data["n_src"] == n_src
                and mn["norm_type"] == norm and bool(mn["causal"]) == causal
                and data["sample_rate"] == 8000 and variant == ("linear", "sigmoid", None)):
            return (*values, label)
    if data["n_src"] == 2 and not mn["causal"] and mn["norm_type"] == "gLN" and variant in PAPER_TABLE3:
        return (*PAPER_TABLE3[variant], "Table III (1.5M)")
    return None


def describe(conf: dict) -> dict:
    """Encoder, mask and decoder of a config in the paper's words."""
    fb = conf["filterbank"]
    pinv = fb["who_is_pinv"]
    return {
        "encoder": "pinv" if pinv == "encoder" else (fb["encoder_activation"] or "linear"),
        "mask": conf["masknet"]["mask_act"],
        "decoder": "pinv" if pinv == "decoder" else "learned",
    }


def budget_text(conf: dict) -> str:
    """The training budget of a config in words: "9 x 250 = 2250 steps", "time budget 6m", ..."""
    tc = conf["training"]
    if tc.get("time_budget") is not None:
        return f"time budget {tc['time_budget']} (steps depend on the machine)"
    if tc["max_steps"] > 0:
        return f"{tc['max_steps']} steps"
    limit = tc["limit_train_batches"]
    if isinstance(limit, int) and not isinstance(limit, bool):
        return f"{tc['epochs']} x {limit} = {tc['epochs'] * limit} steps"
    return f"{tc['epochs']} epochs"


def select_configs(paths: Iterable[str | Path], paper_rows: bool = False) -> list[Path]:
    """The rows among ``paths``: files named base.yml are shared settings, not rows.

    Two configs with the same basename would share an experiment folder: an error.
    ``paper_rows``: only the rows the paper has numbers for (Table III / II).
    """
    rows, seen = [], {}
    for path in paths:
        path = Path(path)
        if path.name == "base.yml":
            continue
        if not path.is_file():
            raise SystemExit(f"error: config {path} not found")
        if path.stem in seen:
            raise SystemExit(f"error: {seen[path.stem]} and {path} would both be experiment "
                             f"{path.stem!r}: select configs from one folder at a time")
        seen[path.stem] = path
        rows.append(path)
    if paper_rows:
        from local.config import load_config

        rows = [p for p in rows if paper_reference(load_config(p)) is not None]
        if not rows:
            raise SystemExit("error: --paper-rows: none of the selected configs is a row of the paper's tables")
    if not rows:
        raise SystemExit("error: no config selected (files named base.yml are not rows)")
    return rows


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        log.warning("%s is not valid JSON (%s): treated as not run", path, err)
        return None


def _saved_config(path: Path) -> Optional[dict]:
    """A run's ``conf.yml`` through the one loader (defaults filled in), or None when missing or damaged."""
    from local.config import ConfigError, read_experiment_config

    if not path.is_file():
        return None
    try:
        return read_experiment_config(path)
    except ConfigError as err:
        log.warning("%s: treated as not run", err)
        return None


# ---------------------------------------------------------------------------------------
# runs: one (row, seed) experiment each
# ---------------------------------------------------------------------------------------
def _is_experiment(folder: Path) -> bool:
    return any((folder / p).exists() for p in ("conf.yml", "best_model.pth", "eval/metrics.json"))


def run_dirs(row_dir: Path, seeds: Optional[Sequence[int]] = None) -> list[tuple[int, Path, str]]:
    """``[(seed, folder, layout)]`` of a row: ``<row>/seed<k>`` ("seeds"), or the row folder
    itself when it is a single-run experiment of the layout before seeds ("single").

    With ``seeds`` every requested seed gets an entry (not-yet-run ones too); without,
    the ``seed<k>`` folders found, else the single-run folder, else none. A single-run
    folder counts only in a row that has no ``seed<k>`` folder.
    """
    legacy_seed = None
    if _is_experiment(row_dir):
        saved = _saved_config(row_dir / "conf.yml") or {}
        legacy_seed = int((saved.get("training") or {}).get("seed", 0) or 0)
    found = {}
    if row_dir.is_dir():
        for sub in row_dir.iterdir():
            m = SEED_DIR.match(sub.name)
            if m and sub.is_dir():
                found[int(m.group(1))] = sub
    if seeds is None:
        if found:
            return [(k, found[k], "seeds") for k in sorted(found)]
        return [(legacy_seed, row_dir, "single")] if legacy_seed is not None else []
    # The single-run folder stands for its seed only in a row without any seed<k> folder: once a
    # study of the new layout has begun there, a missing seed<k> is a run still to do.
    out = []
    for k in seeds:
        if found or k != legacy_seed:
            out.append((k, row_dir / f"seed{k}", "seeds"))
        else:
            out.append((k, row_dir, "single"))
    return out


def _best_validation(exp_dir: Path) -> tuple[Optional[float], Optional[int], int]:
    """(best validation SI-SNR in dB, its epoch from 1, epochs logged) from logs/metrics.csv."""
    path = exp_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return None, None, 0
    from local.curves import si_snr_per_epoch

    try:
        val = si_snr_per_epoch(path)["val"]
    except (OSError, ValueError, KeyError) as err:
        log.warning("%s unreadable (%s): no validation curve", path, err)
        return None, None, 0
    if not val:
        return None, None, 0
    epoch, value = max(val.items(), key=lambda kv: kv[1])
    return value, epoch, len(val)


def run_record(name: str, seed: int, exp_dir: Path, layout: str) -> dict:
    """One (row, seed) run: its status, its eval/metrics.json means and its validation curve."""
    from local.stats import utterance_values

    metrics = _read_json(exp_dir / "eval" / "metrics.json")
    if metrics is not None:
        status = "done"
    elif (exp_dir / "best_model.pth").is_file():
        status = "trained, not evaluated"
    elif (exp_dir / "checkpoints" / "last.ckpt").is_file():
        status = "training (interrupted or running)"
    else:
        status = "not run"
    best_val, best_epoch, n_epochs = _best_validation(exp_dir)
    rec = {"name": name, "seed": seed, "exp_dir": str(exp_dir), "layout": layout, "status": status,
           "best_val_si_snr": best_val, "best_val_epoch": best_epoch, "epochs_logged": n_epochs,
           "conf": _saved_config(exp_dir / "conf.yml"), "utterances": {}}
    m = metrics or {}
    rec.update(si_snri=m.get("si_sdr_imp"), sdri=m.get("sdr_imp"), stoi=m.get("stoi"),
               input_stoi=m.get("input_stoi"), n_utterances=m.get("n_utterances"), test_set=m.get("test_set"))
    if metrics is not None:
        for key, column in METRICS:
            rec["utterances"][key] = utterance_values(exp_dir / "eval" / "metrics.csv", column)
    return rec


def _aggregate(row: dict) -> None:
    """Means over seeds, their spread and two-level intervals, from the row's finished runs."""
    from local.stats import seed_matrix, seed_spread, two_level_ci

    done = [r for r in row["runs"] if r["status"] == "done"]
    row["seeds"] = [r["seed"] for r in done]
    row["n_seeds"] = len(done)
    row["n_utterances"] = None
    for key, _ in METRICS:
        per_utt = [r["utterances"].get(key) or {} for r in done]
        utts, X = seed_matrix(per_utt) if done and all(per_utt) else ([], None)
        if X is not None and len(utts):
            seed_means = X.mean(axis=1)
            row[key + "_ci"] = list(two_level_ci(X))
            row["n_utterances"] = len(utts)
        else:  # no per-utterance file: the means of metrics.json, no interval
            seed_means = [r[key] for r in done if r[key] is not None]
            row[key + "_ci"] = None
        spread = seed_spread(seed_means)
        row[key] = spread["mean"]
        row[key + "_seed_sd"], row[key + "_seed_min"], row[key + "_seed_max"] = (
            spread["sd"], spread["min"], spread["max"])
        row[key + "_seed_values"] = [float(v) for v in seed_means]
    for key in ("stoi", "input_stoi"):
        values = [r[key] for r in done if r[key] is not None]
        row[key] = sum(values) / len(values) if values else None
    if row["n_utterances"] is None and done:
        row["n_utterances"] = done[0]["n_utterances"]
    row["test_set"] = done[0]["test_set"] if done else None
    n_expected = len(row["runs"])
    if done and len(done) == n_expected:
        row["status"] = "done"
    elif done:
        row["status"] = f"{len(done)} of {n_expected} seeds"
    elif any(r["status"] == "trained, not evaluated" for r in row["runs"]):
        row["status"] = "not run (trained, not evaluated)"
    else:
        row["status"] = "not run"


def experiment_row(conf_path: Path, row_dir: Path, seeds: Optional[Sequence[int]] = None) -> dict:
    """One table row over its seeds; the first run's own conf.yml wins over the config file."""
    from local.config import ConfigError, load_config, validate
    from local.model import make_model

    runs = [run_record(conf_path.stem, k, d, layout) for k, d, layout in run_dirs(row_dir, seeds)]
    saved = next((r["conf"] for r in runs if r["conf"]), None)
    conf = None
    if saved is not None:
        try:
            conf = validate(saved, source=f"{row_dir}/.../conf.yml")
        except ConfigError as err:
            log.warning("saved config of %s unreadable (%s): using %s", row_dir, err, conf_path)
    if conf is None:
        conf = load_config(conf_path)
    model = make_model(conf)
    paper = paper_reference(conf)
    row = {
        "name": conf_path.stem, "kind": "model", "config": str(conf_path), **describe(conf),
        "parameters": model.n_parameters(), "receptive_field_s": round(model.receptive_field(), 4),
        "paper_si_snri": paper[0] if paper else None, "paper_sdri": paper[1] if paper else None,
        "paper_source": paper[2] if paper else None, "exp_dir": str(row_dir), "variant": variant_key(conf),
        "runs": runs, "budget": budget_text(conf), "conf": conf,
    }
    _aggregate(row)
    return row


def oracle_row(kind: str, oracle_dir: Optional[Path]) -> dict:
    from local.oracle import HOP_S, WINDOW_S

    metrics = _read_json(oracle_dir / kind / "eval" / "metrics.json") if oracle_dir else None
    m = metrics or {}
    row = {
        "name": f"oracle_{kind}", "kind": "oracle", "config": None,
        "encoder": f"STFT {1000 * WINDOW_S:g}/{1000 * HOP_S:g} ms", "mask": kind.upper(), "decoder": "iSTFT",
        "parameters": None, "receptive_field_s": None, "runs": [], "n_seeds": None, "seeds": [],
        "si_snri": m.get("si_sdr_imp"), "sdri": m.get("sdr_imp"), "stoi": m.get("stoi"),
        "input_stoi": m.get("input_stoi"), "n_utterances": m.get("n_utterances"), "test_set": m.get("test_set"),
        # deterministic: no seeds; the interval is over test utterances only
        "si_snri_ci": m.get("si_sdr_imp_ci"), "sdri_ci": m.get("sdr_imp_ci"),
        "paper_si_snri": PAPER_ORACLE[kind][0], "paper_sdri": PAPER_ORACLE[kind][1],
        "paper_source": "Table IV", "status": "done" if metrics else "not run", "exp_dir": None,
        "variant": None, "budget": None,
    }
    for key, _ in METRICS:
        row.update({key + "_seed_sd": None, key + "_seed_min": None, key + "_seed_max": None,
                    key + "_seed_values": []})
    return row


def collect(conf_paths: Iterable[str | Path], exp_root: str | Path, oracle_dir: Optional[str | Path] = None,
            seeds: Optional[Sequence[int]] = None) -> list[dict]:
    """Rows of the report: one per selected config (over ``seeds``), then the three ideal masks."""
    exp_root = Path(exp_root)
    rows = [experiment_row(path, exp_root / path.stem, seeds) for path in select_configs(conf_paths)]
    # Table III rows first, in the paper's order; every other row keeps its place after them.
    order = list(PAPER_TABLE3)

    def paper_rank(row):
        if (row["paper_source"] or "").startswith("Table III"):
            return order.index(row["variant"])
        return len(order)

    rows.sort(key=paper_rank)
    oracle_dir = Path(oracle_dir) if oracle_dir else None
    rows += [oracle_row(kind, oracle_dir) for kind in ORACLE_KINDS]
    return rows


def _has_results(row: dict) -> bool:
    return row["si_snri"] is not None


# ---------------------------------------------------------------------------------------
# between rows
# ---------------------------------------------------------------------------------------
def pair_statistics(rows: list[dict]) -> list[dict]:
    """Every pair of model rows with results (in table order), for SI-SNRi and SDRi.

    On the utterances every run of both rows scored; Welch's test and the verdict
    need at least two seeds per row (else "cannot tell").
    """
    from local.stats import compare_rows, seed_matrix

    models = [r for r in rows if r["kind"] == "model" and r["n_seeds"]]
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            for key, _ in METRICS:
                runs_a = [r["utterances"].get(key) or {} for r in a["runs"] if r["status"] == "done"]
                runs_b = [r["utterances"].get(key) or {} for r in b["runs"] if r["status"] == "done"]
                if not all(runs_a) or not all(runs_b):
                    continue
                utts, _ = seed_matrix(runs_a + runs_b)
                if not utts:
                    continue
                _, XA = seed_matrix(runs_a, utts)
                _, XB = seed_matrix(runs_b, utts)
                res = compare_rows(XA, XB)
                pa, pb = a["paper_" + key], b["paper_" + key]
                out.append({"a": a["name"], "b": b["name"], "metric": key, **res,
                            "paper_diff": round(pa - pb, 2) if pa is not None and pb is not None else None})
    return out


def power_note(rows: list[dict]) -> Optional[dict]:
    """Pooled seed sd of the SI-SNRi of the model rows and the differences Welch's test can call."""
    from local.stats import detectable_difference

    rows = [r for r in rows if r["kind"] == "model" and r.get("si_snri_seed_sd") is not None]
    if not rows:
        return None
    pooled = (sum(r["si_snri_seed_sd"] ** 2 for r in rows) / len(rows)) ** 0.5
    n = sorted(r["n_seeds"] for r in rows)[len(rows) // 2]
    return {"seed_sd": pooled, "n_seeds": n, "even_chance": detectable_difference(pooled, n, power=0.5),
            "power80": detectable_difference(pooled, n, power=0.8)}


def validation_curves(row: dict) -> dict[int, float]:
    """``{epoch: mean over the row's finished runs of the validation SI-SNR}`` at epochs every one
    of them logged (a run still training would cut every row's ranking to its first epochs)."""
    from local.curves import si_snr_per_epoch

    curves = []
    for r in row["runs"]:
        if r["status"] != "done":
            continue
        path = Path(r["exp_dir"]) / "logs" / "metrics.csv"
        if path.is_file():
            try:
                curves.append(si_snr_per_epoch(path)["val"])
            except (OSError, ValueError, KeyError):
                continue
    curves = [c for c in curves if c]
    if not curves:
        return {}
    epochs = set.intersection(*(set(c) for c in curves))
    return {e: sum(c[e] for c in curves) / len(curves) for e in sorted(epochs)}


def consistency_warnings(rows: list[dict]) -> list[str]:
    """Rows compared across different test sets, sizes or budgets are not comparable: say so."""
    from local.config import ConfigError, identity_diffs, validate

    runs = [r for row in rows for r in row.get("runs", []) if r["status"] == "done"]
    done_oracles = [r for r in rows if r["kind"] == "oracle" and r["status"] == "done"]
    out = []
    sets = sorted({str(r["test_set"]) for r in runs + done_oracles})
    if len(sets) > 1:
        out.append("runs were evaluated on different test sets: " + ", ".join(sets))
    sizes = sorted({r["n_utterances"] for r in runs + done_oracles if r["n_utterances"] is not None})
    if len(sizes) > 1:
        out.append("runs were evaluated on different numbers of utterances: " + ", ".join(map(str, sizes)))
    budgets = sorted({r["budget"] for r in rows if r["kind"] == "model" and r["n_seeds"]})
    if len(budgets) > 1:
        out.append("rows were trained with different budgets: " + "; ".join(budgets))
    for row in rows:
        confs = [(r["seed"], r["conf"]) for r in row.get("runs", []) if r["conf"]]
        if len(confs) < 2:
            continue
        try:
            ref_seed, ref = confs[0][0], validate(confs[0][1], source="conf.yml")
            for seed, conf in confs[1:]:
                conf = validate({**conf, "training": {**conf["training"], "seed": ref["training"]["seed"]}},
                                source="conf.yml")
                diffs = identity_diffs(ref, conf)
                if diffs:
                    out.append(f"{row['name']}: seed {seed} was trained with other settings than seed "
                               f"{ref_seed} ({'; '.join(diffs)})")
        except (ConfigError, KeyError, TypeError) as err:
            out.append(f"{row['name']}: a saved conf.yml is unreadable ({err})")
    seeds = {tuple(r["seeds"]) for r in rows if r["kind"] == "model" and r["n_seeds"]}
    if len(seeds) > 1:
        out.append("rows have results for different seeds: "
                   + "; ".join(f"{r['name']}: {' '.join(map(str, r['seeds']))}" for r in rows
                               if r["kind"] == "model" and r["n_seeds"]))
    return out


# ---------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------
def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ci(ci, fmt: str = ".2f") -> str:
    return "-" if not ci else f"[{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def _params(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def _seeds_cell(r: dict) -> str:
    if r["kind"] == "oracle":
        return "-"
    if not r["runs"]:
        return "0"
    return f"{r['n_seeds']}/{len(r['runs'])}"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| config | encoder | mask | decoder | params | receptive field (s) | seeds | SI-SNRi (dB) "
             "| 95% CI | seed sd | seed min-max | SDRi (dB) | 95% CI | seed sd | STOI | paper SI-SNRi "
             "| paper SDRi | paper source |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if _has_results(r):
            ours = []
            for key in ("si_snri", "sdri"):
                ours += [_num(r[key], ".2f"), _ci(r[key + "_ci"]), _num(r[key + "_seed_sd"], ".2f")]
                if key == "si_snri":
                    ours.append("-" if r["si_snri_seed_min"] is None or r["kind"] == "oracle"
                                else f"{r['si_snri_seed_min']:.2f}-{r['si_snri_seed_max']:.2f}")
            ours.append(_num(r["stoi"], ".3f"))
        else:
            ours = [r["status"]] + [""] * 7
        lines.append("| " + " | ".join([
            r["name"], r["encoder"], r["mask"], r["decoder"], _params(r["parameters"]),
            _num(r["receptive_field_s"], ".3f"), _seeds_cell(r), *ours, _num(r["paper_si_snri"], ".1f"),
            _num(r["paper_sdri"], ".1f"), r["paper_source"] or "not in the paper"]) + " |")
    return "\n".join(lines)


def runs_table(rows: list[dict]) -> str:
    lines = ["| config | seed | folder | SI-SNRi (dB) | SDRi (dB) | STOI | best validation SI-SNR (dB, epoch) "
             "| status |", "|---|---:|---|---:|---:|---:|---:|---|"]
    for row in rows:
        for r in row.get("runs", []):
            val = ("-" if r["best_val_si_snr"] is None
                   else f"{r['best_val_si_snr']:.2f} ({r['best_val_epoch']} of {r['epochs_logged']})")
            lines.append(f"| {row['name']} | {r['seed']} | {r['exp_dir']} | {_num(r['si_snri'], '.2f')} | "
                         f"{_num(r['sdri'], '.2f')} | {_num(r['stoi'], '.3f')} | {val} | {r['status']} |")
    return "\n".join(lines)


def _verdict_cell(p: dict) -> str:
    from local.stats import NO, YES

    if p["verdict"] == YES:
        return f"**yes** ({p['a']} > {p['b']})"
    if p["verdict"] == NO:
        return f"**no** ({p['b']} > {p['a']})"
    return "cannot tell at this budget"


def pairs_table(pairs: list[dict]) -> str:
    si = {(p["a"], p["b"]): p for p in pairs if p["metric"] == "si_snri"}
    sd = {(p["a"], p["b"]): p for p in pairs if p["metric"] == "sdri"}
    lines = ["| A | B | paper A-B | A-B SI-SNRi (dB) | 95% CI (seeds x utterances) | seeds | Welch t (df) | p "
             "| A > B? | A-B SDRi (dB) | 95% CI | p |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for key, p in si.items():
        w = p["welch"]
        welch = "-" if w is None else f"{w['t']:+.2f} ({w['df']:.1f})"
        q = sd.get(key)
        sdr = (["-", "-", "-"] if q is None else
               [f"{q['diff']:+.2f}", _ci(q["ci"], "+.2f"), "-" if q["welch"] is None else f"{q['welch']['p']:.2g}"])
        lines.append("| " + " | ".join([
            p["a"], p["b"], _num(p["paper_diff"], "+.1f"), f"{p['diff']:+.2f}", _ci(p["ci"], "+.2f"),
            f"{p['seeds_a']}+{p['seeds_b']}", welch, "-" if w is None else f"{w['p']:.2g}", _verdict_cell(p),
            *sdr]) + " |")
    return "\n".join(lines)


def method_text(power: Optional[dict], n_pairs: int) -> str:
    parts = [
        "How these numbers are made. Each (row, seed) is its own training run (`training.seed`: the "
        "initialisation and the dynamic-mixing stream), all scored on the same test utterances. A row's "
        "value is the mean over its seeds of each run's mean over the utterances; *seed sd* and *min-max* "
        "are the spread of the per-seed means, i.e. how far another training run of the same row may land. "
        "The 95% intervals are a two-level percentile bootstrap (2000 replicates, seeded): each replicate "
        "resamples the seeds with replacement, then the test utterances with replacement, and takes the "
        "mean of the means. Every run is scored on the same utterances (a crossed design), so one "
        "utterance draw serves every resampled seed, and both rows of a difference: drawing the "
        "utterances anew for each seed would shrink the test-set part of the variance by the number of "
        "seeds. A difference A-B is therefore paired on the utterances; the seeds of A and of B are "
        "resampled on their own (seed k of A is not the same training run as seed k of B). The oracle "
        "rows are deterministic: their interval is over utterances only.",
        "",
        "The verdict counts training runs, not utterances. Welch's t-test on the per-seed mean SI-SNRi of "
        "the two rows (unequal variances) has the training run as its unit of replication. With 3 seeds "
        "per row a bootstrap over seeds is too narrow (3 values), which is why the verdict also needs the "
        "t-test, whose t distribution pays for the few seeds; a permutation test of 3 + 3 runs cannot "
        "reach p < 0.05 at all (its smallest two-sided p is 0.1). **yes** means A > B: the two-level "
        "interval of A-B excludes 0 *and* Welch's p < 0.05; **no** means B > A by the same two tests; "
        "anything else is *cannot tell at this budget*. With one seed per row there is no seed-level "
        "test and every verdict is *cannot tell*.",
    ]
    if power:
        parts += ["", f"Power is low with few seeds. The pooled seed sd of the rows' SI-SNRi is "
                      f"{power['seed_sd']:.2f} dB; with {power['n_seeds']} seeds per row Welch's test calls a "
                      f"difference of about {power['even_chance']:.2f} dB half of the time and needs about "
                      f"{power['power80']:.2f} dB for 80% (normal theory, alpha 0.05): a *cannot tell* below "
                      "that is no evidence that two rows are equal. More seeds, not more test utterances, "
                      "narrow it."]
    if n_pairs > 1:
        parts += ["", f"{n_pairs} pairs are tested, each at 0.05 without a correction for multiplicity; "
                      "requiring both tests makes a false *yes/no* rarer than 5% per pair when two rows are "
                      "equal (1-3% in `tests/test_stats.py`'s simulated studies), but among many pairs an "
                      "occasional one is expected."]
    return "\n".join(parts)


def ranking_section(rows: list[dict]) -> str:
    from local.stats import last_ranking_change, ranking_by_epoch

    curves = {r["name"]: validation_curves(r) for r in rows if r["kind"] == "model"}
    curves = {k: v for k, v in curves.items() if v}
    if len(curves) < 2:
        return ""
    ranking = ranking_by_epoch(curves)
    if not ranking:
        return ""
    lines = ["### Did the ranking settle?", "",
             "Rows ranked by their mean over seeds of the validation SI-SNR (dB; the validation speakers, "
             "never the test set) at the end of each epoch, best first:", "",
             "| epoch | ranking |", "|---:|---|"]
    for epoch, order in ranking:
        lines.append(f"| {epoch} | " + " > ".join(f"{n} {curves[n][epoch]:.2f}" for n in order) + " |")
    settled = last_ranking_change(ranking)
    last = ranking[-1][0]
    lines.append("")
    if settled == ranking[0][0] and len(ranking) > 1:
        lines.append(f"The ranking is the same at every epoch (1-{last}).")
    elif settled == last:
        lines.append(f"The ranking still changed at the last epoch ({last}): the budget is too short to "
                     "order these rows; read the verdicts above with that in mind.")
    else:
        lines.append(f"The ranking has been the final one since epoch {settled} of {last}. Adjacent rows "
                     "within a seed sd of each other can still swap with another seed; the cosine schedule "
                     "also flattens every curve near its end, whether or not training has converged.")
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    return buf.getvalue()


def csv_text(rows: list[dict]) -> str:
    flat = []
    for r in rows:
        f = dict(r)
        for key, _ in METRICS:
            ci = r.get(key + "_ci")
            f[key + "_ci_low"], f[key + "_ci_high"] = (ci[0], ci[1]) if ci else (None, None)
        f["seeds"] = " ".join(map(str, r.get("seeds") or [])) or None
        flat.append(f)
    return _csv(flat, COLUMNS)


def runs_csv_text(rows: list[dict]) -> str:
    return _csv([r for row in rows for r in row.get("runs", [])], RUN_COLUMNS)


def pairs_csv_text(pairs: list[dict]) -> str:
    flat = []
    for p in pairs:
        w = p["welch"] or {}
        flat.append({**p, "ci_low": p["ci"][0], "ci_high": p["ci"][1], "welch_t": w.get("t"),
                     "welch_df": w.get("df"), "welch_p": w.get("p")})
    return _csv(flat, PAIR_COLUMNS)


def best_run(row: dict) -> Optional[dict]:
    """The run of a row whose basis functions are drawn: the best validation SI-SNR (never the
    test set) among the runs with a best_model.pth; without a log, the best test SI-SNRi."""
    runs = [r for r in row.get("runs", []) if (Path(r["exp_dir"]) / "best_model.pth").is_file()]
    if not runs:
        return None
    return max(runs, key=lambda r: (r["best_val_si_snr"] is not None,
                                    r["best_val_si_snr"] if r["best_val_si_snr"] is not None else
                                    (r["si_snri"] if r["si_snri"] is not None else float("-inf"))))


def make_figures(rows: list[dict], out_dir: Path) -> list[Path]:
    """The figures whose inputs exist. A figure that cannot be drawn (no matplotlib, an
    unreadable model) is a warning: the tables matter more than the pictures."""
    try:
        from local import figures
    except ImportError as err:  # pragma: no cover - matplotlib is in requirements.txt
        log.warning("figures skipped: %s", err)
        return []
    jobs = []
    if any(_has_results(r) for r in rows):
        jobs.append((figures.plot_ablation_bars, rows, out_dir / "ablation_bars.png", {}))
    if any(r["kind"] == "model" and r["n_seeds"] for r in rows):
        jobs.append((figures.plot_seed_scatter, rows, out_dir / "ablation_seeds.png", {}))
    logs = {}
    for r in rows:
        for run in r.get("runs", []):
            path = Path(run["exp_dir"]) / "logs" / "metrics.csv"
            if path.is_file():
                logs.setdefault(r["name"], {})[run["seed"]] = path
    if logs:
        jobs.append((figures.plot_seed_curves, logs, out_dir / "training_curves.png", {}))
    for r in rows:
        run = best_run(r)
        if run is not None:
            model_path = Path(run["exp_dir"]) / "best_model.pth"
            val = ("" if run["best_val_si_snr"] is None
                   else f", best validation {run['best_val_si_snr']:.2f} dB of the row's seeds")
            jobs.append((figures.plot_basis_functions, model_path, out_dir / f"basis_{r['name']}.png",
                         {"title": f"{r['name']}, seed {run['seed']}{val}: {model_path}"}))
    written = []
    for plot, data, out, kwargs in jobs:
        try:
            written.append(plot(data, out, **kwargs))
        except Exception as err:  # noqa: BLE001 - any failure of one figure is reported and skipped
            log.warning("figure %s not drawn: %s: %s", out.name, type(err).__name__, err)
    return written


def render_markdown(rows: list[dict], exp_root: Path, figure_paths: list[Path], out_dir: Path,
                    pairs: Optional[list[dict]] = None) -> str:
    pairs = pair_statistics(rows) if pairs is None else pairs
    models = [r for r in rows if r["kind"] == "model"]
    done = [r for r in rows if _has_results(r)]
    test_sets = sorted({str(r["test_set"]) for r in done})
    sizes = sorted({r["n_utterances"] for r in done if r["n_utterances"] is not None})
    seed_counts = sorted({len(r["runs"]) for r in models})
    budgets = sorted({r["budget"] for r in models if r["budget"]})
    if done:
        ours = (f"Ours: {' / '.join(map(str, seed_counts))} seed(s) per row, each its own training run "
                f"({'; '.join(budgets)}), scored on the same {' / '.join(map(str, sizes))} utterances of "
                f"{', '.join(test_sets)}. ")
    else:
        ours = "Ours: no results yet. "
    parts = [
        f"# Encoder/decoder ablation: {exp_root}",
        "",
        ours + "Paper: Luo & Mesgarani 2019 on wsj0-2mix (Table III: 1.5M-parameter model; Table II: "
        "whole architectures; Table IV: ideal masks, STFT 32 ms / 8 ms, mixture phase). On another "
        "corpus or at another model size the paper's numbers are a reference point, not a target.",
        "",
        markdown_table(rows),
        "",
        "95% CI: over seeds and test utterances (two-level bootstrap, below); for a row with one seed and "
        "for the ideal masks (deterministic) over test utterances only. The rows' intervals hold the "
        "test-set term that every row shares, so two rows' intervals can overlap while their paired "
        "difference is clear: compare rows in the pair table, not by overlap.",
        "",
    ]
    if any(r["runs"] for r in models):
        parts += ["### Every run", "", runs_table(rows), ""]
    si_pairs = [p for p in pairs if p["metric"] == "si_snri"]
    from local.stats import NO, YES

    if si_pairs:
        parts += ["### Do the rows differ?", "",
                  "Every pair of rows on the utterances all their runs scored; the verdict is on SI-SNRi "
                  "(SDRi beside it for reference).", "", pairs_table(pairs), ""]
        called = [p for p in si_pairs if p["verdict"] in (YES, NO)]
        parts += [f"{len(called)} of {len(si_pairs)} pairs are told apart at this budget.", ""]
    parts += [method_text(power_note(rows), len(si_pairs)), ""]
    ranking = ranking_section(rows)
    if ranking:
        parts.append(ranking)
    warnings = consistency_warnings(rows)
    parts += [f"**Warning:** {w}" for w in warnings] + ([""] if warnings else [])
    for path in figure_paths:
        rel = path.relative_to(out_dir) if path.is_relative_to(out_dir) else path
        parts += [f"![{path.stem}]({rel})", ""]
    return "\n".join(parts)


def write_report(rows: list[dict], exp_root: str | Path, out_dir: str | Path, figures: bool = True) -> str:
    """Write ablation.md and the CSV files (and figures) into ``out_dir``; returns the Markdown."""
    from local.stage_state import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = pair_statistics(rows)
    figure_paths = make_figures(rows, out_dir) if figures else []
    text = render_markdown(rows, Path(exp_root), figure_paths, out_dir, pairs)
    atomic_write_text(out_dir / "ablation.md", text)
    atomic_write_text(out_dir / "ablation.csv", csv_text(rows))
    atomic_write_text(out_dir / "ablation_runs.csv", runs_csv_text(rows))
    atomic_write_text(out_dir / "ablation_pairs.csv", pairs_csv_text(pairs))
    return text


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--confs", nargs="+", required=True, help="config files, one row each")
    p.add_argument("--exp-root", default=None, help="folder holding one folder per config, e.g. exp/demo")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="the seeds of every row (<row>/seed<k>) [every seed<k> folder found]")
    p.add_argument("--oracle-dir", default=None, help="local.oracle output [<exp-root>/oracle]")
    p.add_argument("--out", default=None, help="report folder [<exp-root>/ablation_report]")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--paper-rows", action="store_true", help="only the rows the paper has numbers for")
    p.add_argument("--list", action="store_true", help="print the selected configs and exit")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from local.config import ConfigError

    try:
        selected = select_configs(args.confs, paper_rows=args.paper_rows)
    except ConfigError as err:
        raise SystemExit(f"error: {err}")
    if args.list:
        print("\n".join(str(p) for p in selected))
        return 0
    if args.exp_root is None:
        raise SystemExit("error: --exp-root is required (e.g. exp/demo)")
    if args.seeds is not None and (len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0):
        raise SystemExit(f"error: --seeds {' '.join(map(str, args.seeds))}: distinct non-negative integers")
    exp_root = Path(args.exp_root)
    oracle_dir = Path(args.oracle_dir) if args.oracle_dir else exp_root / "oracle"
    out_dir = Path(args.out) if args.out else exp_root / "ablation_report"
    try:
        rows = collect(selected, exp_root, oracle_dir, seeds=args.seeds)
    except ConfigError as err:
        raise SystemExit(f"error: {err}")
    text = write_report(rows, exp_root, out_dir, figures=not args.no_figures)
    print(text)
    log.info("report written to %s", out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
