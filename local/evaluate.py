"""Evaluate the best model of an experiment on whole test utterances.

Usage (what ``./run.sh --stage 2 --stop-stage 2`` runs):

    python -m local.evaluate --exp-dir exp/demo --data-dir data/demo [--n-examples 5]

The model and the data settings (sample rate, min/max, n_src) come from the
experiment's own ``conf.yml`` and ``best_model.pth``, never from re-typed
defaults. Writes ``<exp-dir>/eval/``:

    metrics.csv     one row per utterance: SI-SNR, SDR (BSS Eval), STOI of mixture and estimate
    metrics.json    means, the improvements SI-SNRi / SDRi, and how many utterances
    examples/ex_k/  mixture.wav, s1.wav, s2.wav, s1_estimate.wav, s2_estimate.wav
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("local.evaluate")

# Metric names as asteroid computes them; si_sdr is the paper's SI-SNR.
DISPLAY = {"si_sdr": "SI-SNR", "sdr": "SDR", "stoi": "STOI"}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, help="experiment folder written by local.train")
    p.add_argument("--data-dir", required=True, help="corpus folder, e.g. data/demo")
    p.add_argument("--test-set", default=None, help="split to evaluate (default: data.test_set of the config)")
    p.add_argument("--n-examples", type=int, default=None, help="utterances saved as wav (default: config)")
    p.add_argument("--max-utts", type=int, default=0, help="evaluate only the first N utterances (0: all)")
    p.add_argument("--force", action="store_true", help="evaluate again even if results are up to date")
    return p


def load_experiment(exp_dir: Path):
    """(config, model) of a trained experiment; clear errors when it is incomplete."""
    import torch
    import yaml

    from local.model import load_model

    conf_path, model_path = exp_dir / "conf.yml", exp_dir / "best_model.pth"
    for path in (conf_path, model_path):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found: train first (./run.sh --stage 1 --stop-stage 1)")
    with open(conf_path) as f:
        conf = yaml.safe_load(f)
    package = torch.load(model_path, map_location="cpu", weights_only=True)
    model = load_model(package)
    args = package["model_args"]
    if args["n_src"] != conf["data"]["n_src"] or int(args["sample_rate"]) != conf["data"]["sample_rate"]:
        raise SystemExit(f"error: {model_path} does not match {conf_path} (n_src or sample_rate differ)")
    model.eval()
    return conf, model


def utterance_metrics(mix, sources, estimate, sample_rate, metrics_list) -> dict:
    """Per-utterance metrics after PIT reordering; asteroid's get_metrics does the maths."""
    from asteroid.metrics import get_metrics

    values = get_metrics(mix, sources, estimate, sample_rate=sample_rate, metrics_list=metrics_list,
                         average=True, compute_permutation=False)
    return {k: float(v) for k, v in values.items()}


def summarise(rows: list[dict], metrics_list: list[str]) -> dict:
    summary = {"n_utterances": len(rows)}
    for m in metrics_list:
        out = np.array([r[m] for r in rows])
        inp = np.array([r["input_" + m] for r in rows])
        summary[m] = float(out.mean())
        summary["input_" + m] = float(inp.mean())
        if m != "stoi":
            summary[m + "_imp"] = float((out - inp).mean())
    return summary


def format_table(summary: dict, metrics_list: list[str]) -> str:
    lines = ["| metric | mixture | estimate | improvement |", "|---|---|---|---|"]
    for m in metrics_list:
        imp = f"{summary[m + '_imp']:.2f}" if m + "_imp" in summary else "-"
        lines.append(f"| {DISPLAY.get(m, m)} | {summary['input_' + m]:.2f} | {summary[m]:.2f} | {imp} |")
    return "\n".join(lines)


def write_csv_atomic(path: Path, rows: list[dict]) -> None:
    from local.stage_state import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def peak_limit(*signals: np.ndarray, ceiling: float = 0.9) -> list[np.ndarray]:
    """Scale a set of signals together so that none exceeds ``ceiling`` (SI-SNR leaves gain free)."""
    peak = max(float(np.abs(s).max()) for s in signals)
    scale = ceiling / peak if peak > ceiling else 1.0
    return [s * scale for s in signals]


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    exp_dir, data_dir = Path(args.exp_dir), Path(args.data_dir)
    conf, model = load_experiment(exp_dir)

    import torch
    from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr
    from tqdm import tqdm

    from local.audio_io import write_wav_atomic
    from local.data import MixtureDataset, split_dir
    from local.stage_state import atomic_write_text, is_done, mark_done

    dc, ec = conf["data"], conf["evaluation"]
    test_set = args.test_set or dc["test_set"]
    n_examples = ec["n_examples"] if args.n_examples is None else args.n_examples
    test_dir = split_dir(data_dir, dc, test_set)
    if not (test_dir / "mix.json").is_file():
        raise SystemExit(f"error: {test_dir / 'mix.json'} not found: prepare the {test_set!r} split first")
    out_dir = exp_dir / "eval"
    marker = out_dir / ".done"
    inputs = [exp_dir / "best_model.pth", test_dir / "mix.json"]
    if not args.force and is_done(marker, inputs):
        log.info("evaluation is up to date in %s (use --force to redo)", out_dir)
        print((out_dir / "table.md").read_text())
        return 0

    metrics_list = ["si_sdr"] + (["sdr"] if ec["compute_sdr"] else []) + (["stoi"] if ec["compute_stoi"] else [])
    dataset = MixtureDataset(test_dir, dc["n_src"], dc["sample_rate"], segment=None, return_name=True)
    n_utts = len(dataset) if args.max_utts <= 0 else min(args.max_utts, len(dataset))
    pit = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
    rng = np.random.default_rng(0)
    example_ids = set(rng.choice(n_utts, size=min(n_examples, n_utts), replace=False).tolist())
    rows = []
    with torch.inference_mode():
        for idx in tqdm(range(n_utts), desc="evaluate", unit="utt"):
            mix, sources, name = dataset[idx]
            est = model(mix[None])
            _, est = pit(est, sources[None], return_est=True)
            mix_np, src_np, est_np = mix.numpy(), sources.numpy(), est[0].numpy()
            row = {"utt": name, **utterance_metrics(mix_np[None], src_np, est_np, dc["sample_rate"], metrics_list)}
            rows.append(row)
            if idx in example_ids:
                ex_dir = out_dir / "examples" / f"ex_{idx}"
                write_wav_atomic(ex_dir / "mixture.wav", mix_np, dc["sample_rate"])
                for k in range(dc["n_src"]):
                    write_wav_atomic(ex_dir / f"s{k + 1}.wav", src_np[k], dc["sample_rate"])
                for k, e in enumerate(peak_limit(*est_np)):
                    write_wav_atomic(ex_dir / f"s{k + 1}_estimate.wav", e, dc["sample_rate"])
    summary = summarise(rows, metrics_list)
    summary["test_set"] = str(test_dir)
    write_csv_atomic(out_dir / "metrics.csv", rows)
    atomic_write_text(out_dir / "metrics.json", json.dumps(summary, indent=2))
    table = f"{exp_dir.name} on {test_set} ({len(rows)} utterances)\n\n" + format_table(summary, metrics_list)
    atomic_write_text(out_dir / "table.md", table + "\n")
    mark_done(marker, inputs)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
