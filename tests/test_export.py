"""Export round-trips: safetensors + JSON, asteroid .pth, TorchScript, ONNX all give the model's output."""

import json
import pickle
import zipfile

import pytest
import torch
import yaml

from local.config import load_config
from local.export import EXPORT_FILES, export_files, main as export_main
from local.model import make_model, serialize_model
from local.separate import load_separator


def make_exp(tmp_path, who_is_pinv=None, causal=False):
    conf = load_config("tests/conf/micro.yml")
    conf["filterbank"]["who_is_pinv"] = who_is_pinv
    if causal:
        conf["masknet"].update(causal=True, norm_type="cLN")
    torch.manual_seed(0)
    model = make_model(conf).eval()
    exp = tmp_path / "exp"
    (exp / "eval").mkdir(parents=True)
    torch.save(serialize_model(model), exp / "best_model.pth")
    (exp / "conf.yml").write_text(yaml.safe_dump(conf))
    metrics = {"test_set": "tt", "n_utterances": 2, "si_sdr": 5.0, "input_si_sdr": 0.0, "si_sdr_imp": 5.0}
    (exp / "eval" / "metrics.json").write_text(json.dumps(metrics))
    mark_evaluated(exp)
    return exp, model


def mark_evaluated(exp):
    """The marker local.evaluate writes last: these metrics are of the current best_model.pth."""
    from local.stage_state import mark_done

    mark_done(exp / "eval" / ".done", [exp / "best_model.pth"], settings={})


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("who_is_pinv,causal", [(None, False), ("encoder", False), (None, True)])
def test_every_export_format_gives_the_same_output(tmp_path, who_is_pinv, causal, capsys):
    exp, model = make_exp(tmp_path, who_is_pinv, causal)
    assert export_main(["--exp-dir", str(exp)]) == 0
    out = exp / "export"
    said = capsys.readouterr().out  # a causal model's export says how to check its streaming engines
    assert ("local.stream_check --model" in said) == causal and "local.separate --model" in said
    for name in ("model.safetensors", "model.json", "model.pth", "model.ts", "model.onnx", "conf.yml",
                 "metrics.json", "README.md"):
        assert (out / name).is_file(), name
    assert (out / "model_stream.onnx").is_file() == causal  # the streaming step: causal models only
    assert set(export_files(causal)) <= {p.name for p in out.iterdir()}
    x = torch.randn(3, 3001, generator=torch.Generator().manual_seed(1))  # other batch and length than traced
    with torch.no_grad():
        ref = model(x)
        from_safetensors = load_separator(out)(x)
        from_pth = load_separator(out / "model.pth")(x)
        from asteroid.models import ConvTasNet

        from_asteroid = ConvTasNet.from_pretrained(str(out / "model.pth")).eval()(x)
        scripted = torch.jit.load(str(out / "model.ts"))(x)
        by_backend = {backend: load_separator(out, device="cpu", backend=backend)(x)
                      for backend in ("eager", "fast", "torchscript", "onnx")}
        from_ts_file = load_separator(out / "model.ts", device="cpu")(x)
    for got in (from_safetensors, from_pth, from_asteroid, by_backend["eager"]):
        assert torch.allclose(got, ref, atol=1e-6)
    for got in (scripted, from_ts_file, by_backend["fast"], by_backend["torchscript"], by_backend["onnx"]):
        assert got.shape == ref.shape
        assert torch.allclose(got, ref, atol=1e-5)
    if causal:
        from local.streaming import StreamingSeparator

        sep = StreamingSeparator(str(out / "model_stream.onnx"), engine="onnx")
        online = torch.cat([sep.process(x[:, i:i + 40]) for i in range(0, x.shape[1], 40)] + [sep.flush()], -1)
        assert torch.allclose(online, ref, atol=1e-5)


def _graph_text(module) -> str:
    """The code and graphs of a TorchScript module and every submodule."""
    parts = []
    for sub in module.modules():
        for attr in ("code", "inlined_graph", "graph"):
            try:
                parts.append(str(getattr(sub, attr)))
            except (AttributeError, RuntimeError):
                pass
    return "\n".join(parts)


def test_torchscript_export_has_no_device_constant(tmp_path):
    """A trace of asteroid's model bakes ``torch.tensor([0.0], device=output.device)`` in as a CPU
    constant (TDConvNet.forward); model.ts is scripted from the fast graph instead, so it runs anywhere."""
    import re

    exp, model = make_exp(tmp_path, causal=True)
    export_main(["--exp-dir", str(exp)])
    ts = torch.jit.load(str(exp / "export" / "model.ts"))
    text = _graph_text(ts)
    for pattern in (r'device="cpu"', r'torch\.device\("cpu"\)', r'Device = prim::Constant\[value="cpu"\]',
                    r"device=cpu\)\s*=\s*prim::Constant"):
        assert not re.search(pattern, text), pattern
    # what the check catches: the traced asteroid model
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.tensor results are registered as constants in the trace"
        traced = torch.jit.trace(model, torch.randn(1, 800), check_trace=False)
    assert re.search(r'Device = prim::Constant\[value="cpu"\]|torch\.device\("cpu"\)', _graph_text(traced))
    extra = {"geometry.json": ""}
    torch.jit.load(str(exp / "export" / "model.ts"), _extra_files=extra)
    assert json.loads(extra["geometry.json"])["kernel_size"] == model.encoder.filterbank.kernel_size


def test_without_onnx_the_export_has_no_onnx_files(tmp_path, monkeypatch):
    import local.onnx_export

    monkeypatch.setattr(local.onnx_export, "onnx_available", lambda: False)
    exp, _ = make_exp(tmp_path, causal=True)
    assert export_main(["--exp-dir", str(exp)]) == 0
    names = {p.name for p in (exp / "export").iterdir()}
    assert "model.ts" in names and not {n for n in names if n.endswith(".onnx")}
    assert export_main(["--exp-dir", str(exp)]) == 0  # complete without them: up to date


def test_safetensors_package_needs_no_pickle(tmp_path, monkeypatch):
    exp, model = make_exp(tmp_path)
    export_main(["--exp-dir", str(exp)])
    out = exp / "export"
    assert not zipfile.is_zipfile(out / "model.safetensors")  # not a torch (pickle) archive
    config = json.loads((out / "model.json").read_text())
    assert config["model_name"] == "ConvTasNetVariant"
    assert config["infos"]["final_metrics"]["si_sdr"] == 5.0

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling while loading the safetensors export")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    x = torch.randn(1, 2000)
    with torch.no_grad():
        assert torch.allclose(load_separator(out)(x), model(x), atol=1e-6)


def test_pth_loads_with_weights_only(tmp_path):
    exp, _ = make_exp(tmp_path)
    export_main(["--exp-dir", str(exp)])
    package = torch.load(exp / "export" / "model.pth", map_location="cpu", weights_only=True)
    assert package["model_name"] == "ConvTasNetVariant"


def test_model_card_and_rerun(tmp_path, capsys):
    exp, _ = make_exp(tmp_path)
    export_main(["--exp-dir", str(exp)])
    card = (exp / "export" / "README.md").read_text()
    for part in ("## Training config", "n_filters: 16", "## Data and results", "Intended use", "model.safetensors",
                 "model.ts"):
        assert part in card, part
    before = (exp / "export" / "model.safetensors").stat().st_mtime_ns
    export_main(["--exp-dir", str(exp)])
    assert (exp / "export" / "model.safetensors").stat().st_mtime_ns == before  # up to date: skipped
    (exp / "export" / "model.ts").unlink()  # an export from before this format existed is redone
    export_main(["--exp-dir", str(exp)])
    assert (exp / "export" / "model.ts").is_file()
    (exp / "export" / "model.onnx").unlink()
    export_main(["--exp-dir", str(exp)])
    assert (exp / "export" / "model.onnx").is_file()


def test_causal_export_without_its_streaming_step_is_redone(tmp_path):
    exp, _ = make_exp(tmp_path, causal=True)
    export_main(["--exp-dir", str(exp)])
    (exp / "export" / "model_stream.onnx").unlink()
    export_main(["--exp-dir", str(exp)])
    assert (exp / "export" / "model_stream.onnx").is_file()


def test_missing_json_is_a_clear_error(tmp_path):
    exp, _ = make_exp(tmp_path)
    export_main(["--exp-dir", str(exp)])
    (exp / "export" / "model.json").unlink()
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_separator(exp / "export" / "model.safetensors")


def test_metrics_of_an_older_model_are_refused(tmp_path):
    import os

    exp, _ = make_exp(tmp_path)
    model_path = exp / "best_model.pth"
    st = model_path.stat()
    os.utime(model_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # retrained after the evaluation
    with pytest.raises(SystemExit) as err:
        export_main(["--exp-dir", str(exp)])
    assert str(err.value) == (f"error: {exp / 'eval' / 'metrics.json'} is from an older best_model.pth: "
                              "re-run stage 2 (./run.sh --stage 2 --stop-stage 2)")
    assert not (exp / "export").exists()
    (exp / "eval" / ".done").unlink()  # an evaluation that never finished
    with pytest.raises(SystemExit, match="is not from a finished evaluation .*re-run stage 2"):
        export_main(["--exp-dir", str(exp)])
    mark_evaluated(exp)  # evaluated again: accepted
    assert export_main(["--exp-dir", str(exp)]) == 0


def test_every_export_file_gets_the_same_mode(tmp_path):
    import os
    import stat

    exp, _ = make_exp(tmp_path)
    old = os.umask(0o027)  # a stricter umask than the usual one is respected too
    try:
        export_main(["--exp-dir", str(exp)])
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (exp / "export").iterdir()}
    assert set(modes) >= set(EXPORT_FILES)
    assert set(modes.values()) == {0o640}, modes  # 0666 less the umask, model.safetensors included


def test_a_full_disk_leaves_the_previous_export_and_no_temp_folder(tmp_path, monkeypatch):
    import errno

    exp, _ = make_exp(tmp_path)
    export_main(["--exp-dir", str(exp)])
    before = {p.name: p.read_bytes() for p in (exp / "export").iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit) as err:
        export_main(["--exp-dir", str(exp), "--force"])
    tmp = exp / "export.tmp"
    assert str(err.value) == (f"error: could not write the export in {tmp} (no space left on device): removed it, "
                              f"{exp / 'export'} is untouched")
    assert not tmp.exists() and {p.name: p.read_bytes() for p in (exp / "export").iterdir()} == before
    # torch's RuntimeError for a failed write (what torch.save raises on a full disk) is handled the same way
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0\nframe #0: ...")))
    with pytest.raises(SystemExit, match=r"unexpected pos 64 vs 0; is the disk full\?\): removed it") as err:
        export_main(["--exp-dir", str(exp), "--force"])
    assert "\n" not in str(err.value) and not tmp.exists()


@pytest.mark.parametrize("model_file", ["", "model.pth", "model.ts", "model.onnx"])
def test_a_demo_model_says_what_it_is_for_whichever_file_separates(tmp_path, model_file, caplog):
    """Every export file records the training corpus; local.separate warns before separating with a demo model."""
    import numpy as np
    import soundfile as sf

    from local.model_card import DEMO_MODEL_NOTICE
    from local.separate import main as separate_main

    exp, _ = make_exp(tmp_path)
    assert export_main(["--exp-dir", str(exp), "--dataset", "demo"]) == 0
    assert json.loads((exp / "export" / "model.json").read_text())["infos"]["dataset"] == "demo"
    assert "What it is for" in (exp / "export" / "README.md").read_text()
    mix = tmp_path / "mix.wav"
    sf.write(mix, np.random.default_rng(0).uniform(-0.3, 0.3, 8000), 8000, subtype="PCM_16")
    model = exp / "export" / model_file if model_file else exp / "export"
    assert load_separator(model).trained_on == "demo"
    with caplog.at_level("WARNING", logger="local.separate"):
        assert separate_main(["--model", str(model), "--out-dir", str(tmp_path / "out"), "--device", "cpu",
                              str(mix)]) == 0
    assert DEMO_MODEL_NOTICE in caplog.text


def test_a_model_of_a_real_corpus_separates_without_the_demo_notice(tmp_path, caplog):
    import numpy as np
    import soundfile as sf

    from local.separate import main as separate_main

    exp, _ = make_exp(tmp_path)
    assert export_main(["--exp-dir", str(exp), "--dataset", "demo"]) == 0
    assert export_main(["--exp-dir", str(exp), "--dataset", "wsj0-2mix"]) == 0  # another corpus: exported again
    assert load_separator(exp / "export" / "model.ts").trained_on == "wsj0-2mix"
    mix = tmp_path / "mix.wav"
    sf.write(mix, np.random.default_rng(0).uniform(-0.3, 0.3, 8000), 8000, subtype="PCM_16")
    with caplog.at_level("WARNING", logger="local.separate"):
        assert separate_main(["--model", str(exp / "export"), "--out-dir", str(tmp_path / "out"), str(mix)]) == 0
    assert "demo corpus" not in caplog.text


def test_the_corpus_is_read_from_both_experiment_layouts(tmp_path):
    from local.export import corpus_of

    assert corpus_of(tmp_path / "exp" / "demo" / "demo") == "demo"
    assert corpus_of(tmp_path / "exp" / "wsj0-2mix" / "pinv_decoder" / "seed2") == "wsj0-2mix"
    assert corpus_of(tmp_path / "elsewhere") is None
