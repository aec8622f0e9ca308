"""The CPU-friendly TCN layers compute exactly what asteroid's layers compute."""

import pytest
import torch
from asteroid.masknn.norms import GlobLN
from torch import nn

from local.fast_ops import FastDepthwiseConv1d, FastGlobLN, FastPReLU, use_fast_ops
from local.model import ConvTasNetVariant


def _forward_backward(layer, x, grad):
    x = x.clone().requires_grad_(True)
    y = layer(x)
    y.backward(grad)
    return y.detach(), x.grad, [p.grad.clone() for p in layer.parameters()]


def _assert_same(ref, new, atol):
    (y_ref, gx_ref, gp_ref), (y_new, gx_new, gp_new) = ref, new
    torch.testing.assert_close(y_new, y_ref, atol=atol, rtol=1e-5)
    torch.testing.assert_close(gx_new, gx_ref, atol=atol, rtol=1e-5)
    for a, b in zip(gp_new, gp_ref):
        torch.testing.assert_close(a, b, atol=atol * 100, rtol=1e-4)  # sums over 10^4 terms


@pytest.mark.parametrize("num_parameters", [1, 6])
def test_fast_prelu_matches_torch(num_parameters):
    gen = torch.Generator().manual_seed(0)
    x, grad = torch.randn(3, 6, 50, generator=gen), torch.randn(3, 6, 50, generator=gen)
    ref = nn.PReLU(num_parameters)
    with torch.no_grad():
        ref.weight.uniform_(-0.5, 0.8, generator=gen)
    new = FastPReLU(num_parameters)
    new.load_state_dict(ref.state_dict())
    _assert_same(_forward_backward(ref, x, grad), _forward_backward(new, x, grad), atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 8, 300), (2, 8, 5, 7)])
def test_fast_global_layer_norm_matches_asteroid(shape):
    gen = torch.Generator().manual_seed(1)
    x = 3.0 + 2.0 * torch.randn(*shape, generator=gen)  # a non-zero mean, as after PReLU
    grad = torch.randn(*shape, generator=gen)
    ref = GlobLN(shape[1])
    with torch.no_grad():
        ref.gamma.uniform_(0.5, 1.5, generator=gen)
        ref.beta.uniform_(-1.0, 1.0, generator=gen)
    new = FastGlobLN(shape[1])
    new.load_state_dict(ref.state_dict())
    _assert_same(_forward_backward(ref, x, grad), _forward_backward(new, x, grad), atol=2e-5)


@pytest.mark.parametrize("taps,dilation,causal,bias", [(3, 1, False, True), (3, 8, False, True),
                                                      (3, 4, True, True), (5, 2, False, False)])
def test_fast_depthwise_conv_matches_torch(taps, dilation, causal, bias):
    gen = torch.Generator().manual_seed(2)
    # asteroid's Conv1DBlock pads (P-1)*d/2 each side, or (P-1)*d when causal (and chops the end).
    pad = (taps - 1) * dilation if causal else (taps - 1) * dilation // 2
    ref = nn.Conv1d(6, 6, taps, padding=pad, dilation=dilation, groups=6, bias=bias)
    new = FastDepthwiseConv1d(6, 6, taps, padding=pad, dilation=dilation, groups=6, bias=bias)
    new.load_state_dict(ref.state_dict())
    x = torch.randn(3, 6, 70, generator=gen)
    grad = torch.randn(ref(x).shape, generator=gen)
    _assert_same(_forward_backward(ref, x, grad), _forward_backward(new, x, grad), atol=1e-5)


def test_swap_keeps_parameters_and_leaves_other_layers():
    block = nn.Sequential(nn.Conv1d(4, 8, 1), nn.PReLU(), GlobLN(8), nn.ReLU(),
                          nn.Conv1d(8, 8, 3, padding=2, dilation=2, groups=8),
                          nn.Conv1d(8, 8, 3, padding=1, groups=4),  # grouped, not depthwise: kept
                          nn.Conv1d(8, 8, 3, stride=2, groups=8))  # strided: kept
    before = {k: v.clone() for k, v in block.state_dict().items()}
    use_fast_ops(block)
    assert [type(m) for m in block] == [nn.Conv1d, FastPReLU, FastGlobLN, nn.ReLU, FastDepthwiseConv1d,
                                        nn.Conv1d, nn.Conv1d]
    after = block.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_model_uses_fast_layers_and_matches_stock_asteroid():
    from asteroid.models import ConvTasNet

    kwargs = dict(n_filters=32, kernel_size=16, stride=8, n_blocks=3, n_repeats=2, bn_chan=16,
                  hid_chan=24, skip_chan=16, mask_act="sigmoid")
    torch.manual_seed(0)
    ours = ConvTasNetVariant(2, **kwargs).eval()
    kinds = {type(m) for m in ours.modules()}
    assert nn.PReLU not in kinds and GlobLN not in kinds
    assert FastPReLU in kinds and FastGlobLN in kinds and FastDepthwiseConv1d in kinds
    stock = ConvTasNet(2, **kwargs).eval()
    stock.load_state_dict(ours.state_dict())  # the same parameter names
    mix = torch.randn(2, 4000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(mix), stock(mix), atol=1e-5, rtol=1e-4)


def test_fast_layers_script():
    layers = nn.Sequential(FastPReLU(), FastGlobLN(8), FastDepthwiseConv1d(8, 8, 3, padding=2, dilation=2, groups=8))
    x = torch.randn(2, 8, 30)
    torch.testing.assert_close(torch.jit.script(layers)(x), layers(x))


def test_benchmark_script_prints_every_layer(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark_tcn_ops.py"
    spec = importlib.util.spec_from_file_location("benchmark_tcn_ops", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--batch-size", "1", "--channels", "4", "--frames", "20", "--calls", "2",
                       "--repeats", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0] for r in rows] == ["PReLU", "gLN", "dwconv"]
    assert all(float(r[1]) > 0 and float(r[2]) > 0 and r[3].endswith("x") for r in rows)
