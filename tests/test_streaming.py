"""Streaming separation of a causal model equals offline causal separation (tolerance 1e-4).

Every engine (the scripted step, the same step in Python, the C step; onnxruntime: ``tests/test_onnx.py``),
every chunk size down to one sample, both causal norms; state on the model's device and dtype.
"""

import pytest
import torch

from local.model import ConvTasNetVariant
from local.streaming import StreamingSeparator, StreamStep

from tests.small_model import SMALL  # noqa: E402
TOL = 1e-4  # float32 round-off: the observed difference is ~1e-7


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def causal_model(norm_type="cLN", **kw):
    torch.manual_seed(0)
    model = ConvTasNetVariant(2, **{**SMALL, **kw}, norm_type=norm_type, causal=True)
    with torch.no_grad():  # trained-looking affine parts (the step folds some of them)
        for module in model.modules():
            if hasattr(module, "gamma"):
                module.gamma.uniform_(0.5, 1.5)
                module.beta.uniform_(-0.5, 0.5)
    return model.eval()


def stream(sep, x, sizes):
    outs, i, k = [], 0, 0
    while i < x.shape[-1]:
        n = sizes[k % len(sizes)]
        outs.append(sep.process(x[..., i:i + n]))
        i, k = i + n, k + 1
    outs.append(sep.flush())
    return torch.cat(outs, -1)


@pytest.mark.parametrize("engine", ["script", "eager", "native"])
@pytest.mark.parametrize("norm_type", ["cLN", "cgLN"])
@pytest.mark.parametrize("sizes", [[8], [8 * 8], [8 * 32], [1, 7, 13, 100, 3], [8 * 80, 5]])
def test_streaming_equals_offline_causal(norm_type, sizes, engine):
    """[8 * 80, 5]: chunks longer than a block's history slack (its buffer grows)."""
    model = causal_model(norm_type)
    x = torch.randn(2, 4003, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        offline = model(x)
    online = stream(StreamingSeparator(model, device="cpu", engine=engine), x, sizes)
    assert online.shape == offline.shape
    assert (online - offline).abs().max() < TOL


@pytest.mark.parametrize("norm_type", ["cLN", "cgLN"])
def test_functional_step_equals_in_place_step(norm_type):
    """``forward`` (caches copied in and out: what model_stream.onnx is) == ``stream`` (history buffers)."""
    step = StreamStep(causal_model(norm_type)).eval()
    pending, done, caches, sums, tail = step.initial_state(2)
    history, positions = step.initial_history(2)
    state_f = (pending, done, caches, sums, tail)
    state_s = (pending.clone(), done.clone(), history, positions, [t.clone() for t in sums], tail.clone())
    x = torch.randn(2, 8 * 300, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        pos = 0
        for k in [3, 1, 40, 7, 100, 1, 2] * 2:
            chunk = x[:, pos:pos + 8 * k]
            if chunk.shape[1] < 8 * k:
                break
            pos += 8 * k
            out_f, *state_f = step(chunk, *state_f)
            out_s, *state_s = step.stream(chunk, *state_s)
            assert torch.allclose(out_f, out_s, atol=1e-6)


def test_state_follows_the_model_dtype():
    model = causal_model("cgLN").double()
    sep = StreamingSeparator(model, device="cpu")
    x = torch.randn(3001, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = stream(sep, x, [40])
    assert out.dtype == torch.float64
    with torch.no_grad():
        assert (out - model(x[None])[0]).abs().max() < 1e-10
    pending, done, caches, sums, tail = sep.step.initial_state(1)
    assert pending.dtype == caches[0].dtype == tail.dtype == torch.float64 and sums[0].dtype == torch.float64


def test_mono_chunks_pinv_and_reuse_after_flush():
    model = causal_model("cgLN", who_is_pinv="encoder")
    sep = StreamingSeparator(model)
    for seed in (1, 2):  # flush resets: a second signal is independent of the first
        x = torch.randn(2500, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            offline = model(x[None])[0]
        online = stream(sep, x, [24])
        assert online.shape == offline.shape and (online - offline).abs().max() < TOL


def test_output_is_final_and_latency():
    model = causal_model()
    sep = StreamingSeparator(model)
    assert sep.process(torch.zeros(8)).shape == (2, 0)  # less than one window: nothing yet
    assert sep.process(torch.zeros(8)).shape == (2, 8)  # one hop out per hop in from then on
    assert sep.algorithmic_latency(1) == pytest.approx(16 / 8000)  # one window, L samples
    assert sep.algorithmic_latency(32) == pytest.approx((32 * 8 + 8) / 8000)


def test_engines_and_devices_are_checked():
    with pytest.raises(ValueError, match="engine"):
        StreamingSeparator(causal_model(), engine="tflite")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            StreamingSeparator(causal_model(), device="cuda")


def test_refuses_non_causal_and_global_norm():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="causal"):
        StreamingSeparator(ConvTasNetVariant(2, **SMALL, norm_type="gLN").eval())
    with pytest.raises(ValueError, match="causal"):
        StreamingSeparator(ConvTasNetVariant(2, **SMALL, norm_type="cLN", causal=False).eval())


def test_batch_size_must_not_change():
    sep = StreamingSeparator(causal_model())
    sep.process(torch.zeros(2, 64))
    with pytest.raises(ValueError, match="batch size"):
        sep.process(torch.zeros(3, 64))
