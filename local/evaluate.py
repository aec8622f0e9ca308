"""Evaluate the best model of an experiment on whole test utterances.

Usage (what ``./run.sh --stage 2 --stop-stage 2`` runs):

    python -m local.evaluate --exp-dir exp/demo --data-dir data/demo [--n-examples 5] \
        [--nj 2] [--pesq] [--sir-sar] [--n-worst 3]

The model and the data settings (sample rate, min/max, n_src) come from the
experiment's own ``conf.yml`` and ``best_model.pth``, never from re-typed
defaults. The model runs in this process; the metrics (``local.metrics``: exact
BSS Eval via fast_bss_eval, SI-SNR, STOI, optional PESQ) run in ``--nj`` worker
processes. Writes ``<exp-dir>/eval/`` (every file atomically, ``.done`` last):

    metrics.csv     one row per utterance: speakers, input SNR of the mixture list,
                    flag (why a row could not be scored, empty if fine), metrics of
                    mixture and estimate
    metrics.json    means with 95% bootstrap intervals (``<key>_ci``), the improvements
                    SI-SNRi / SDRi, counts, and breakdowns by input-SNR bucket and by
                    gender pair (where the corpus knows the genders)
    table.md        the summary table, the breakdowns and the k worst utterances
    examples/ex_k/  mixture.wav, s1.wav, s2.wav, s1_estimate.wav, s2_estimate.wav
    worst/w<r>_<utt>/  the same files for the k worst utterances (lowest SI-SNRi)

Rows that cannot be scored (silent reference, NaN/inf estimate) are flagged in
the CSV and left out of every mean; a length mismatch is an error.

Output level: every estimate goes through the recipe's one rule
(:func:`local.output_level.written_estimates`: least-squares gains towards the
mixture, a peak limit only above full scale, 16-bit quantisation) before it is
scored, so the metrics are computed on exactly the 16-bit values that are
written to ``examples/`` and ``worst/``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import numpy as np

# The mixture-name parsers live in local.metadata (dynamic mixing needs them too); callers still import
# them from here.
from local.metadata import parse_mixture_name, speaker_of  # noqa: F401

log = logging.getLogger("local.evaluate")

# Metric names as asteroid computes them; si_sdr is the paper's SI-SNR.
DISPLAY = {"si_sdr": "SI-SNR", "sdr": "SDR", "sir": "SIR", "sar": "SAR", "stoi": "STOI", "pesq": "PESQ"}
#: Metrics reported without an improvement row entry (not in dB).
NO_IMPROVEMENT = ("stoi",)
#: Edges (dB) of the buckets of |level difference between the speakers| in the mixture list.
SNR_BUCKETS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, float("inf"))
#: Recorded in eval/.done: results scored under another output-level rule are computed again.
OUTPUT_LEVEL_RULE = "lsq-gains+peak-limit+pcm16"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, help="experiment folder written by local.train")
    p.add_argument("--data-dir", required=True, help="corpus folder, e.g. data/demo")
    p.add_argument("--test-set", default=None, help="split to evaluate (default: data.test_set of the config)")
    p.add_argument("--out-dir", default=None,
                   help="results folder (default: <exp-dir>/eval); another one for another corpus, e.g. "
                        "<exp-dir>/eval_flite for the held-out-synthesiser test set (python -m egs.demo.prepare --engine flite --splits tt)")
    p.add_argument("--n-examples", type=int, default=None, help="utterances saved as wav (default: config)")
    p.add_argument("--max-utts", type=int, default=0, help="evaluate only the first N utterances (0: all)")
    p.add_argument("--force", action="store_true", help="evaluate again even if results are up to date")
    p.add_argument("--nj", type=int, default=1, help="worker processes computing the metrics")
    p.add_argument("--pesq", action="store_true", help="also compute PESQ (nb at 8 kHz, wb at 16 kHz)")
    p.add_argument("--sir-sar", action="store_true", help="also report BSS Eval SIR and SAR")
    p.add_argument("--n-worst", type=int, default=3, help="worst utterances (lowest SI-SNRi) listed and saved")
    p.add_argument("--device", default=None,
                   help="where the model runs (default: cuda when torch sees a GPU, else cpu)")
    p.add_argument("--conf", default=None,
                   help="the experiment's config as run.sh has it: its evaluation section is used (its model "
                        "settings must be those the folder was trained with); default: <exp-dir>/conf.yml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override, as for training (repeatable); only evaluation.* may differ from "
                        "the trained folder's")
    return p


def with_current_evaluation(conf: dict, conf_path, overrides, exp_dir: Path) -> dict:
    """The trained folder's config with the evaluation section of the config the user runs now.

    ``evaluation.*`` is not part of what a folder was trained with (``local.config.identity``),
    so editing it in the YAML file or with ``--set`` re-scores the same model; any other
    setting that differs from the folder's would not reach the model, and is refused.
    """
    from local.config import ConfigError, apply_overrides, identity_diffs, load_config, validate

    if conf_path is None and not overrides:
        return conf
    try:
        current = (load_config(conf_path, overrides) if conf_path
                   else validate(apply_overrides(conf, overrides), source="--set"))
    except ConfigError as err:
        raise SystemExit(f"error: {one_line(err)}") from None
    diffs = identity_diffs(conf, current)
    if diffs:
        raise SystemExit(f"error: {exp_dir} was trained with a different config ({'; '.join(diffs)}): these "
                         "settings would not reach its model. Train them (./run.sh --stage 1 with another "
                         "--tag, or --force) or drop them")
    return {**conf, "evaluation": current["evaluation"]}


RETRAIN = "train again (./run.sh --stage 1 --stop-stage 1 --force) to write it anew"


def one_line(err: BaseException) -> str:
    """An error's text on one line (YAML errors span several)."""
    return " ".join(str(err).split())


def load_experiment(exp_dir: Path):
    """(config, model) of a trained experiment; one-line errors when it is incomplete or damaged."""
    from local.config import ConfigError, read_experiment_config
    from local.separate import ModelFileError, build_model, read_package

    conf_path, model_path = exp_dir / "conf.yml", exp_dir / "best_model.pth"
    for path in (conf_path, model_path):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found: train first (./run.sh --stage 1 --stop-stage 1)")
    try:
        conf = read_experiment_config(conf_path)
    except ConfigError as err:  # damaged or edited conf.yml
        raise SystemExit(f"error: {one_line(err)}") from None
    try:
        package = read_package(model_path, remedy=RETRAIN)
        model = build_model(package, model_path)
    except ModelFileError as err:
        raise SystemExit(f"error: {err}") from None
    args = package["model_args"]
    if args["n_src"] != conf["data"]["n_src"] or int(args["sample_rate"]) != conf["data"]["sample_rate"]:
        raise SystemExit(f"error: {model_path} does not match {conf_path} (n_src or sample_rate differ)")
    return conf, model


def utterance_metrics(mix, sources, estimate, sample_rate, metrics_list) -> dict:
    """Per-utterance metrics (averaged over sources) after PIT reordering.

    The values of asteroid's ``get_metrics(mix, sources, estimate, average=True)``,
    computed by ``local.metrics``. Raises ``local.metrics.MetricInputError`` when the
    utterance cannot be scored (length mismatch, silent reference, NaN/inf).
    """
    from local.metrics import average, compute_metrics

    return average(compute_metrics(mix, sources, estimate, sample_rate, metrics_list))


def score_utterance(job: dict) -> dict:
    """One CSV row: ``job`` holds utt, info, mix, sources, estimate, sample_rate, metrics_list.

    An utterance that cannot be scored gets its reason in ``flag`` and empty metrics;
    a length or shape mismatch is raised (the data or the model is broken).
    """
    from local.metrics import MetricInputError, as_signals, input_problems, metric_order

    row = {"utt": job["utt"], **job.get("info", {}), "flag": ""}
    cols = metric_order(job["metrics_list"])
    try:
        signals = as_signals(job["mix"], job["sources"], job["estimate"])
    except MetricInputError as err:
        raise MetricInputError(f"utterance {job['utt']}: {err}") from err
    problems = input_problems(*signals)
    if not problems:
        try:
            values = utterance_metrics(*signals, job["sample_rate"], job["metrics_list"])
            row.update({c: values[c] for c in cols})
            return row
        except MetricInputError as err:  # e.g. PESQ finds no speech
            problems = [str(err)]
    row["flag"] = "; ".join(problems)
    row.update({c: "" for c in cols})
    return row


def _scored(rows: list[dict], metrics_list: list[str]) -> list[dict]:
    cols = [c for m in metrics_list for c in (m, "input_" + m)]
    out = []
    for r in rows:
        if r.get("flag"):
            continue
        try:
            if all(np.isfinite(float(r[c])) for c in cols):
                out.append(r)
        except (KeyError, TypeError, ValueError):
            continue
    return out


def summarise(rows: list[dict], metrics_list: list[str]) -> dict:
    """Means over the scored utterances, each with a seeded 95% bootstrap interval.

    Keys: ``<m>``, ``input_<m>``, ``<m>_imp`` (not for STOI) and the same with ``_ci``
    (``[low, high]``), ``n_utterances`` (scored), ``n_flagged``. Flagged rows and rows
    with a non-finite value are left out, so a mean is never NaN; with no scored row
    at all this is an error.
    """
    from local.stats import bootstrap_ci

    scored = _scored(rows, metrics_list)
    if not scored:
        raise ValueError(f"none of the {len(rows)} utterances could be scored (see the flag column)")
    summary = {"n_utterances": len(scored), "n_flagged": len(rows) - len(scored)}
    for m in metrics_list:
        out = np.array([float(r[m]) for r in scored])
        inp = np.array([float(r["input_" + m]) for r in scored])
        summary[m] = float(out.mean())
        summary["input_" + m] = float(inp.mean())
        summary[m + "_ci"] = list(bootstrap_ci(out))
        summary["input_" + m + "_ci"] = list(bootstrap_ci(inp))
        if m not in NO_IMPROVEMENT:
            summary[m + "_imp"] = float((out - inp).mean())
            summary[m + "_imp_ci"] = list(bootstrap_ci(out - inp))
    return summary


def summarise_groups(rows: list[dict], key: str, metrics_list: list[str]) -> dict:
    """``{group: summarise(rows of that group)}`` for the values of ``rows[i][key]``.

    Rows without a value (or "unknown") and groups with no scored row are skipped.
    """
    groups: dict = {}
    for r in _scored(rows, metrics_list):
        g = r.get(key)
        if g in (None, "", "unknown"):
            continue
        groups.setdefault(str(g), []).append(r)
    return {g: summarise(rs, metrics_list) for g, rs in sorted(groups.items())}


def _ci(summary: dict, key: str) -> str:
    ci = summary.get(key + "_ci")
    return f"{summary[key]:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{summary[key]:.2f}"


def format_table(summary: dict, metrics_list: list[str]) -> str:
    """Markdown table: mixture, estimate and improvement, each mean with its 95% CI."""
    lines = ["| metric | mixture | estimate | improvement |", "|---|---|---|---|"]
    for m in metrics_list:
        imp = _ci(summary, m + "_imp") if m + "_imp" in summary else "-"
        lines.append(f"| {DISPLAY.get(m, m)} | {_ci(summary, 'input_' + m)} | {_ci(summary, m)} | {imp} |")
    lines.append("")
    lines.append("Means over utterances, 95% bootstrap confidence intervals in brackets.")
    if summary.get("n_flagged"):
        lines.append(f"{summary['n_flagged']} utterance(s) could not be scored and are left out "
                     "(see the flag column of metrics.csv).")
    return "\n".join(lines)


def format_groups(title: str, groups: dict, metric: str = "si_sdr") -> str:
    """One line per group: n and the mean improvement (or value) of ``metric`` with its CI."""
    key = metric + "_imp" if metric not in NO_IMPROVEMENT else metric
    head = f"{DISPLAY.get(metric, metric)}{'i' if key.endswith('_imp') else ''}"
    lines = [f"### {title}", "", f"| group | n | {head} |", "|---|---|---|"]
    lines += [f"| {g} | {s['n_utterances']} | {_ci(s, key)} |" for g, s in groups.items()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# What the corpus knows about a mixture: speakers, genders, input SNR
# ---------------------------------------------------------------------------------------
def load_genders(*folders: Path) -> dict:
    """``{speaker id: "m"/"f"}`` from the first ``speakers.json`` found (unknown genders left out)."""
    for folder in folders:
        path = Path(folder) / "speakers.json"
        if path.is_file():
            try:
                entries = json.loads(path.read_text())
            except json.JSONDecodeError:
                log.warning("%s is not valid JSON: no gender breakdown", path)
                return {}
            if isinstance(entries, dict):
                entries = [{"id": k, **(v if isinstance(v, dict) else {"gender": v})} for k, v in entries.items()]
            return {str(e["id"]): str(e.get("gender", "")).lower()[:1] for e in entries
                    if isinstance(e, dict) and "id" in e and str(e.get("gender", "")).lower()[:1] in ("m", "f")}
    return {}


def snr_bucket(level_diff: float) -> str:
    a = abs(level_diff)
    for lo, hi in zip(SNR_BUCKETS[:-1], SNR_BUCKETS[1:]):
        if lo <= a < hi:
            return f"{lo:g}-{hi:g} dB" if np.isfinite(hi) else f">={lo:g} dB"
    return "unknown"


def mixture_info(name: str, n_src: int, genders: dict) -> dict:
    """CSV columns describing a mixture: spk1.., snr1.., input_snr, snr_bucket, gender_pair."""
    info = {f"spk{k + 1}": "" for k in range(n_src)}
    info.update({f"snr{k + 1}": "" for k in range(n_src)})
    info.update(input_snr="", snr_bucket="unknown", gender_pair="unknown")
    parsed = parse_mixture_name(name)
    if parsed is None or len(parsed) != n_src:
        return info
    spks = [speaker_of(u) for u, _ in parsed]
    for k, (spk, (_, snr)) in enumerate(zip(spks, parsed)):
        info[f"spk{k + 1}"], info[f"snr{k + 1}"] = spk, snr
    if n_src == 2:
        # level of s1 over s2 in the mixture list (dB): wsj0-2mix draws it in [-5, 5]
        diff = parsed[0][1] - parsed[1][1]
        info["input_snr"], info["snr_bucket"] = round(diff, 5), snr_bucket(diff)
    gs = [genders.get(s) for s in spks]
    if all(gs):
        info["gender_pair"] = "same" if len(set(gs)) == 1 else "different"
    return info


def write_csv_atomic(path: Path, rows: list[dict]) -> None:
    from local.stage_state import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def scored_estimates(mix, estimate, name: Optional[str] = None) -> np.ndarray:
    """What is written and scored: the output-level rule and 16-bit values (``local.output_level``).

    An estimate with NaN/inf samples is returned as it is, so that scoring flags it.
    """
    from local.output_level import written_estimates

    if not np.all(np.isfinite(estimate)):
        return estimate
    return written_estimates(mix, estimate, name)


def _save_utterance(folder: Path, mix, sources, estimate, sample_rate: int, rescaled: bool = False) -> None:
    """mixture.wav, s<k>.wav, s<k>_estimate.wav; ``rescaled``: ``estimate`` is already :func:`scored_estimates`."""
    from local.audio_io import write_wav_atomic
    from local.output_level import written_estimates

    write_wav_atomic(folder / "mixture.wav", mix, sample_rate)
    for k in range(len(sources)):
        write_wav_atomic(folder / f"s{k + 1}.wav", sources[k], sample_rate)
    if not (rescaled and np.all(np.isfinite(estimate))):
        estimate = written_estimates(mix, estimate, folder.name)  # non-finite samples become 0 here
    for k, e in enumerate(estimate):
        write_wav_atomic(folder / f"s{k + 1}_estimate.wav", e, sample_rate)


def worst_rows(rows: list[dict], k: int, metric: str = "si_sdr") -> list[dict]:
    """The ``k`` scored rows with the lowest improvement of ``metric`` (ties: CSV order)."""
    scored = _scored(rows, [metric])
    key = (lambda r: float(r[metric]) - float(r["input_" + metric]))
    return sorted(scored, key=key)[: max(k, 0)]


def _worker_init() -> None:
    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)


def score_all(jobs, n_jobs: int, total: int) -> list[dict]:
    """Rows for a stream of jobs, in order; ``n_jobs`` > 1 scores them in worker processes."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc="evaluate", unit="utt")
    if n_jobs <= 1:
        rows = []
        for job in jobs:
            rows.append(score_utterance(job))
            bar.update()
        bar.close()
        return rows
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    # spawn: the workers must not inherit torch's thread pools; one BLAS thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows, pending = [], deque()
    with ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
        for job in jobs:
            if len(pending) >= 4 * n_jobs:  # bounded queue: audio is not piled up in memory
                rows.append(pending.popleft().result())
            fut = pool.submit(score_utterance, job)
            fut.add_done_callback(lambda _: bar.update())
            pending.append(fut)
        rows.extend(f.result() for f in pending)
    bar.close()
    return rows


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.nj < 1:
        raise SystemExit("error: --nj must be at least 1")
    exp_dir, data_dir = Path(args.exp_dir), Path(args.data_dir)
    conf, model = load_experiment(exp_dir)
    from local.inference import default_device, prepare_for_inference

    device = args.device or default_device()
    model = prepare_for_inference(model, device)  # the one inference path (local.inference), on the device

    import torch
    from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr

    from local.data import MixtureDataset, split_dir
    from local.metadata import CorpusChanged
    from local.stage_state import atomic_write_text, is_done, mark_done, same_settings

    conf = with_current_evaluation(conf, args.conf, args.overrides, exp_dir)
    dc, ec = conf["data"], conf["evaluation"]
    test_set = args.test_set or dc["test_set"]
    n_examples = ec["n_examples"] if args.n_examples is None else args.n_examples
    test_dir = split_dir(data_dir, dc, test_set)
    if not (test_dir / "mix.json").is_file():
        raise SystemExit(f"error: {test_dir / 'mix.json'} not found: prepare the {test_set!r} split first")
    out_dir = Path(args.out_dir) if args.out_dir else exp_dir / "eval"
    marker = out_dir / ".done"
    inputs = [exp_dir / "best_model.pth", test_dir / "mix.json"]
    metrics_list = (["si_sdr"] + (["sdr"] if ec["compute_sdr"] else [])
                    + (["sir", "sar"] if ec["compute_sdr"] and args.sir_sar else [])
                    + (["stoi"] if ec["compute_stoi"] else []) + (["pesq"] if args.pesq else []))
    settings = {"metrics": metrics_list, "max_utts": args.max_utts, "n_worst": args.n_worst,
                "n_examples": n_examples, "test_set": test_set, "output_level": OUTPUT_LEVEL_RULE}
    if not args.force and is_done(marker, inputs) and same_settings(marker, settings):
        log.info("evaluation is up to date in %s (use --force to redo)", out_dir)
        print((out_dir / "table.md").read_text())
        return 0
    marker.unlink(missing_ok=True)  # results are being replaced: not done until the end
    shutil.rmtree(out_dir / "examples", ignore_errors=True)  # the previous run's (maybe more) examples
    if args.pesq:
        from local.metrics import pesq_mode

        pesq_mode(dc["sample_rate"])  # 8 or 16 kHz only: fail before the model runs

    try:
        dataset = MixtureDataset(test_dir, dc["n_src"], dc["sample_rate"], segment=None, return_name=True)
    except (FileNotFoundError, ValueError) as err:  # e.g. a moved corpus (local.metadata.CorpusChanged)
        raise SystemExit(f"error: {err}") from None
    n_utts = len(dataset) if args.max_utts <= 0 else min(args.max_utts, len(dataset))
    genders = load_genders(test_dir.parents[2], data_dir)
    pit = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
    rng = np.random.default_rng(0)
    example_ids = set(rng.choice(n_utts, size=min(n_examples, n_utts), replace=False).tolist())

    def separate(idx):
        mix, sources, name = dataset[idx]
        with torch.inference_mode():
            est = model(mix[None].to(device)).cpu()
            _, est = pit(est, sources[None], return_est=True)
        mix_np = mix.numpy()
        return name, mix_np, sources.numpy(), scored_estimates(mix_np, est[0].numpy(), name)

    def jobs():
        for idx in range(n_utts):
            name, mix_np, src_np, est_np = separate(idx)
            if idx in example_ids:
                _save_utterance(out_dir / "examples" / f"ex_{idx}", mix_np, src_np, est_np, dc["sample_rate"],
                                rescaled=True)
            yield {"utt": name, "info": mixture_info(name, dc["n_src"], genders), "mix": mix_np,
                   "sources": src_np, "estimate": est_np, "sample_rate": dc["sample_rate"],
                   "metrics_list": metrics_list}

    try:
        rows = score_all(jobs(), args.nj, n_utts)
    except CorpusChanged as err:  # a test file deleted or moved since the split was indexed
        raise SystemExit(f"error: {err}") from None
    try:
        summary = summarise(rows, metrics_list)
    except ValueError as err:
        raise SystemExit(f"error: {err}")
    summary["test_set"] = str(test_dir)
    summary["by_snr_bucket"] = summarise_groups(rows, "snr_bucket", metrics_list)
    summary["by_gender_pair"] = summarise_groups(rows, "gender_pair", metrics_list)
    worst = worst_rows(rows, args.n_worst)
    summary["worst"] = [{"utt": r["utt"], "si_sdr_imp": float(r["si_sdr"]) - float(r["input_si_sdr"])}
                        for r in worst]
    summary["flagged"] = [{"utt": r["utt"], "flag": r["flag"]} for r in rows if r.get("flag")]
    index = {dataset.items[i]["name"]: i for i in range(n_utts)}
    shutil.rmtree(out_dir / "worst", ignore_errors=True)  # the previous run's worst utterances
    for rank, r in enumerate(worst, 1):
        name, mix_np, src_np, est_np = separate(index[r["utt"]])
        _save_utterance(out_dir / "worst" / f"w{rank}_{name}", mix_np, src_np, est_np, dc["sample_rate"],
                        rescaled=True)

    write_csv_atomic(out_dir / "metrics.csv", rows)
    atomic_write_text(out_dir / "metrics.json", json.dumps(summary, indent=2))
    parts = [f"{exp_dir.name} on {test_set} ({summary['n_utterances']} utterances)\n\n"
             + format_table(summary, metrics_list)]
    for title, key in (("By input SNR (|s1 - s2| level in the mixture list)", "by_snr_bucket"),
                       ("By gender pair", "by_gender_pair")):
        if summary[key]:
            parts.append(format_groups(title, summary[key]))
    if worst:
        parts.append("### Worst utterances (saved in eval/worst/)\n\n| rank | utterance | SI-SNRi |\n|---|---|---|\n"
                     + "\n".join(f"| {k} | {w['utt']} | {w['si_sdr_imp']:.2f} |"
                                 for k, w in enumerate(summary["worst"], 1)))
    if summary["flagged"]:
        parts.append("### Not scored\n\n" + "\n".join(f"- {f['utt']}: {f['flag']}" for f in summary["flagged"]))
    table = "\n\n".join(parts)
    atomic_write_text(out_dir / "table.md", table + "\n")
    mark_done(marker, inputs, settings=settings)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
