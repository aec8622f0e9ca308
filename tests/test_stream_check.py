"""local.stream_check: every engine checked on the user's own audio against offline float32; bad input in one line."""

import numpy as np
import pytest
import soundfile as sf
import torch

from local.export import write_onnx, write_safetensors_package
from local.model import ConvTasNetVariant, serialize_model
from local.stream_check import main
from local.streaming import StreamingSeparator, time_stream

from tests.small_model import SMALL
from tests.test_streaming import causal_model, stream

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def export(model, folder):
    folder.mkdir()
    write_safetensors_package(serialize_model(model), folder / "model.safetensors")
    return folder


@pytest.fixture
def causal_export(tmp_path):
    return export(causal_model("cgLN"), tmp_path / "export")


def noise_file(path, seconds, rate, level=0.3):
    audio = level * np.random.default_rng(0).standard_normal(int(seconds * rate)).astype(np.float32)
    sf.write(path, audio, rate)
    return path


def rows_of(text):
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ") and not line.startswith("| engine")}


def test_time_stream_returns_what_streaming_returns_and_a_time_per_frame():
    model = causal_model("cgLN")
    x = torch.randn(3001, generator=torch.Generator().manual_seed(2))
    seconds, online = time_stream(StreamingSeparator(model, device="cpu"), x, hops=2, repeats=2)
    expected = stream(StreamingSeparator(model, device="cpu"), x, [16])
    assert seconds > 0 and online.shape == expected.shape == (2, 3001)
    assert torch.equal(online, expected)
    with pytest.raises(ValueError, match="at least 32 samples"):
        time_stream(StreamingSeparator(model, device="cpu"), x[:20], hops=2)


def test_engines_are_checked_on_the_files_at_any_rate(causal_export, tmp_path, capsys):
    a = noise_file(tmp_path / "a.wav", 0.6, 8000)
    b = noise_file(tmp_path / "b.flac", 0.5, 16000)  # resampled to the model's 8 kHz
    out = tmp_path / "table.md"
    rc = main(["--model", str(causal_export), str(a), str(b), "--engines", "script", "native", "native-fp16",
               "--seconds", "1", "--repeats", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    rows = rows_of(printed)
    assert set(rows) == {"script", "native", "native-fp16"}
    for engine in ("script", "native"):  # float32: round-off from offline
        ms, snr, diff, ok = rows[engine]
        assert float(ms) > 0 and float(diff) < 1e-4 and ok == "yes" and float(snr) > 100
    assert 40 < float(rows["native-fp16"][1]) < 100  # rounded weights: a finite SNR, reported
    assert "2 file(s) (1.1 s)" in printed
    assert out.read_text().strip() == printed.strip()


def test_an_engine_named_and_outside_the_tolerance_fails_the_command(causal_export, tmp_path, capsys):
    a = noise_file(tmp_path / "a.wav", 0.4, 8000)
    rc = main(["--model", str(causal_export), str(a), "--engines", "native-int8", "--repeats", "1",
               "--tolerance", "1e-9"])
    assert rc == 1
    assert rows_of(capsys.readouterr().out)["native-int8"][3] == "no"


def test_a_model_that_cannot_stream_is_refused_in_one_line(tmp_path):
    folder = export(ConvTasNetVariant(2, **SMALL, norm_type="gLN", causal=False), tmp_path / "offline")
    audio = noise_file(tmp_path / "a.wav", 0.3, 8000)
    with pytest.raises(SystemExit, match="needs a causal model"):
        main(["--model", str(folder), str(audio)])


def test_bad_inputs_and_options_are_one_line(causal_export, tmp_path, caplog):
    with pytest.raises(SystemExit, match="--hops must be at least 1"):
        main(["--model", str(causal_export), "x.wav", "--hops", "0"])
    with pytest.raises(SystemExit, match="--seconds must be positive"):
        main(["--model", str(causal_export), "x.wav", "--seconds", "0"])
    for option, value, says in (("--repeats", "0", "must be at least 1"), ("--threads", "0", "must be at least 1"),
                                ("--tolerance", "-1", "must be positive")):
        with pytest.raises(SystemExit, match=f"{option} {says}"):
            main(["--model", str(causal_export), "x.wav", option, value])
    with pytest.raises(SystemExit, match="its folder does not exist"):
        main(["--model", str(causal_export), "x.wav", "--out", str(tmp_path / "no" / "table.md")])
    with pytest.raises(SystemExit, match="missing.wav: no such file"):
        main(["--model", str(causal_export), str(tmp_path / "missing.wav")])
    short = noise_file(tmp_path / "short.wav", 0.001, 8000)  # 8 samples: less than one window
    with pytest.raises(SystemExit, match="none of the 1 inputs could be used"):
        main(["--model", str(causal_export), str(short), "--engines", "script"])
    assert "short.wav: too short to stream" in caplog.text
    good = noise_file(tmp_path / "good.wav", 0.3, 8000)
    assert main(["--model", str(causal_export), str(short), str(good), "--engines", "script",
                 "--repeats", "1"]) == 1  # the short one is named and the rest checked
    caplog.clear()  # 2400 samples: enough at one hop, not for two calls of 200 hops (3200)
    with pytest.raises(SystemExit, match="none of the 1 inputs could be used"):
        main(["--model", str(causal_export), str(good), "--engines", "script", "--hops", "200"])
    assert "good.wav: too short to stream at 200 hop(s) per call (2400 samples at 8000 Hz, 3200 needed)" in caplog.text


def test_onnx_step_of_an_export_folder_is_checked_by_default_and_a_missing_one_named(causal_export, tmp_path,
                                                                                     capsys):
    a = noise_file(tmp_path / "a.wav", 0.3, 8000)
    assert main(["--model", str(causal_export), str(a), "--engines", "onnx", "--repeats", "1"]) == 1
    assert "cannot run here: no " in rows_of(capsys.readouterr().out)["onnx"][3]
    write_onnx(serialize_model(causal_model("cgLN")), causal_export)
    assert main(["--model", str(causal_export), str(a), "--repeats", "1"]) == 0
    rows = rows_of(capsys.readouterr().out)
    assert set(rows) == {"script", "native", "native-fp16", "native-int12", "native-int8", "onnx"}
    assert float(rows["onnx"][2]) < 1e-4 and rows["onnx"][3] == "yes"
