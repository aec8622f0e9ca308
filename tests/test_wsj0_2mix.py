"""Tests for egs/wsj0-2mix: WSJ0 discovery, SPHERE, MERL lists, the build and the reuse mode.

Everything runs on a small fake WSJ0 that the tests build in tmp_path: LDC disc folders
(``11-1.1/wsj0/si_tr_s/...``, an upper-case disc, big- and little-endian SPHERE ``.wv1``
files, ``.wv2`` siblings from a "secondary microphone") or MERL's merged wav layout, filled
with synthetic speech-like signals, and tiny MERL-format mix lists.

The reference comparison uses an independent re-implementation written here from the MATLAB
sources in MERL's ``create-speaker-mixtures.zip``: ``create_wav_2speakers.m`` (the procedure),
``activlev.m`` rev. 9407 + ``maxfilt.m`` rev. 4054 (the copies shipped in that zip; biquad
``lfilter`` as MATLAB's ``filter``, brute-force running max) and MATLAB ``resample`` (``firls``
windowed-sinc design with a Kaiser window, beta 5, N = 10, and its delay compensation, through
``np.convolve``). It shares no code with ``local.mixing`` / ``local.p56``.
"""
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import lfilter

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "wsj0-2mix"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"wsj0_2mix_{name}", RECIPE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


prep = _load("prepare")
ws = prep.wsj0_sources
ml = prep.merl_lists

FS = 16000
SPLITS = ("tr", "cv", "tt")


# ---------------------------------------------------------------------------
# fake WSJ0
# ---------------------------------------------------------------------------
def speechlike(seconds, seed, lead=0.2, trail=0.3):
    """int16 16 kHz speech-like signal: harmonics + noise under a syllabic envelope, with silence
    margins over a faint noise floor (trail=0: speech runs to the last sample)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    f0 = 95 + 17 * (seed % 7)
    voiced = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 16))
    env = np.clip(np.sin(2 * np.pi * (2.7 + 0.37 * (seed % 5)) * t + seed), 0, None) ** 1.5
    env *= 0.55 + 0.45 * np.sin(2 * np.pi * 0.6 * t + 0.3 * seed)
    x = env * (0.35 * voiced + 0.25 * rng.standard_normal(n))
    x = np.concatenate([np.zeros(int(lead * FS)), x, np.zeros(int(trail * FS))])
    x = x / np.max(np.abs(x)) * rng.uniform(0.05, 0.7) + 2e-4 * rng.standard_normal(x.size)
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def write_sphere(path, samples, byte_order="01", coding=None, microphone="Sennheiser HMD414",
                 rate=FS, checksum=True):
    samples = np.asarray(samples, dtype=np.int16)
    fields = [
        ("database_id", "s", "CSR-I"),
        ("utterance_id", "s", Path(path).name.split(".")[0]),
        ("microphone", "s", microphone),
        ("channel_count", "i", 1),
        ("sample_count", "i", samples.size),
        ("sample_rate", "i", rate),
        ("sample_n_bytes", "i", 2),
        ("sample_byte_format", "s", byte_order),
        ("sample_sig_bits", "i", 16),
    ]
    if checksum:
        fields.append(("sample_checksum", "i", int(samples.astype(np.int64).sum() % 65536)))
    if coding:
        fields.append(("sample_coding", "s", coding))
    text = "NIST_1A\n   1024\n"
    for name, typ, val in fields:
        text += f"{name} -{typ}{len(val) if typ == 's' else ''} {val}\n"
    text += "end_head\n"
    head = text.encode("ascii").ljust(1024, b" ")
    data = samples.astype("<i2" if byte_order == "01" else ">i2").tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(head + data)


# utterance -> (subset, seconds, seed, trail); 050a0503 and 01aa0102 end in speech (no trailing silence)
UTTS = {
    "01aa0101": ("si_tr_s", 1.6, 1, 0.3),
    "01aa0102": ("si_tr_s", 1.3, 2, 0.0),
    "01bc0201": ("si_tr_s", 1.9, 3, 0.25),
    "01bc0202": ("si_tr_s", 1.1, 4, 0.3),
    "02cc0101": ("si_tr_s", 1.5, 5, 0.3),   # upper case on its disc, big-endian SPHERE
    "02cc0102": ("si_tr_s", 1.2, 6, 0.05),
    "050a0501": ("si_dt_05", 1.4, 7, 0.3),
    "050a0503": ("si_dt_05", 1.7, 8, 0.0),
    "440c0201": ("si_et_05", 1.3, 9, 0.3),
    "441c0202": ("si_et_05", 1.6, 10, 0.2),
}
DISC = {"si_tr_s": "11-1.1", "si_dt_05": "11-6.1", "si_et_05": "11-14.1"}

LISTS2 = {
    "tr": [("01aa0101", "1.9857", "02cc0101", "-1.9857"),
           ("01bc0201", "0.44692", "01aa0102", "-0.44692"),
           ("02cc0102", "2.4977", "01bc0202", "-2.4977"),
           ("01aa0102", "0", "02cc0101", "0")],
    "cv": [("01bc0202", "1.6205", "01aa0101", "-1.6205"),
           ("02cc0101", "0.059714", "01bc0201", "-0.059714")],
    "tt": [("050a0501", "0.67574", "440c0201", "-0.67574"),
           ("441c0202", "2.1", "050a0503", "-2.1")],
}
LISTS3 = {
    "tr": [("01aa0101", "1.9857", "02cc0101", "-1.9857", "01bc0201", "0")],
    "cv": [("01bc0202", "1.6205", "01aa0102", "-1.6205", "02cc0102", "0")],
    "tt": [("050a0501", "0.67574", "440c0201", "-0.67574", "441c0202", "0")],
}


def list_path(utt):
    subset = UTTS[utt][0]
    return f"wsj0/{subset}/{utt[:3]}/{utt}.wav"


def signal_of(utt):
    _, sec, seed, trail = UTTS[utt]
    return speechlike(sec, seed, trail=trail)


def make_ldc_tree(root, with_wv2=True, shorten=False):
    """LDC disc layout; 02c* on an upper-case disc in big-endian; .wv2 siblings for a few."""
    for utt, (subset, *_rest) in UTTS.items():
        x = signal_of(utt)
        spk = utt[:3]
        coding = "pcm,embedded-shorten-v2.00" if shorten else None
        if spk == "02c":
            p = root / "11-2.1" / "WSJ0" / subset.upper() / spk.upper() / f"{utt.upper()}.WV1"
            write_sphere(p, x, byte_order="10", coding=coding)
        else:
            p = root / DISC[subset] / "wsj0" / subset / spk / f"{utt}.wv1"
            write_sphere(p, x, coding=coding)
        if with_wv2 and utt.endswith("1"):
            write_sphere(p.with_suffix(".wv2"), (x // 3).astype(np.int16), microphone="Crown PCC160")
    (root / "11-1.1" / "wsj0" / "doc").mkdir(parents=True, exist_ok=True)
    return root


def make_wav_tree(root):
    """MERL's merged layout: root/wsj0/<subset>/<spk>/<utt>.wav."""
    for utt in UTTS:
        p = root / list_path(utt)
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p), signal_of(utt), FS, subtype="PCM_16")
    return root


def write_lists(folder, lists, n_src=2):
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in lists.items():
        lines = []
        for row in rows:
            fields = []
            for k in range(n_src):
                fields += [list_path(row[2 * k]), row[2 * k + 1]]
            lines.append(" ".join(fields) + " \n")  # MERL's lists end lines with a space
        (folder / f"mix_{n_src}_spk_{split}.txt").write_text("".join(lines))
    return folder


def mix_name(row):
    return "_".join(row) + ".wav"


# ---------------------------------------------------------------------------
# independent reference (MATLAB resample + voicebox activlev rev. 9407 + create_wav_*.m)
# ---------------------------------------------------------------------------
def ref_resample(x, p, q, n=10, beta=5.0):
    g = math.gcd(p, q)
    p, q = p // g, q // g
    pqmax = max(p, q)
    fc = 1 / 2 / pqmax
    L = 2 * n * pqmax + 1
    m = np.arange(L) - (L - 1) / 2
    h = 2 * fc * np.sinc(2 * fc * m) * np.kaiser(L, beta)  # firls(L-1,[0 2fc 2fc 1],[1 1 0 0]).*kaiser
    h = p * h / np.sum(h)
    lhalf = (L - 1) / 2
    lx = len(x)
    nz = int(math.floor(q - (lhalf % q)))
    h = np.concatenate([np.zeros(nz), h])
    lhalf += nz
    delay = int(math.floor(math.ceil(lhalf) / q))
    ly = int(math.ceil(lx * p / q))
    nz1 = 0
    while math.ceil(((lx - 1) * p + len(h) + nz1) / q) - delay < ly:
        nz1 += 1
    h = np.concatenate([h, np.zeros(nz1)])
    up = np.zeros((lx - 1) * p + 1)
    up[::p] = x
    y = np.convolve(up, h)[::q]
    return y[delay: delay + ly]


_C25_Z = np.array([0, 0.37843443673309j, 0.23388534441447j, -0.37843443673309j, -0.23388534441447j])
_C25_P = np.array([-0.66793268833792, -0.20640255179496 + 0.73942185906851j,
                   -0.54036889596392 + 0.45698784092898j, -0.20640255179496 - 0.73942185906851j,
                   -0.54036889596392 - 0.45698784092898j])


def ref_activlev(sp, fs, pad=True):
    """voicebox activlev(sp, fs, 'n') rev. 9407 at fs < 12.1 kHz (no low-pass): returns lev."""
    nbin, thresh = 20, 15.9
    g = math.exp(-1 / fs / 0.03)
    ae = np.array([1, -2 * g, g * g]) / (1 - g) ** 2
    nh = math.ceil(0.2 * fs) + 1
    szp = np.vstack([_C25_Z, _C25_P])
    zl = 2 / (1 - szp * math.tan(200 * math.pi / fs)) - 1
    abl = np.column_stack([np.ones(2), -zl[:, 0], -2 * np.real(zl[:, 1:3]), np.abs(zl[:, 1:3]) ** 2]).real
    hfg = (abl @ [1, -1, 0, 0, 0, 0]) * (abl @ [1, 0, -1, 0, 1, 0]) * (abl @ [1, 0, 0, -1, 0, 1])
    abl = abl[:, [0, 1, 0, 2, 4, 0, 3, 5]]
    abl[0, 0:2] *= hfg[1] / hfg[0]
    x = np.asarray(sp, dtype=float)
    if pad:
        x = np.concatenate([x, np.zeros(math.ceil(0.35 * fs))])
    sq = lfilter(abl[0, 0:2], abl[1, 0:2], x)
    sq = lfilter(abl[0, 2:5], abl[1, 2:5], sq)
    sq = lfilter(abl[0, 5:8], abl[1, 5:8], sq)
    ssq = np.sum(sq * sq)
    s = lfilter([1.0], ae, np.abs(sq))
    qf, qe = np.frexp(s ** 2)
    qe = qe.astype(float)
    qe[qf == 0] = -np.inf
    held = qe.copy()
    for j in range(1, nh):  # maxfilt(qe, 1, nh, 1, -Inf): causal running max over nh samples
        held[j:] = np.maximum(held[j:], qe[:-j])
    emax = np.max(held) + 1
    bins = np.minimum(emax - held, nbin).astype(int)
    kc = np.cumsum(np.bincount(bins - 1, minlength=nbin)).astype(float)
    with np.errstate(divide="ignore"):
        aj = 10 * np.log10(ssq / kc)
    cj = 10 * math.log10(2) * (emax - np.arange(1, nbin + 1) - 1)
    mj = aj - cj - thresh
    hits = [j for j in range(nbin - 1) if mj[j] < 0 <= mj[j + 1]]
    if hits:
        jj = hits[0]
        jf = 1 / (1 - mj[jj + 1] / mj[jj])
    elif mj[-1] <= 0:
        jj, jf = nbin - 2, 1.0
    else:
        jj, jf = 0, 0.0
    return 10 ** ((aj[jj] + jf * (aj[jj + 1] - aj[jj])) / 10)


def matlab_int16(x):
    y = np.asarray(x) * 2 ** 15
    y = np.sign(y) * np.floor(np.abs(y) + 0.5)
    return np.clip(y, -32768, 32767).astype(np.int16)


def ref_merl(srcs16, snrs, pad=True):
    """create_wav_{2,3}speakers.m for one line: {(rate, mode): [mix, s1, s2, ...] as int16}."""
    s = [np.asarray(x, dtype=float) / 32768 for x in srcs16]
    s8 = [ref_resample(x, 8000, FS) for x in s]
    levs = [ref_activlev(x, 8000, pad) for x in s8]
    w = [10 ** (float(snr) / 20) for snr in snrs]
    out, scales = {}, {}
    for mode in ("min", "max"):
        for rate, base in ((8000, s8), (16000, s)):
            sig = [wk * (x / math.sqrt(lev)) if rate == 8000 else wk * x / math.sqrt(lev)
                   for wk, x, lev in zip(w, base, levs)]
            n = (min if mode == "min" else max)(len(x) for x in sig)
            sig = [np.concatenate([x[:n], np.zeros(n - len(x[:n]))]) for x in sig]
            mix = np.sum(sig, axis=0)
            amp = max(np.max(np.abs(mix)), *(np.max(np.abs(x)) for x in sig))
            scale = 1 / amp * 0.9
            out[(rate, mode)] = [matlab_int16(scale * mix)] + [matlab_int16(scale * x) for x in sig]
            scales[(rate, mode)] = scale
    return out, levs, scales


def read_i16(path):
    x, sr = sf.read(str(path), dtype="int16")
    return x, sr


# ---------------------------------------------------------------------------
# unit tests: SPHERE, discovery, lists
# ---------------------------------------------------------------------------
def test_sphere_reader_both_byte_orders_and_errors(tmp_path):
    x = signal_of("01aa0101")
    for order in ("01", "10"):
        p = tmp_path / f"a{order}.wv1"
        write_sphere(p, x, byte_order=order)
        y, sr, hdr = ws.read_sphere(p)
        assert sr == FS and y.dtype == np.int16
        np.testing.assert_array_equal(y, x)
        assert hdr.get("sample_checksum") == ws.sphere_checksum(x)
        assert hdr.get("microphone") == "Sennheiser HMD414" and not hdr.secondary_microphone
    shn = tmp_path / "c.wv1"
    write_sphere(shn, x, coding="pcm,embedded-shorten-v2.00")
    with pytest.raises(ws.ShortenCompressed, match="sph2pipe"):
        ws.read_sphere(shn)
    trunc = tmp_path / "t.wv1"
    write_sphere(trunc, x)
    trunc.write_bytes(trunc.read_bytes()[:-100])
    with pytest.raises(ws.SphereError, match="truncated"):
        ws.read_sphere(trunc)
    notsph = tmp_path / "n.wv1"
    notsph.write_bytes(b"RIFF....")
    with pytest.raises(ws.SphereError, match="NIST_1A"):
        ws.read_sphere_header(notsph)


def test_index_finds_subsets_across_discs_and_keeps_wv2_apart(tmp_path):
    root = make_ldc_tree(tmp_path / "LDC93S6A" / "csr_1")
    idx = ws.index_wsj0(tmp_path / "LDC93S6A")
    assert set(idx.subset_dirs) == set(ws.SUBSETS)
    assert len(idx.subset_dirs["si_tr_s"]) == 2  # 11-1.1 and the upper-case 11-2.1
    assert set(idx.primary) == {(UTTS[u][0], u) for u in UTTS}
    assert idx.primary[("si_tr_s", "02cc0101")].name == "02CC0101.WV1"
    assert all(p.suffix.lower() == ".wv1" for p in idx.primary.values())
    assert all(p.suffix.lower() == ".wv2" for p in idx.secondary.values()) and idx.secondary
    assert ws.split_list_path("wsj0/si_tr_s/01t/01to030v.wav") == ("si_tr_s", "01t", "01to030v")
    with pytest.raises(ValueError, match="not a WSJ0"):
        ws.split_list_path("wsj1/si_tr_s2/x.wav")
    with pytest.raises(ValueError, match="no si_tr_s"):
        ws.index_wsj0(root / "11-1.1" / "wsj0" / "doc")


def test_matlab_num2str_and_list_hash():
    assert ml.matlab_num2str(1.9857) == "1.9857"
    assert ml.matlab_num2str(-0.44692) == "-0.44692"
    assert ml.matlab_num2str(0.059714) == "0.059714"
    assert ml.matlab_num2str(0.0) == "0" and ml.matlab_num2str(-2.0) == "-2"
    assert ml.matlab_num2str(2.10) == "2.1"
    assert ml.matlab_num2str(12.345678) == "12.3457"


def test_list_checks(tmp_path):
    lists = write_lists(tmp_path / "l", LISTS2)
    paths = {s: lists / f"mix_2_spk_{s}.txt" for s in SPLITS}
    # tiny lists: not the official counts -> refused, accepted with allow_partial
    with pytest.raises(ValueError, match=r"4 mixtures, the official list has 20000"):
        ml.check_lists(paths, 2)
    res = ml.check_lists(paths, 2, allow_partial=True)
    assert [len(res.entries[s]) for s in SPLITS] == [4, 2, 2] and not res.all_official
    assert res.entries["tr"][0].name + ".wav" == mix_name(LISTS2["tr"][0])
    # normalised hash ignores whitespace / CRLF
    h = ml.normalised_sha256(paths["tr"])
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(paths["tr"].read_bytes().replace(b" \n", b"\r\n"))
    assert ml.normalised_sha256(crlf) == h
    # malformed line: file and line number
    bad = paths["cv"].read_text().splitlines()
    bad[1] = " ".join(bad[1].split()[:-1])
    paths["cv"].write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match=r"mix_2_spk_cv\.txt:2: expected 4 fields"):
        ml.check_lists(paths, 2, allow_partial=True)
    paths["cv"].write_text("wsj0/si_tr_s/01b/01bc0202.wav 1.6205 /data/other/x.wav -1.6205\n")
    with pytest.raises(ValueError, match=r"mix_2_spk_cv\.txt:1: .*not a WSJ0"):
        ml.check_lists(paths, 2, allow_partial=True)
    paths["cv"].write_text("wsj0/si_tr_s/01b/01bc0202.wav 1.6205 wsj0/si_tr_s/01a/01aa0101.wav abc\n")
    with pytest.raises(ValueError, match=r"mix_2_spk_cv\.txt:1: SNR of source 2"):
        ml.check_lists(paths, 2, allow_partial=True)
    # SNR written differently from num2str: warned (names would differ from MERL's)
    paths["cv"].write_text("wsj0/si_tr_s/01b/01bc0202.wav 1.62050 wsj0/si_tr_s/01a/01aa0101.wav -1.62050\n")
    res = ml.check_lists(paths, 2, allow_partial=True)
    assert any("num2str" in w for w in res.warnings)


def test_lists_from_zip_download_and_offline_message(tmp_path):
    lists = write_lists(tmp_path / "src", LISTS2)
    zpath = tmp_path / "create-speaker-mixtures.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for s in SPLITS:
            zf.write(lists / f"mix_2_spk_{s}.txt", f"create-speaker-mixtures/mix_2_spk_{s}.txt")
    # local zip given with --mix-lists
    got = ml.obtain_lists(2, tmp_path / "a", source=zpath)
    assert got["tt"].read_text() == (lists / "mix_2_spk_tt.txt").read_text()
    # "download" through a file:// URL (no network here)
    got = ml.obtain_lists(2, tmp_path / "b", url=zpath.as_uri())
    assert got["tr"].read_text() == (lists / "mix_2_spk_tr.txt").read_text()
    assert (tmp_path / "b" / "create-speaker-mixtures.zip").is_file()

    # offline: a clear message naming the option
    def offline(url, dest):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(ml.ListsUnavailable) as ei:
        ml.obtain_lists(2, tmp_path / "c", fetch=offline)
    msg = str(ei.value)
    assert ml.MERL_URL in msg and "--mix-lists" in msg and "offline" in msg
    assert not list((tmp_path / "c").glob("*.txt"))


def test_list_errors_name_the_users_file_not_the_copy(tmp_path):
    mine = write_lists(tmp_path / "my_lists", LISTS2)
    bad = (mine / "mix_2_spk_cv.txt").read_text().splitlines()
    bad[1] = " ".join(bad[1].split()[:-1])  # line 2: a field short
    (mine / "mix_2_spk_cv.txt").write_text("\n".join(bad) + "\n")
    copies = ml.obtain_lists(2, tmp_path / "out" / "mix_lists", source=mine)
    assert copies["cv"].parent == tmp_path / "out" / "mix_lists"
    with pytest.raises(ValueError) as err:
        ml.check_lists(copies, 2, allow_partial=True)
    assert str(err.value).startswith(f"{(mine / 'mix_2_spk_cv.txt').resolve()}:2: expected 4 fields")
    res = ml.check_lists({**copies, "cv": copies["tr"]}, 2, allow_partial=True)  # count warnings, too
    assert any(w.startswith(f"--allow-partial: {(mine / 'mix_2_spk_tt.txt').resolve()}:") for w in res.warnings)
    # from a zip: the zip and its member
    zpath = tmp_path / "create-speaker-mixtures.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for s in SPLITS:
            zf.write(mine / f"mix_2_spk_{s}.txt", f"create-speaker-mixtures/mix_2_spk_{s}.txt")
    copies = ml.obtain_lists(2, tmp_path / "z" / "mix_lists", source=zpath)
    with pytest.raises(ValueError, match=rf"^{zpath}:create-speaker-mixtures/mix_2_spk_cv\.txt:2: expected 4"):
        ml.check_lists(copies, 2, allow_partial=True)
    # a copy edited after it was made is the file to fix: then the copy is named
    copies["cv"].write_text("\n".join(bad[:1] + ["x.wav 1.0"]) + "\n")
    with pytest.raises(ValueError, match=rf"^{copies['cv']}:2: expected 4"):
        ml.check_lists(copies, 2, allow_partial=True)


# ---------------------------------------------------------------------------
# the build, compared with the independent reference
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("wsj0mix")
    wsj0 = make_ldc_tree(base / "LDC")
    lists = write_lists(base / "lists", LISTS2)
    out = base / "out"
    logs = []
    summary = prep.prepare_wsj0_mix(
        out, wsj0=wsj0, mix_lists=lists, sample_rates=(8000, 16000), modes=("min", "max"),
        allow_partial=True, progress=False, log=logs.append,
    )
    return {"out": out, "wsj0": wsj0, "lists": lists, "summary": summary, "log": "\n".join(logs)}


def test_build_layout_names_and_report(built):
    out = built["out"]
    for split, rows in LISTS2.items():
        for rd in ("wav8k", "wav16k"):
            for mode in ("min", "max"):
                d = out / rd / mode / split
                for st in ("mix", "s1", "s2"):
                    assert sorted(p.name for p in (d / st).iterdir()) == sorted(mix_name(r) for r in rows)
                    meta = json.loads((d / f"{st}.json").read_text())
                    assert len(meta) == len(rows) and all(os.path.isfile(p) for p, _ in meta)
    rep = built["summary"]["report"]
    assert rep["wav8k/min/tr"]["mixtures"] == 4 and rep["wav16k/max/tt"]["mixtures"] == 2
    assert rep["wav8k/min/tr"]["hours"] > 0
    log = built["log"]
    assert "SNR convention" in log and "s1 relative to s2" in log
    assert "differs from the official count" in log and "final check passed" in log
    # sources converted from SPHERE (LE and BE) into MERL's layout
    src = out / "wsj0_wav" / "wsj0" / "si_tr_s" / "02c" / "02cc0101.wav"
    x, sr = read_i16(src)
    assert sr == FS and not src.is_symlink()
    np.testing.assert_array_equal(x, signal_of("02cc0101"))


@pytest.mark.parametrize("split", SPLITS)
def test_build_equals_reference_within_one_lsb(built, split):
    out = built["out"]
    for row in LISTS2[split]:
        srcs = [signal_of(row[0]), signal_of(row[2])]
        ref, _, _ = ref_merl(srcs, [row[1], row[3]])
        for (rate, mode), want in ref.items():
            d = out / f"wav{rate // 1000}k" / mode / split
            for st, w in zip(("mix", "s1", "s2"), want):
                got, sr = read_i16(d / st / mix_name(row))
                assert sr == rate and got.shape == w.shape, (st, rate, mode)
                diff = np.max(np.abs(got.astype(int) - w.astype(int)))
                assert diff <= 1, f"{split} {row} {rate} {mode} {st}: {diff} LSB"


def test_min_max_lengths_peak_and_sum(built):
    out = built["out"]
    for split, rows in LISTS2.items():
        for row in rows:
            n16 = [signal_of(row[0]).size, signal_of(row[2]).size]
            for rate in (8000, 16000):
                lens = n16 if rate == 16000 else [math.ceil(n / 2) for n in n16]
                for mode, pick in (("min", min), ("max", max)):
                    d = out / f"wav{rate // 1000}k" / mode / split
                    sig = [read_i16(d / st / mix_name(row))[0].astype(int) for st in ("mix", "s1", "s2")]
                    assert all(len(s) == pick(lens) for s in sig)
                    peak = max(np.max(np.abs(s)) for s in sig)
                    assert peak == round(0.9 * 32768)  # exactly 0.9 after int16(round(2^15 x))
                    assert np.max(np.abs(sig[1] + sig[2] - sig[0])) <= 1
                    if mode == "max":  # the shorter source is zero padded
                        short = 1 if lens[0] < lens[1] else 2
                        assert np.all(sig[short][min(lens):] == 0)


def test_p56_levels_and_8k_16k_consistency(built):
    """Written source k = c * 10^(snr_k/20) * x_k / sqrt(lev_k): the P.56-normalised input (unit
    active level, measured on the 8 kHz input) times its SNR weight times one factor c per mixture
    and rate; at 16 kHz the same lev_k (from 8 kHz) with the original 16 kHz signal.

    (Re-measuring the *written* files is not used: P.56's 3 dB histogram bins make the measured
    level depend on the absolute scale, by up to a few tenths of a dB on these synthetic signals.)
    """
    from local.p56 import activlev

    out = built["out"]
    for split, rows in LISTS2.items():
        for row in rows:
            w = [10 ** (float(row[1]) / 20), 10 ** (float(row[3]) / 20)]
            x16 = [signal_of(row[k]) / 32768 for k in (0, 2)]
            x8 = [ref_resample(x, 8000, FS) for x in x16]
            lev = [activlev(x, 8000, pad_zeros=True)[0] for x in x8]
            for rate, xs in ((8000, x8), (16000, x16)):
                s = [read_i16(out / f"wav{rate // 1000}k" / "max" / split / st / mix_name(row))[0] / 32768
                     for st in ("s1", "s2")]
                g = [float(np.dot(sk[: x.size], x) / np.dot(x, x)) for sk, x in zip(s, xs)]  # fitted gains
                ck = [gk * math.sqrt(lv) / wk for gk, lv, wk in zip(g, lev, w)]
                assert ck[0] == pytest.approx(ck[1], rel=2e-4), (split, row, rate)
                # the residual is 16-bit rounding only
                for sk, gk, x in zip(s, g, xs):
                    assert np.max(np.abs(sk[: x.size] - gk * x)) <= 0.6 / 32768


def test_activlev_revision_matters_and_is_recorded(built, tmp_path):
    """rev. 2516 (no zero padding) changes utterances whose speech runs to the end (01aa0102)."""
    row = LISTS2["tr"][1]  # 01bc0201 + 01aa0102 (no trailing silence)
    srcs = [signal_of(row[0]), signal_of(row[2])]
    ref_pad, levs_pad, _ = ref_merl(srcs, [row[1], row[3]], pad=True)
    ref_nopad, levs_nopad, _ = ref_merl(srcs, [row[1], row[3]], pad=False)
    assert abs(10 * math.log10(levs_pad[1] / levs_nopad[1])) > 0.01
    got = read_i16(built["out"] / "wav8k" / "max" / "tr" / "s2" / mix_name(row))[0]
    assert np.max(np.abs(got.astype(int) - ref_pad[(8000, "max")][2])) <= 1
    assert np.max(np.abs(got.astype(int) - ref_nopad[(8000, "max")][2])) > 1
    marker = json.loads((built["out"] / "wav8k" / "max" / "tr" / ".done").read_text())
    assert marker["config"]["activlev"] == "9407"
    # asking for the other revision on the same folder is refused (no silent mixing of the two)
    with pytest.raises(prep.PrepareError, match="other settings"):
        prep.prepare_wsj0_mix(built["out"], wsj0=built["wsj0"], mix_lists=built["lists"],
                              sample_rates=(8000,), modes=("max",), activlev_rev="2516",
                              allow_partial=True, progress=False, log=lambda m: None)


def test_three_speakers_same_code_path(tmp_path):
    wsj0 = make_wav_tree(tmp_path / "wsj0wav")
    lists = write_lists(tmp_path / "l3", LISTS3, n_src=3)
    out = tmp_path / "out3"
    prep.prepare_wsj0_mix(out, wsj0=wsj0, n_src=3, mix_lists=lists, allow_partial=True,
                          progress=False, log=lambda m: None)
    for split, rows in LISTS3.items():
        row = rows[0]
        d = out / "wav8k" / "min" / split
        ref, _, _ = ref_merl([signal_of(row[0]), signal_of(row[2]), signal_of(row[4])], [row[1], row[3], row[5]])
        for st, want in zip(("mix", "s1", "s2", "s3"), ref[(8000, "min")]):
            got = read_i16(d / st / mix_name(row))[0]
            assert np.max(np.abs(got.astype(int) - want.astype(int))) <= 1
        assert (d / "s3.json").is_file()
    # wav copy: sources are links, nothing converted
    link = out / "wsj0_wav" / list_path("01aa0101")
    assert link.is_symlink() and os.path.samefile(link, wsj0 / list_path("01aa0101"))


# ---------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------
def test_resume_after_killed_run(tmp_path, monkeypatch):
    import local.mixing as mixing

    wsj0 = make_wav_tree(tmp_path / "wsj0wav")
    lists = write_lists(tmp_path / "l", LISTS2)
    kw = dict(wsj0=wsj0, mix_lists=lists, sample_rates=(8000, 16000), modes=("min",),
              allow_partial=True, progress=False, log=lambda m: None)
    clean = tmp_path / "clean"
    prep.prepare_wsj0_mix(clean, **kw)

    real_write = mixing.write_wav_atomic
    calls = {"n": 0}

    def dying_write(path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 9:  # in the middle of the 2nd mixture's files
            raise KeyboardInterrupt("killed")
        return real_write(path, *a, **k)

    out = tmp_path / "out"
    monkeypatch.setattr(mixing, "write_wav_atomic", dying_write)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare_wsj0_mix(out, **kw)
    monkeypatch.setattr(mixing, "write_wav_atomic", real_write)
    written = sorted(out.rglob("*.wav"))
    assert written and not (out / "wav8k" / "min" / "tr" / ".done").exists()
    assert not (out / "wav8k" / "min" / "tr" / "mix.json").exists()
    before = {p: p.stat().st_mtime_ns for p in written if "wsj0_wav" not in str(p)}
    # re-run: finishes, keeps what was complete, result identical to an uninterrupted run
    summary = prep.prepare_wsj0_mix(out, **kw)
    first = out / "wav8k" / "min" / "tr" / "mix" / mix_name(LISTS2["tr"][0])
    assert first in before and first.stat().st_mtime_ns == before[first]
    for p in clean.rglob("*.wav"):
        rel = p.relative_to(clean)
        if rel.parts[0] in ("wav8k", "wav16k"):
            assert (out / rel).read_bytes() == p.read_bytes(), rel
    assert not [p for p in out.rglob(".*.tmp-*")]
    # and a third run does nothing
    summary = prep.prepare_wsj0_mix(out, **kw)
    assert set(summary["steps"].values()) == {"skipped"}


def test_force_rebuilds_mixtures_keeps_sources(tmp_path):
    wsj0 = make_ldc_tree(tmp_path / "LDC", with_wv2=False)
    lists = write_lists(tmp_path / "l", LISTS2)
    kw = dict(wsj0=wsj0, mix_lists=lists, allow_partial=True, progress=False, log=lambda m: None)
    out = tmp_path / "out"
    prep.prepare_wsj0_mix(out, **kw)
    mix = out / "wav8k" / "min" / "cv" / "mix" / mix_name(LISTS2["cv"][0])
    src = out / "wsj0_wav" / list_path("01aa0101")
    t_mix, t_src = mix.stat().st_mtime_ns, src.stat().st_mtime_ns
    s = prep.prepare_wsj0_mix(out, force=True, **kw)
    assert set(s["steps"].values()) == {"done"}
    assert mix.stat().st_mtime_ns != t_mix and src.stat().st_mtime_ns == t_src


# ---------------------------------------------------------------------------
# error cases
# ---------------------------------------------------------------------------
def test_missing_sources_all_listed_before_anything_is_written(tmp_path):
    wsj0 = make_ldc_tree(tmp_path / "LDC", with_wv2=False)
    (wsj0 / "11-1.1" / "wsj0" / "si_tr_s" / "01b" / "01bc0202.wv1").unlink()
    (wsj0 / "11-14.1" / "wsj0" / "si_et_05" / "440" / "440c0201.wv1").unlink()
    bad = wsj0 / "11-6.1" / "wsj0" / "si_dt_05" / "050" / "050a0503.wv1"
    bad.write_bytes(bad.read_bytes()[:2000])  # truncated
    lists = write_lists(tmp_path / "l", LISTS2)
    out = tmp_path / "out"
    with pytest.raises(prep.PrepareError) as ei:
        prep.prepare_wsj0_mix(out, wsj0=wsj0, mix_lists=lists, allow_partial=True, progress=False,
                              log=lambda m: None)
    msg = str(ei.value)
    assert "3 source file(s)" in msg
    assert "01bc0202.wav: not found" in msg and "440c0201.wav: not found" in msg
    assert "050a0503.wav" in msg and "truncated" in msg
    assert not (out / "wav8k").exists() and not (out / "wsj0_wav").exists()
    report = (out / "logs" / "missing_sources.txt").read_text()
    assert report.count("\n") == 3


def test_wv2_only_trees_are_refused(tmp_path):
    lists = write_lists(tmp_path / "l", LISTS2)
    # 1) LDC tree where one needed utterance exists only as .wv2
    wsj0 = make_ldc_tree(tmp_path / "LDC")
    (wsj0 / "11-1.1" / "wsj0" / "si_tr_s" / "01a" / "01aa0101.wv1").unlink()
    with pytest.raises(prep.PrepareError, match=r"01aa0101\.wav: only a secondary-microphone"):
        prep.prepare_wsj0_mix(tmp_path / "o1", wsj0=wsj0, mix_lists=lists, allow_partial=True,
                              progress=False, log=lambda m: None)
    # 2) a wav copy made from the .wv2 files (names say so)
    copy = tmp_path / "wsj0_wv2_wav"
    for utt in UTTS:
        p = copy / list_path(utt)
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p.with_name(f"{utt}.wv2.wav")), signal_of(utt), FS, subtype="PCM_16")
    with pytest.raises(prep.PrepareError, match="secondary-microphone"):
        prep.prepare_wsj0_mix(tmp_path / "o2", wsj0=copy, mix_lists=lists, allow_partial=True,
                              progress=False, log=lambda m: None)
    # 3) SPHERE files copied under another name whose header names the secondary microphone
    ren = tmp_path / "renamed"
    for utt in UTTS:
        write_sphere(ren / "wsj0" / UTTS[utt][0] / utt[:3] / f"{utt}.wav", signal_of(utt), microphone="Crown PCC160")
    with pytest.raises(prep.PrepareError, match="Crown PCC160.*refused"):
        prep.prepare_wsj0_mix(tmp_path / "o3", wsj0=ren, mix_lists=lists, allow_partial=True,
                              progress=False, log=lambda m: None)


def test_no_sph2pipe_offline_message(tmp_path, monkeypatch):
    wsj0 = make_ldc_tree(tmp_path / "LDC", with_wv2=False, shorten=True)
    lists = write_lists(tmp_path / "l", LISTS2)
    cc = os.environ.get("CC") or shutil.which("cc")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no sph2pipe (and no compiler) on PATH
    if cc:
        monkeypatch.setenv("CC", cc)  # a compiler, so that the download of the source is tried
    else:
        monkeypatch.delenv("CC", raising=False)
    fetched = []

    def offline(url, dest):
        fetched.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(ws, "_download", offline)
    out = tmp_path / "out"
    with pytest.raises(ws.Sph2pipeMissing) as ei:
        prep.prepare_wsj0_mix(out, wsj0=wsj0, mix_lists=lists, allow_partial=True, progress=False,
                              log=lambda m: None)
    msg = str(ei.value)
    assert "sph2pipe" in msg and "--sph2pipe" in msg and "--sph2pipe-src" in msg and "--wsj0" in msg
    if cc:
        assert "could not download the sph2pipe source (offline?)" in msg
        assert fetched == list(ws.SPH2PIPE_URLS)
    else:
        assert "no C compiler" in msg
    assert not (out / "wav8k").exists()
    # the CLI turns it into exit status 1 with the message
    rc = prep.main(["--out", str(out), "--wsj0", str(wsj0), "--mix-lists", str(lists), "--allow-partial",
                    "--quiet", "--nj", "1"])
    assert rc == 1


def _fake_sph2pipe(folder):
    """A stand-in for sph2pipe: 'decodes' our fake shorten files (raw PCM behind the header)."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "sph2pipe"
    exe.write_text(f"""#!{sys.executable}
import sys, numpy as np, soundfile as sf
args = sys.argv[1:]
assert args[:2] == ["-f", "wav"], args
src, dst = args[2], args[3]
head = open(src, "rb").read(1024).decode("latin-1")
order = "<i2" if "sample_byte_format -s2 01" in head else ">i2"
x = np.fromfile(src, dtype=order, offset=1024).astype(np.int16)
sf.write(dst, x, 16000, subtype="PCM_16", format="WAV")
""")
    exe.chmod(0o755)
    return exe


def test_shorten_sources_go_through_sph2pipe(tmp_path, monkeypatch):
    wsj0 = make_ldc_tree(tmp_path / "LDC", with_wv2=False, shorten=True)
    lists = write_lists(tmp_path / "l", LISTS2)
    bindir = tmp_path / "bin"
    _fake_sph2pipe(bindir)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    logs = []
    prep.prepare_wsj0_mix(out, wsj0=wsj0, mix_lists=lists, allow_partial=True, progress=False, log=logs.append)
    assert any("using sph2pipe" in m for m in logs)
    x, sr = read_i16(out / "wsj0_wav" / list_path("02cc0102"))
    np.testing.assert_array_equal(x, signal_of("02cc0102"))
    # a decoder whose output disagrees with the header checksum is caught
    bad = wsj0 / "11-1.1" / "wsj0" / "si_tr_s" / "01a" / "01aa0101.wv1"
    raw = bytearray(bad.read_bytes())
    raw[5000] ^= 0x01
    bad.write_bytes(bytes(raw))
    (out / "wsj0_wav" / list_path("01aa0101")).unlink()
    with pytest.raises(RuntimeError, match="checksum"):
        prep.prepare_wsj0_mix(out, wsj0=wsj0, mix_lists=lists, allow_partial=True, progress=False,
                              log=lambda m: None)


@pytest.mark.skipif(not (os.environ.get("CC") or shutil.which("cc")), reason="no C compiler")
def test_build_sph2pipe_from_a_source_tarball(tmp_path, monkeypatch):
    import tarfile

    src = tmp_path / "sph2pipe_v2.5"
    src.mkdir()
    (src / "sph2pipe.c").write_text('#include <stdio.h>\nint main(void){puts("sph2pipe fake");return 0;}\n')
    tarball = tmp_path / "sph2pipe_v2.5.tar.gz"
    with tarfile.open(tarball, "w:gz") as tf:
        tf.add(src, arcname="sph2pipe_v2.5")
    with pytest.raises(ws.Sph2pipeMissing, match="SHA-256"):
        ws.build_sph2pipe(tmp_path / "tools", source=tarball)  # not LDC's tarball
    exe = ws.build_sph2pipe(tmp_path / "tools", source=tarball, sha256=None)
    assert exe == tmp_path / "tools" / "sph2pipe"
    assert subprocess.run([str(exe)], capture_output=True, text=True).stdout.strip() == "sph2pipe fake"
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert ws.find_sph2pipe(tools_dir=tmp_path / "tools") == exe  # a previous build is reused
    assert ws.find_sph2pipe(explicit=exe) == exe.resolve()
    with pytest.raises(ws.Sph2pipeMissing, match="not an executable"):
        ws.find_sph2pipe(explicit=tmp_path / "nope")


def test_counts_must_be_official_unless_allowed(tmp_path):
    wsj0 = make_wav_tree(tmp_path / "w")
    lists = write_lists(tmp_path / "l", LISTS2)
    with pytest.raises(prep.PrepareError, match="20000"):
        prep.prepare_wsj0_mix(tmp_path / "o", wsj0=wsj0, mix_lists=lists, progress=False, log=lambda m: None)
    assert not (tmp_path / "o" / "wav8k").exists()
    # final check on its own: wrong counts fail loudly
    out = tmp_path / "o2"
    prep.prepare_wsj0_mix(out, wsj0=wsj0, mix_lists=lists, allow_partial=True, progress=False, log=lambda m: None)
    with pytest.raises(prep.PrepareError, match=r"FINAL CHECK FAILED:\n  wav8k/min/tr: 4 mixtures, wsj0-2mix has 20000"):
        prep.final_check(out, 2, [8000], ["min"], log=lambda m: None)
    for st in ("mix", "s1", "s2"):
        (out / "wav8k" / "min" / "cv" / f"{st}.json").write_text("[]")
    with pytest.raises(prep.PrepareError, match="cv: 0 mixtures, the mix list has 2"):
        prep.final_check(out, 2, [8000], ["min"], expected={"tr": 4, "cv": 2, "tt": 2}, allow_partial=True,
                         log=lambda m: None)


# ---------------------------------------------------------------------------
# --wsj0-2mix: validate an existing folder, write metadata only
# ---------------------------------------------------------------------------
def test_existing_wsj0_2mix_folder(built, tmp_path):
    existing = tmp_path / "wsj0-mix" / "2speakers"
    existing.mkdir(parents=True)
    for rd in ("wav8k", "wav16k"):
        os.symlink(built["out"] / rd, existing / rd)  # stands for a lab's copy
    before = sorted(str(p) for p in (existing / "wav8k").rglob("*"))
    out = tmp_path / "data"
    # names are not the official 20000/5000/3000: refused unless --allow-partial
    with pytest.raises(prep.PrepareError, match="not the official wsj0-2mix"):
        prep.prepare_wsj0_mix(out, wsj0_mix=tmp_path / "wsj0-mix", progress=False, log=lambda m: None)
    s = prep.prepare_wsj0_mix(out, wsj0_mix=tmp_path / "wsj0-mix", allow_partial=True, progress=False,
                              log=lambda m: None)
    assert s["mode"] == "reuse" and s["report"]["wav8k/min/tr"]["mixtures"] == 4
    meta = json.loads((out / "wav8k" / "min" / "tr" / "s2.json").read_text())
    assert [Path(p).name for p, _ in meta] == sorted(mix_name(r) for r in LISTS2["tr"])
    assert all(os.path.isfile(p) for p, _ in meta)
    assert (out / "wav8k" / "min" / "tr" / "mix").is_symlink()
    assert sorted(str(p) for p in (existing / "wav8k").rglob("*")) == before  # nothing written there
    # with the lists, names are checked exactly
    lists = write_lists(tmp_path / "l", {**LISTS2, "tt": LISTS2["tt"][:1]})
    with pytest.raises(prep.PrepareError, match=r"tt/mix: 0 mixture\(s\) of the list missing, 1 not in the list"):
        prep.prepare_wsj0_mix(tmp_path / "d2", wsj0_mix=existing, mix_lists=lists, allow_partial=True,
                              progress=False, log=lambda m: None)
    # a folder with a missing stem directory
    broken = tmp_path / "broken" / "2speakers" / "wav8k" / "min"
    for split in SPLITS:
        (broken / split / "mix").mkdir(parents=True)
        (broken / split / "s1").mkdir()
    with pytest.raises(prep.PrepareError, match=r"missing folder\(s\) s2/"):
        prep.prepare_wsj0_mix(tmp_path / "d3", wsj0_mix=tmp_path / "broken", allow_partial=True,
                              progress=False, log=lambda m: None)
    # and a build into a folder holding someone else's wsj0-mix is refused
    with pytest.raises(prep.PrepareError, match="did not make"):
        prep.prepare_wsj0_mix(existing, wsj0=built["wsj0"], mix_lists=built["lists"], allow_partial=True,
                              progress=False, log=lambda m: None)


# ---------------------------------------------------------------------------
# prepare.sh (the run.sh contract)
# ---------------------------------------------------------------------------
def test_prepare_sh_contract(tmp_path):
    sh = RECIPE / "prepare.sh"
    assert os.access(sh, os.X_OK)
    env = {k: v for k, v in os.environ.items() if k not in ("WSJ0", "WSJ0_2MIX")}
    r = subprocess.run([str(sh), "--out", str(tmp_path / "o"), "--nj", "1"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--wsj0" in r.stderr and "WSJ0" in r.stderr
    wsj0 = make_wav_tree(tmp_path / "w")
    lists = write_lists(tmp_path / "l", LISTS2)
    env["WSJ0"] = str(wsj0)
    r = subprocess.run([str(sh), "--out", str(tmp_path / "o"), "--nj", "2", "--mix-lists", str(lists),
                        "--allow-partial", "--quiet"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    for split in SPLITS:
        for st in ("mix", "s1", "s2"):
            assert (tmp_path / "o" / "wav8k" / "min" / split / f"{st}.json").is_file()
    assert json.loads(r.stdout)["report"]["wav8k/min/tt"]["mixtures"] == 2


def test_benchmark_script_runs_on_a_tiny_tree(tmp_path):
    bench = _load("benchmark_mixing")
    lines = []
    res = bench.run_benchmark(tmp_path, n_sources=6, n_mixtures=3, njs=[1], log=lines.append)
    (r,) = res["results"]
    assert r["nj"] == 1 and r["mixtures_per_s"] > 0
    assert r["estimated_full_hours"] == pytest.approx(28000 / r["mixtures_per_s"] / 3600, rel=0.01, abs=0.006)
    assert any("estimated wall time for 28000 mixtures" in m for m in lines)


def test_wav_cache_inside_the_wav_copy_never_touches_it(tmp_path):
    wsj0 = make_wav_tree(tmp_path / "copy")
    before = {p: p.read_bytes() for p in wsj0.rglob("*.wav")}
    lists = write_lists(tmp_path / "l", LISTS2)
    prep.prepare_wsj0_mix(tmp_path / "out", wsj0=wsj0, wav_cache=wsj0, mix_lists=lists, allow_partial=True,
                          progress=False, log=lambda m: None)
    after = {p: p.read_bytes() for p in wsj0.rglob("*.wav")}
    assert after == before and not any(p.is_symlink() for p in after)


def test_reuse_force_and_in_place(built, tmp_path):
    existing = tmp_path / "2speakers"
    shutil.copytree(built["out"] / "wav8k", existing / "wav8k", ignore=shutil.ignore_patterns("*.json", ".done"))
    wavs = sorted(existing.rglob("*.wav"))
    out = tmp_path / "data"
    kw = dict(wsj0_mix=existing, allow_partial=True, progress=False, log=lambda m: None)
    prep.prepare_wsj0_mix(out, **kw)
    s = prep.prepare_wsj0_mix(out, force=True, **kw)  # only our links/JSON are redone
    assert s["report"]["wav8k/min/tt"]["mixtures"] == 2 and sorted(existing.rglob("*.wav")) == wavs
    # in place (--out is the existing folder): JSON next to the wavs, and --force keeps the audio
    s = prep.prepare_wsj0_mix(existing, **kw)
    assert (existing / "wav8k" / "min" / "tr" / "mix.json").is_file()
    s = prep.prepare_wsj0_mix(existing, force=True, **kw)
    assert sorted(existing.rglob("*.wav")) == wavs and s["report"]["wav8k/min/cv"]["mixtures"] == 2
    meta = json.loads((existing / "wav8k" / "min" / "cv" / "mix.json").read_text())
    assert all(Path(p).parent == existing / "wav8k" / "min" / "cv" / "mix" for p, _ in meta)
