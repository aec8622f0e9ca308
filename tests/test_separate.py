"""The separate entry point: chunked == unchunked, any rate, channels, folders, errors, no partial outputs."""

import numpy as np
import pytest
import soundfile as sf
import torch

from local.export import write_safetensors_package
from local.model import ConvTasNetVariant, serialize_model
from local.separate import (chunked_separate, expand_inputs, load_separator, main, model_context,
                            separate_channels, separate_file)

from tests.small_model import SMALL  # noqa: E402
TOL = 1e-4  # chunked vs unchunked for models without utterance-level statistics: float round-off (~1e-7)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def small_model(norm_type="cLN", causal=False):
    torch.manual_seed(0)
    return ConvTasNetVariant(2, **SMALL, norm_type=norm_type, causal=causal).eval()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [1000, 3001])
def test_chunked_equals_unchunked(causal, window):
    model = small_model("cLN", causal)
    x = torch.randn(16003, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model(x[None])[0]
    chunked = chunked_separate(model, x, window)
    assert chunked.shape == whole.shape
    assert (chunked - whole).abs().max() < TOL


def test_chunked_gln_is_close_and_continuous():
    """gLN sees per-window statistics: not exact, but close (> 20 dB SNR against unchunked)."""
    model = small_model("gLN")
    x = torch.randn(16003, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model(x[None])[0]
    chunked = chunked_separate(model, x, 2000)
    snr = 10 * torch.log10(whole.pow(2).sum() / (chunked - whole).pow(2).sum())
    assert snr > 20


class SwappingModel(ConvTasNetVariant):
    """Returns its sources in another order on every other call, as a PIT model may between chunks."""

    calls = 0

    def forward(self, wav):
        out = super().forward(wav)
        SwappingModel.calls += 1
        return out.flip(1) if SwappingModel.calls % 2 == 0 else out


def test_chunks_keep_one_speaker_order():
    torch.manual_seed(0)
    model = SwappingModel(2, **SMALL, norm_type="cLN").eval()
    x = torch.randn(16003, generator=torch.Generator().manual_seed(1))
    SwappingModel.calls = 0
    whole = chunked_separate(model, x, 10**6)  # one call: the reference order
    SwappingModel.calls = 0
    chunked = chunked_separate(model, x, 1000)
    assert SwappingModel.calls > 4
    assert (chunked - whole).abs().max() < TOL


def test_context_covers_receptive_field():
    assert model_context(small_model(causal=True)) == (8 * (2 * 2 * 15 + 2), 8 * 4)
    left, right = model_context(small_model())
    assert left >= 8 * 30 and right >= 8 * 30


@pytest.fixture
def export_dir(tmp_path):
    model = small_model()
    out = tmp_path / "export"
    out.mkdir()
    write_safetensors_package(serialize_model(model), out / "model.safetensors")
    return out, model


def test_any_rate_and_channels(export_dir, tmp_path):
    out, model = export_dir
    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((4410, 2))).astype(np.float32)
    sf.write(tmp_path / "talk.flac", stereo, 11025)
    assert main(["--model", str(out), str(tmp_path / "talk.flac"), "--out-dir", str(tmp_path / "down")]) == 0
    for k in (1, 2):
        info = sf.info(tmp_path / "down" / f"talk_s{k}.wav")
        assert (info.samplerate, info.frames, info.channels) == (11025, 4410, 1)
    assert main(["--model", str(out), str(tmp_path / "talk.flac"), "--out-dir", str(tmp_path / "each"),
                 "--channels", "each"]) == 0
    info = sf.info(tmp_path / "each" / "talk_s1.wav")
    assert (info.samplerate, info.frames, info.channels) == (11025, 4410, 2)


def test_each_channel_keeps_speaker_order():
    model = small_model()
    mono = 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    est = separate_channels(model, np.stack([mono, mono], 1), 8000, "each")
    assert est.shape == (2, 8000, 2)
    np.testing.assert_allclose(est[..., 0], est[..., 1], atol=1e-6)


def test_folder_names_and_progress(export_dir, tmp_path):
    out, _ = export_dir
    for rel in ("a.wav", "sub/a.wav", "sub/deeper/b.flac"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "in" / rel, np.zeros(800, np.float32) + 0.01, 8000)
    assert [s for _, s in expand_inputs([str(tmp_path / "in")])] == ["a", "sub_a", "sub_deeper_b"]
    assert main(["--model", str(out), str(tmp_path / "in"), "--out-dir", str(tmp_path / "sep")]) == 0
    assert sorted(p.name for p in (tmp_path / "sep").iterdir()) == [
        "a_s1.wav", "a_s2.wav", "sub_a_s1.wav", "sub_a_s2.wav", "sub_deeper_b_s1.wav", "sub_deeper_b_s2.wav"]


def test_bad_inputs_are_named_and_skipped(export_dir, tmp_path, caplog):
    out, _ = export_dir
    good, empty, short, broken = (tmp_path / n for n in ("good.wav", "empty.wav", "short.wav", "broken.wav"))
    sf.write(good, np.zeros(800, np.float32), 8000)
    sf.write(empty, np.zeros(0, np.float32), 8000)
    sf.write(short, np.zeros(5, np.float32), 8000)
    broken.write_bytes(b"RIFF not really a wav")
    with pytest.raises(SystemExit, match="3 of 4 inputs"):
        main(["--model", str(out), *map(str, (good, empty, short, broken)), "--out-dir", str(tmp_path / "o")])
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["good_s1.wav", "good_s2.wav"]
    text = caplog.text
    assert "empty.wav: the file holds no samples" in text
    assert "short.wav: 5 samples is shorter than one encoder window" in text
    assert "broken.wav: cannot read audio" in text
    with pytest.raises(SystemExit, match="no such file"):
        main(["--model", str(out), str(tmp_path / "missing.wav"), "--out-dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="not found"):
        main(["--model", str(tmp_path / "nomodel"), str(good), "--out-dir", str(tmp_path / "o")])


def test_no_partial_outputs_when_writing_fails(export_dir, tmp_path, monkeypatch):
    out, _ = export_dir
    sf.write(tmp_path / "x.wav", np.zeros(800, np.float32), 8000)
    import local.audio_io as audio_io

    real = audio_io.write_wav_atomic

    def fail_on_second(path, *args, **kwargs):
        if str(path).endswith("_s2.wav"):
            raise OSError("disk full")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(audio_io, "write_wav_atomic", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        separate_file(load_separator(out), tmp_path / "x.wav", tmp_path / "o", "x")
    assert not list((tmp_path / "o").glob("*.wav"))


class _RunsCode:
    """A pickle that creates ``path`` when unpickled: what a crafted model file could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _model_error(model_path, tmp_path):
    wav = tmp_path / "in.wav"
    if not wav.is_file():
        sf.write(wav, np.zeros(800, np.float32), 8000)
    with pytest.raises(SystemExit) as err:
        main(["--model", str(model_path), str(wav), "--out-dir", str(tmp_path / "o")])
    msg = str(err.value)
    assert msg.startswith(f"error: {model_path if model_path.is_dir() else model_path.parent}") and "\n" not in msg
    return msg


def test_unusable_model_files_are_one_line_errors(export_dir, tmp_path):
    out, model = export_dir
    ran = tmp_path / "code_ran"
    torch.save({"model_name": "ConvTasNetVariant", "x": _RunsCode(ran)}, tmp_path / "crafted.pth")
    msg = _model_error(tmp_path / "crafted.pth", tmp_path)
    assert "is not a safe model file" in msg and "not an export of this recipe" in msg
    assert "weights_only" not in msg and not ran.exists()
    # a Lightning training checkpoint, by name and renamed to .pth
    ckpt = {"pytorch-lightning_version": "2.4.0", "epoch": 3, "state_dict": serialize_model(model)["state_dict"]}
    for name in ("epoch003.ckpt", "renamed.pth"):
        torch.save(ckpt, tmp_path / name)
        msg = _model_error(tmp_path / name, tmp_path)
        assert "is a Lightning training checkpoint" in msg and "best_model.pth" in msg and "export" in msg
    # truncated copies
    torch.save(serialize_model(model), tmp_path / "model.pth")
    data = (tmp_path / "model.pth").read_bytes()
    (tmp_path / "model.pth").write_bytes(data[: len(data) // 2])
    assert "is truncated or corrupt" in _model_error(tmp_path / "model.pth", tmp_path)
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert _model_error(out, tmp_path).startswith(f"error: {out / 'model.safetensors'} is truncated or corrupt")
    (out / "model.json").write_text('{"model_name": ')
    assert _model_error(out, tmp_path).startswith(f"error: {out / 'model.json'} is truncated or corrupt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")  # a safe pickle, but no model package
    assert "holds no model package" in _model_error(tmp_path / "other.pth", tmp_path)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_unwritable_out_dir_fails_before_any_separation(export_dir, tmp_path, monkeypatch):
    import local.separate as separate

    out, _ = export_dir
    sf.write(tmp_path / "x.wav", np.zeros(800, np.float32), 8000)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")

    def never(*args, **kwargs):
        raise AssertionError("separated or loaded before the out dir was checked")

    monkeypatch.setattr(separate, "separate_file", never)
    monkeypatch.setattr(separate, "load_separator", never)
    with pytest.raises(SystemExit) as err:
        main(["--model", str(out), str(tmp_path / "x.wav"), "--out-dir", str(blocker / "sep")])
    msg = str(err.value)
    assert msg.startswith(f"error: --out-dir {blocker / 'sep'}: cannot create or write files there")
    assert "\n" not in msg


@pytest.mark.parametrize("causal", [False, True])
def test_fast_path_chunked_equals_eager_unchunked(causal):
    from local.inference import prepare_for_inference

    model = small_model("cLN", causal)
    fast = prepare_for_inference(model, "cpu")
    x = torch.randn(16003, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model(x[None])[0]
    assert model_context(fast) == model_context(model)
    assert (chunked_separate(fast, x, 3001) - whole).abs().max() < TOL


def test_device_and_backend_options(export_dir, tmp_path):
    from local.export import write_torchscript
    from local.inference import FastConvTasNet
    from local.onnx_export import export_offline

    out, model = export_dir
    write_torchscript(serialize_model(model), out / "model.ts")
    export_offline(model, out / "model.onnx")
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "talk.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
    written = {}
    for backend in ("auto", "eager", "fast", "torchscript", "onnx"):
        sep_dir = tmp_path / backend
        assert main(["--model", str(out), str(tmp_path / "talk.wav"), "--out-dir", str(sep_dir), "--device", "cpu",
                     "--backend", backend]) == 0
        written[backend] = np.stack([sf.read(sep_dir / f"talk_s{k}.wav", dtype="int16")[0] for k in (1, 2)])
    for backend, audio in written.items():  # 16-bit files: at most one step of rounding apart
        assert np.abs(audio.astype(int) - written["eager"]).max() <= 1, backend
    assert isinstance(load_separator(out, device="cpu", backend="auto"), FastConvTasNet)
    assert load_separator(out, device="cpu").masker is not None  # the library default: the eager model
    with pytest.raises(SystemExit, match="needs a model.ts"):
        main(["--model", str(out / "model.safetensors"), str(tmp_path / "talk.wav"), "--out-dir", str(tmp_path / "x"),
              "--backend", "torchscript"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA GPU"):
            main(["--model", str(out), str(tmp_path / "talk.wav"), "--out-dir", str(tmp_path / "x"),
                  "--device", "cuda"])


def test_reduced_precision_is_opt_in_and_logged(export_dir, tmp_path, caplog):
    import logging

    out, _ = export_dir
    sf.write(tmp_path / "talk.wav", (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 8000)
    with caplog.at_level(logging.INFO, logger="local.separate"):
        assert main(["--model", str(out), str(tmp_path / "talk.wav"), "--out-dir", str(tmp_path / "q"),
                     "--device", "cpu", "--precision", "int8"]) == 0
    assert "--precision int8: output SNR against float32" in caplog.text
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["talk_s1.wav", "talk_s2.wav"]
