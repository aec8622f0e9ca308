"""Streaming separation of a causal model equals offline causal separation (tolerance 1e-4)."""

import pytest
import torch

from local.model import ConvTasNetVariant
from local.streaming import StreamingSeparator

SMALL = dict(n_filters=32, kernel_size=16, stride=8, bn_chan=16, hid_chan=32, skip_chan=16, n_blocks=4,
             n_repeats=2)
TOL = 1e-4  # float32 round-off: the observed difference is ~1e-7


def causal_model(norm_type="cLN", **kw):
    torch.manual_seed(0)
    return ConvTasNetVariant(2, **{**SMALL, **kw}, norm_type=norm_type, causal=True).eval()


def stream(sep, x, sizes):
    outs, i, k = [], 0, 0
    while i < x.shape[-1]:
        n = sizes[k % len(sizes)]
        outs.append(sep.process(x[..., i:i + n]))
        i, k = i + n, k + 1
    outs.append(sep.flush())
    return torch.cat(outs, -1)


@pytest.mark.parametrize("norm_type", ["cLN", "cgLN"])
@pytest.mark.parametrize("sizes", [[8], [8 * 8], [8 * 32], [1, 7, 13, 100, 3]])
def test_streaming_equals_offline_causal(norm_type, sizes):
    model = causal_model(norm_type)
    x = torch.randn(2, 4003, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        offline = model(x)
    online = stream(StreamingSeparator(model), x, sizes)
    assert online.shape == offline.shape
    assert (online - offline).abs().max() < TOL


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
