"""The evaluation stage: summaries with intervals, breakdowns, flagged rows, worst utterances."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from local.evaluate import (format_table, main, mixture_info, parse_mixture_name, score_all, score_utterance,
                            snr_bucket, speaker_of, summarise, summarise_groups, worst_rows)
from local.metrics import MetricInputError

REPO = Path(__file__).resolve().parents[1]
ML = ["si_sdr", "sdr", "stoi"]


def rows_with(values, flags=()):
    rows = []
    for i, v in enumerate(values):
        rows.append({"utt": f"u{i}", "flag": "", "input_si_sdr": 0.0, "si_sdr": v, "input_sdr": 0.5,
                     "sdr": v + 0.5, "input_stoi": 0.5, "stoi": 0.8, "snr_bucket": "0-1 dB" if i % 2 else "1-2 dB",
                     "gender_pair": "same" if i < 2 else "unknown"})
    for i in flags:
        rows[i].update(flag="silent reference s2", si_sdr="", input_si_sdr="", sdr="", input_sdr="")
    return rows


def test_summary_has_intervals_and_keeps_the_old_keys():
    s = summarise(rows_with([10.0, 12.0, 14.0, 16.0]), ML)
    for key in ("si_sdr", "input_si_sdr", "si_sdr_imp", "sdr", "input_sdr", "sdr_imp", "stoi", "input_stoi"):
        assert isinstance(s[key], float)
    assert s["si_sdr_imp"] == 13.0 and s["sdr_imp"] == 13.0 and "stoi_imp" not in s
    assert s["n_utterances"] == 4 and s["n_flagged"] == 0
    lo, hi = s["si_sdr_imp_ci"]
    assert 10.0 <= lo < 13.0 < hi <= 16.0
    table = format_table(s, ML)
    assert "| SI-SNR | 0.00 [0.00, 0.00] | 13.00 [" in table and "95% bootstrap" in table


def test_flagged_rows_never_make_a_nan_mean():
    s = summarise(rows_with([10.0, 12.0, float("nan"), 16.0], flags=[1]), ML)
    assert s["n_utterances"] == 2 and s["n_flagged"] == 2
    assert s["si_sdr"] == 13.0
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in s.values())
    assert "2 utterance(s) could not be scored" in format_table(s, ML)
    with pytest.raises(ValueError, match="none of the 2 utterances"):
        summarise(rows_with([1.0, 2.0], flags=[0, 1]), ML)


def test_group_summaries():
    groups = summarise_groups(rows_with([10.0, 12.0, 14.0, 16.0]), "snr_bucket", ML)
    assert list(groups) == ["0-1 dB", "1-2 dB"]
    assert groups["0-1 dB"]["si_sdr"] == 14.0 and groups["1-2 dB"]["n_utterances"] == 2
    assert list(summarise_groups(rows_with([10.0, 12.0, 14.0]), "gender_pair", ML)) == ["same"]


def test_mixture_names_speakers_and_genders():
    assert parse_mixture_name("d321_002_1.82410_d326_006_-1.82410") == [("d321_002", 1.8241),
                                                                         ("d326_006", -1.8241)]
    assert parse_mixture_name("01aa010b_0.97482_209a010p_-0.97482") == [("01aa010b", 0.97482),
                                                                        ("209a010p", -0.97482)]
    assert parse_mixture_name("mixture") is None
    assert speaker_of("d321_002") == "d321" and speaker_of("01aa010b") == "01a"
    info = mixture_info("d321_002_1.82410_d326_006_-1.82410", 2, {"d321": "m", "d326": "f"})
    assert info == {"spk1": "d321", "spk2": "d326", "snr1": 1.8241, "snr2": -1.8241, "input_snr": 3.6482,
                    "snr_bucket": "3-4 dB", "gender_pair": "different"}
    assert mixture_info("01aa010b_0.97482_209a010p_-0.97482", 2, {})["gender_pair"] == "unknown"
    assert mixture_info("odd_name", 2, {})["spk1"] == ""
    assert snr_bucket(-0.5) == "0-1 dB" and snr_bucket(7.0) == ">=5 dB"


def _job(mix, sources, est, utt="u0"):
    return {"utt": utt, "info": {"spk1": "a", "spk2": "b"}, "mix": mix, "sources": sources, "estimate": est,
            "sample_rate": 8000, "metrics_list": ML}


def _signals(seed=0, n=8000):
    rng = np.random.default_rng(seed)
    sources = rng.standard_normal((2, n)) * np.hanning(n)
    return sources.sum(0), sources, sources + 0.1 * rng.standard_normal((2, n))


def test_bad_utterances_are_flagged_or_refused():
    mix, sources, est = _signals()
    ok = score_utterance(_job(mix, sources, est))
    assert ok["flag"] == "" and ok["si_sdr"] > 15 and list(ok)[:4] == ["utt", "spk1", "spk2", "flag"]
    bad = est.copy()
    bad[1, 5] = np.nan
    row = score_utterance(_job(mix, sources, bad))
    assert row["flag"] == "non-finite estimate s2" and row["si_sdr"] == "" and list(row) == list(ok)
    silent = sources.copy()
    silent[0] = 0
    assert score_utterance(_job(mix, silent, est))["flag"] == "silent reference s1"
    with pytest.raises(MetricInputError, match="utterance u7: length mismatch"):
        score_utterance(_job(mix, sources, est[:, :-1], utt="u7"))


def test_parallel_scoring_gives_the_same_rows():
    jobs = [_job(*_signals(seed), utt=f"u{seed}") for seed in range(3)]
    assert score_all(iter(jobs), 2, 3) == score_all(iter(jobs), 1, 3)


def test_worst_rows():
    rows = rows_with([10.0, 3.0, 14.0, 1.0], flags=[3])
    assert [r["utt"] for r in worst_rows(rows, 2)] == ["u1", "u0"]


# --------------------------------------------------------------------------- the stage itself
def _fake_experiment(root: Path):
    import soundfile as sf
    import torch

    from local.config import load_config, save_config
    from local.metadata import write_split_metadata
    from local.model import make_model, serialize_model

    conf = load_config(REPO / "tests" / "conf" / "micro.yml")
    exp = root / "exp"
    save_config(conf, exp / "conf.yml")
    torch.manual_seed(0)
    torch.save(serialize_model(make_model(conf)), exp / "best_model.pth")
    data = root / "data"
    split = data / "wav8k" / "min" / "tt"
    rng = np.random.default_rng(0)
    names = ["d001_001_1.50000_d002_003_-1.50000", "d001_002_0.20000_d003_001_-0.20000",
             "d002_004_2.40000_d003_002_-2.40000"]
    for i, name in enumerate(names):
        s = 0.1 * rng.standard_normal((2, 4000)) * np.hanning(4000)
        if i == 2:
            s[1] = 0.0  # silent reference: flagged, not scored
        for stem, sig in (("mix", s.sum(0)), ("s1", s[0]), ("s2", s[1])):
            (split / stem).mkdir(parents=True, exist_ok=True)
            sf.write(split / stem / f"{name}.wav", sig, 8000, subtype="PCM_16")
    write_split_metadata(split, 2)
    (data / "speakers.json").write_text(json.dumps([{"id": "d001", "gender": "m"}, {"id": "d002", "gender": "f"},
                                                    {"id": "d003", "gender": "m"}]))
    return exp, data, names


def test_evaluation_stage_writes_everything(tmp_path, capsys):
    exp, data, names = _fake_experiment(tmp_path)
    args = ["--exp-dir", str(exp), "--data-dir", str(data), "--n-examples", "1", "--n-worst", "1"]
    assert main(args + ["--nj", "2"]) == 0
    ev = exp / "eval"
    with open(ev / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["utt"] for r in rows] == names
    assert rows[0]["spk1"] == "d001" and rows[0]["spk2"] == "d002" and rows[0]["input_snr"] == "3.0"
    assert rows[0]["gender_pair"] == "different" and rows[1]["gender_pair"] == "same"
    assert rows[2]["flag"] == "silent reference s2" and rows[2]["si_sdr"] == ""
    summary = json.loads((ev / "metrics.json").read_text())
    assert summary["n_utterances"] == 2 and summary["n_flagged"] == 1
    for key in ("si_sdr", "si_sdr_imp", "sdr_imp", "stoi", "input_stoi"):
        assert isinstance(summary[key], float) and len(summary[key + "_ci"]) == 2
    assert set(summary["by_gender_pair"]) == {"same", "different"}
    assert set(summary["by_snr_bucket"]) == {"0-1 dB", "3-4 dB"}
    assert len(summary["worst"]) == 1 and summary["flagged"][0]["utt"] == names[2]
    worst = list((ev / "worst").iterdir())
    assert len(worst) == 1 and worst[0].name == f"w1_{summary['worst'][0]['utt']}"
    assert {p.name for p in worst[0].iterdir()} == {"mixture.wav", "s1.wav", "s2.wav", "s1_estimate.wav",
                                                    "s2_estimate.wav"}
    assert len(list((ev / "examples").iterdir())) == 1
    table = (ev / "table.md").read_text()
    assert "By gender pair" in table and "Worst utterances" in table and "Not scored" in table
    assert not list(ev.glob(".*.tmp-*")) and (ev / ".done").is_file()
    # up to date: nothing recomputed; other settings: computed again
    mtime = (ev / "metrics.csv").stat().st_mtime_ns
    assert main(args) == 0 and (ev / "metrics.csv").stat().st_mtime_ns == mtime
    assert main(args + ["--sir-sar"]) == 0
    assert "sir" in json.loads((ev / "metrics.json").read_text())


def test_damaged_experiment_files_are_one_line_errors(tmp_path):
    import local.evaluate as evaluate

    exp, data, _ = _fake_experiment(tmp_path)
    args = ["--exp-dir", str(exp), "--data-dir", str(data)]
    good_model, good_conf = (exp / "best_model.pth").read_bytes(), (exp / "conf.yml").read_text()
    (exp / "best_model.pth").write_bytes(good_model[: len(good_model) // 2])  # truncated copy
    with pytest.raises(SystemExit, match=r"best_model.pth is truncated or corrupt \(.*\): train again") as err:
        main(args)
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)
    (exp / "best_model.pth").write_bytes(good_model)
    for damaged in (good_conf[: len(good_conf) // 2] + "\n  - [unclosed\n", "just a string\n"):
        (exp / "conf.yml").write_text(damaged)
        with pytest.raises(SystemExit, match=r"error: .*conf.yml: .*(YAML|mapping)") as err:
            main(args)
        assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    (exp / "conf.yml").write_text(good_conf)
    assert not hasattr(evaluate, "peak_limit")  # the dead helper is gone; local.output_level is the one rule


def test_moved_test_set_is_a_one_line_error(tmp_path):
    exp, data, _ = _fake_experiment(tmp_path)
    moved = tmp_path / "moved"
    data.rename(moved)
    with pytest.raises(SystemExit, match=r"mix.json names .* which does not exist: the corpus was moved") as err:
        main(["--exp-dir", str(exp), "--data-dir", str(moved)])
    assert "\n" not in str(err.value)


def test_another_corpus_is_scored_into_its_own_folder(tmp_path):
    """--out-dir: a held-out test set is scored beside the experiment's own results, not over them."""
    exp, data, names = _fake_experiment(tmp_path)
    assert main(["--exp-dir", str(exp), "--data-dir", str(data), "--out-dir", str(exp / "eval_flite")]) == 0
    assert (exp / "eval_flite" / ".done").is_file() and not (exp / "eval").exists()
    assert json.loads((exp / "eval_flite" / "metrics.json").read_text())["n_utterances"] == 2
