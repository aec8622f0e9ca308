"""The ablation report: our results next to the paper's and next to ideal masks.

Usage (what ``./run_ablation.sh`` runs last):

    python -m local.report --exp-root exp/demo --confs conf/ablation_demo/*.yml \
        [--oracle-dir exp/demo/oracle] [--out exp/demo/ablation_report] [--no-figures]

For every config (experiment ``<exp-root>/<config basename>``, as ``run.sh``
names it) one row: encoder, mask, decoder (learned or pseudo-inverse), number of
parameters, receptive field, SI-SNRi, SDRi and STOI from its
``eval/metrics.json``, and the paper's SI-SNRi / SDRi for that row. The ideal
masks of ``local.oracle`` follow as extra rows. An experiment without results
is listed as "not run". Files named ``base.yml`` (shared settings of a folder
of rows) are skipped. Writes into ``--out``:

    ablation.md            the table (also printed), with the figures linked
    ablation.csv           the same rows, machine-readable
    ablation_bars.png      bar chart of the table, the paper's values marked
    training_curves.png    training/validation loss of every experiment with a log
    basis_<name>.png       UPGMA-sorted encoder/decoder basis functions and their |FFT|

``python -m local.report --list --confs ...`` prints the selected configs (one
per line) and exits: the shell driver uses it to pick its rows.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from pathlib import Path
from typing import Iterable, Optional

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

COLUMNS = ["name", "kind", "config", "encoder", "mask", "decoder", "parameters", "receptive_field_s",
           "si_snri", "sdri", "stoi", "input_stoi", "paper_si_snri", "paper_sdri", "paper_source",
           "status", "n_utterances", "test_set"]


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


def select_configs(paths: Iterable[str | Path]) -> list[Path]:
    """The rows among ``paths``: files named base.yml are shared settings, not rows.

    Two configs with the same basename would share an experiment folder: an error.
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


def _metrics_fields(metrics: Optional[dict]) -> dict:
    if metrics is None:
        return {k: None for k in ("si_snri", "sdri", "stoi", "input_stoi", "n_utterances", "test_set")}
    return {"si_snri": metrics.get("si_sdr_imp"), "sdri": metrics.get("sdr_imp"),
            "stoi": metrics.get("stoi"), "input_stoi": metrics.get("input_stoi"),
            "n_utterances": metrics.get("n_utterances"), "test_set": metrics.get("test_set")}


def experiment_row(conf_path: Path, exp_dir: Path) -> dict:
    """One table row; the trained experiment's own conf.yml wins over the config file."""
    import yaml

    from local.config import load_config
    from local.model import make_model

    saved = exp_dir / "conf.yml"
    if saved.is_file():
        with open(saved) as f:
            conf = yaml.safe_load(f)
    else:
        conf = load_config(conf_path)
    model = make_model(conf)
    metrics = _read_json(exp_dir / "eval" / "metrics.json")
    if metrics is not None:
        status = "done"
    elif (exp_dir / "best_model.pth").is_file():
        status = "not run (trained, not evaluated)"
    else:
        status = "not run"
    paper = paper_reference(conf)
    return {
        "name": conf_path.stem, "kind": "model", "config": str(conf_path), **describe(conf),
        "parameters": model.n_parameters(), "receptive_field_s": round(model.receptive_field(), 4),
        **_metrics_fields(metrics),
        "paper_si_snri": paper[0] if paper else None, "paper_sdri": paper[1] if paper else None,
        "paper_source": paper[2] if paper else None, "status": status, "exp_dir": str(exp_dir),
        "variant": variant_key(conf),
    }


def oracle_row(kind: str, oracle_dir: Optional[Path]) -> dict:
    from local.oracle import HOP_S, WINDOW_S

    metrics = _read_json(oracle_dir / kind / "eval" / "metrics.json") if oracle_dir else None
    return {
        "name": f"oracle_{kind}", "kind": "oracle", "config": None,
        "encoder": f"STFT {1000 * WINDOW_S:g}/{1000 * HOP_S:g} ms", "mask": kind.upper(), "decoder": "iSTFT",
        "parameters": None, "receptive_field_s": None, **_metrics_fields(metrics),
        "paper_si_snri": PAPER_ORACLE[kind][0], "paper_sdri": PAPER_ORACLE[kind][1],
        "paper_source": "Table IV", "status": "done" if metrics else "not run", "exp_dir": None,
        "variant": None,
    }


def collect(conf_paths: Iterable[str | Path], exp_root: str | Path,
            oracle_dir: Optional[str | Path] = None) -> list[dict]:
    """Rows of the report: one per selected config, then the three ideal masks."""
    exp_root = Path(exp_root)
    rows = [experiment_row(path, exp_root / path.stem) for path in select_configs(conf_paths)]
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


def consistency_warnings(rows: list[dict]) -> list[str]:
    """Rows compared across different test sets or sizes are not comparable: say so."""
    done = [r for r in rows if r["status"] == "done"]
    out = []
    sets = sorted({str(r["test_set"]) for r in done})
    if len(sets) > 1:
        out.append("rows were evaluated on different test sets: " + ", ".join(sets))
    sizes = sorted({r["n_utterances"] for r in done if r["n_utterances"] is not None})
    if len(sizes) > 1:
        out.append("rows were evaluated on different numbers of utterances: " + ", ".join(map(str, sizes)))
    return out


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _params(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| config | encoder | mask | decoder | params | receptive field (s) | SI-SNRi (dB) | SDRi (dB) "
             "| STOI | paper SI-SNRi | paper SDRi | paper source |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] == "done":
            ours = [_num(r["si_snri"], ".2f"), _num(r["sdri"], ".2f"), _num(r["stoi"], ".3f")]
        else:
            ours = [r["status"], "", ""]
        lines.append("| " + " | ".join([
            r["name"], r["encoder"], r["mask"], r["decoder"], _params(r["parameters"]),
            _num(r["receptive_field_s"], ".3f"), *ours, _num(r["paper_si_snri"], ".1f"),
            _num(r["paper_sdri"], ".1f"), r["paper_source"] or "not in the paper"]) + " |")
    return "\n".join(lines)


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
    return buf.getvalue()


def make_figures(rows: list[dict], out_dir: Path) -> list[Path]:
    """The figures whose inputs exist. A figure that cannot be drawn (no matplotlib, an
    unreadable model) is a warning: the tables matter more than the pictures."""
    try:
        from local import figures
    except ImportError as err:  # pragma: no cover - matplotlib is in requirements.txt
        log.warning("figures skipped: %s", err)
        return []
    jobs = []
    if any(r["status"] == "done" for r in rows):
        jobs.append((figures.plot_ablation_bars, rows, out_dir / "ablation_bars.png", {}))
    logs = {r["name"]: Path(r["exp_dir"]) / "logs" / "metrics.csv" for r in rows if r["exp_dir"]}
    logs = {name: path for name, path in logs.items() if path.is_file()}
    if logs:
        jobs.append((figures.plot_training_curves, logs, out_dir / "training_curves.png", {}))
    for r in rows:
        model_path = Path(r["exp_dir"]) / "best_model.pth" if r["exp_dir"] else None
        if model_path is not None and model_path.is_file():
            jobs.append((figures.plot_basis_functions, model_path, out_dir / f"basis_{r['name']}.png",
                         {"title": f"{r['name']}: {model_path}"}))
    written = []
    for plot, data, out, kwargs in jobs:
        try:
            written.append(plot(data, out, **kwargs))
        except Exception as err:  # noqa: BLE001 - any failure of one figure is reported and skipped
            log.warning("figure %s not drawn: %s: %s", out.name, type(err).__name__, err)
    return written


def render_markdown(rows: list[dict], exp_root: Path, figure_paths: list[Path], out_dir: Path) -> str:
    done = [r for r in rows if r["status"] == "done"]
    test_sets = sorted({str(r["test_set"]) for r in done})
    sizes = sorted({r["n_utterances"] for r in done if r["n_utterances"] is not None})
    ours = (f"Ours: means over {' / '.join(map(str, sizes))} utterances of {', '.join(test_sets)}. "
            if done else "Ours: no results yet. ")
    parts = [
        f"# Encoder/decoder ablation: {exp_root}",
        "",
        ours + "Paper: Luo & Mesgarani 2019 on wsj0-2mix (Table III: 1.5M-parameter model; Table II: "
        "whole architectures; Table IV: ideal masks, STFT 32 ms / 8 ms, mixture phase). On another "
        "corpus or at another model size the paper's numbers are a reference point, not a target.",
        "",
        markdown_table(rows),
        "",
    ]
    # Paired comparison of each evaluated row with the first one (same test utterances).
    from local.stats import paired_report_section

    parts.append(paired_report_section(rows))
    warnings = consistency_warnings(rows)
    parts += [f"**Warning:** {w}" for w in warnings] + ([""] if warnings else [])
    for path in figure_paths:
        rel = path.relative_to(out_dir) if path.is_relative_to(out_dir) else path
        parts += [f"![{path.stem}]({rel})", ""]
    return "\n".join(parts)


def write_report(rows: list[dict], exp_root: str | Path, out_dir: str | Path, figures: bool = True) -> str:
    """Write ablation.md / ablation.csv (and figures) into ``out_dir``; returns the Markdown."""
    from local.stage_state import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure_paths = make_figures(rows, out_dir) if figures else []
    text = render_markdown(rows, Path(exp_root), figure_paths, out_dir)
    atomic_write_text(out_dir / "ablation.md", text)
    atomic_write_text(out_dir / "ablation.csv", csv_text(rows))
    return text


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--confs", nargs="+", required=True, help="config files, one row each")
    p.add_argument("--exp-root", default=None, help="folder holding one experiment per config, e.g. exp/demo")
    p.add_argument("--oracle-dir", default=None, help="local.oracle output [<exp-root>/oracle]")
    p.add_argument("--out", default=None, help="report folder [<exp-root>/ablation_report]")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--list", action="store_true", help="print the selected configs and exit")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.list:
        print("\n".join(str(p) for p in select_configs(args.confs)))
        return 0
    if args.exp_root is None:
        raise SystemExit("error: --exp-root is required (e.g. exp/demo)")
    exp_root = Path(args.exp_root)
    oracle_dir = Path(args.oracle_dir) if args.oracle_dir else exp_root / "oracle"
    out_dir = Path(args.out) if args.out else exp_root / "ablation_report"
    from local.config import ConfigError

    try:
        rows = collect(args.confs, exp_root, oracle_dir)
    except ConfigError as err:
        raise SystemExit(f"error: {err}")
    text = write_report(rows, exp_root, out_dir, figures=not args.no_figures)
    print(text)
    log.info("report written to %s", out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
