"""ONNX exports through onnxruntime equal PyTorch (1e-4): the offline model with dynamic batch and
length, the streaming step with its state in and out; ``local.separate`` runs model.onnx with no
torch model code."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from local.model import ConvTasNetVariant  # noqa: E402
from local.onnx_export import (GEOMETRY_KEY, OnnxSeparator, OnnxStreamStep, export_offline,  # noqa: E402
                               export_stream)
from local.streaming import StreamingSeparator  # noqa: E402

from tests.small_model import SMALL  # noqa: E402
TOL = 1e-4  # float32 round-off: the observed difference is ~1e-7


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def small(norm_type="gLN", causal=False, **kw):
    torch.manual_seed(0)
    model = ConvTasNetVariant(2, **{**SMALL, **kw}, norm_type=norm_type, causal=causal)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "gamma"):
                module.gamma.uniform_(0.5, 1.5)
                module.beta.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("norm_type,causal,kw", [("gLN", False, {}), ("gLN", False, {"who_is_pinv": "encoder"}),
                                                  ("cLN", True, {}), ("cgLN", True, {"mask_act": "softmax"}),
                                                  ("gLN", False, {"skip_chan": 0})])
def test_offline_onnx_equals_pytorch_for_any_batch_and_length(tmp_path, norm_type, causal, kw):
    model = small(norm_type, causal, **kw)
    export_offline(model, tmp_path / "model.onnx")
    sep = OnnxSeparator(tmp_path / "model.onnx")
    assert sep.geometry["sample_rate"] == 8000 and sep.geometry["causal"] == causal
    for shape in [(1, 8000), (3, 3001), (2, 200)]:  # the trace was on (1, 8000)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[1]))
        with torch.no_grad():
            ref = model(x)
        got = sep(x)
        assert got.shape == ref.shape and (got - ref).abs().max() < TOL
    x = torch.randn(2500)
    with torch.no_grad():
        assert (sep(x) - model(x)).abs().max() < TOL  # (time,) -> (n_src, time)


@pytest.mark.parametrize("norm_type", ["cLN", "cgLN"])
def test_stream_onnx_equals_pytorch_step_and_offline(tmp_path, norm_type):
    from local.streaming import StreamStep

    model = small(norm_type, causal=True)
    export_stream(model, tmp_path / "model_stream.onnx")
    onnx_step = OnnxStreamStep(tmp_path / "model_stream.onnx")
    step = StreamStep(model).eval()
    state_o = onnx_step.initial_state(2)
    state_t = step.initial_state(2)
    x = torch.randn(2, 8 * 60, generator=torch.Generator().manual_seed(2))
    pos = 0
    with torch.inference_mode():
        for k in (1, 5, 13, 2, 30):  # state in, state out, any number of hops per call
            chunk = x[:, pos:pos + 8 * k]
            pos += 8 * k
            out_o, *state_o = onnx_step(chunk, *state_o)
            out_t, *state_t = step(chunk, *state_t)
            assert out_o.shape == (2, 2, 8 * k) and (out_o - out_t).abs().max() < TOL
            for a, b in zip(state_o[2] + state_o[3], state_t[2] + state_t[3]):  # caches and running sums
                assert torch.allclose(a, b, rtol=1e-6, atol=TOL)
    # and as a stream: equal to offline causal processing
    signal = torch.randn(2, 4003, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        offline = model(signal)
    sep = StreamingSeparator(str(tmp_path / "model_stream.onnx"), engine="onnx")
    outs, i = [], 0
    for n in [1, 7, 13, 100, 3] * 100:
        if i >= signal.shape[-1]:
            break
        outs.append(sep.process(signal[:, i:i + n]))
        i += n
    online = torch.cat(outs + [sep.flush()], -1)
    assert online.shape == offline.shape and (online - offline).abs().max() < TOL


def test_metadata_and_refusals(tmp_path):
    import onnx

    model = small("cLN", causal=True)
    export_offline(model, tmp_path / "model.onnx")
    proto = onnx.load(str(tmp_path / "model.onnx"))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta[GEOMETRY_KEY]["kernel_size"] == 16 and meta[GEOMETRY_KEY]["stride"] == 8
    with pytest.raises(ValueError, match="streaming export"):
        OnnxStreamStep(tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="causal"):
        export_stream(small("gLN"), tmp_path / "x.onnx")


def test_separate_runs_model_onnx_without_torch_model_code(tmp_path, monkeypatch):
    import local.model
    from local.separate import load_separator, main

    model = small("gLN")
    out = tmp_path / "export"
    out.mkdir()
    export_offline(model, out / "model.onnx")
    mix = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    sf.write(tmp_path / "mix.wav", mix, 8000)
    with torch.no_grad():
        expected = model(torch.from_numpy(mix)[None])[0]

    def no_model_code(*args, **kwargs):
        raise AssertionError("torch model code ran")

    monkeypatch.setattr(local.model, "load_model", no_model_code)
    monkeypatch.setattr(ConvTasNetVariant, "forward", no_model_code)
    monkeypatch.setattr("local.inference.FastConvTasNet.forward", no_model_code)
    for argv in (["--model", str(out / "model.onnx")], ["--model", str(out), "--backend", "onnx"]):
        sep_dir = tmp_path / ("sep_" + argv[-1].replace("/", "_")[-8:])
        assert main([*argv, str(tmp_path / "mix.wav"), "--out-dir", str(sep_dir), "--device", "cpu"]) == 0
        assert sorted(p.name for p in sep_dir.iterdir()) == ["mix_s1.wav", "mix_s2.wav"]
    got = load_separator(out / "model.onnx")(torch.from_numpy(mix))
    assert (got - expected).abs().max() < TOL
