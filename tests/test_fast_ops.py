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


def test_fast_global_layer_norm_of_a_constant_input_is_its_bias():
    # One-pass moments: rounding could make E[x^2] - E[x]^2 of a constant input negative (NaN in rsqrt).
    layer = FastGlobLN(8)
    with torch.no_grad():
        layer.beta.copy_(torch.linspace(-1.0, 1.0, 8))
    y = layer(torch.full((2, 8, 333), 1.1))  # E[x^2] - E[x]^2 rounds to -7e-7 here
    # (x - mean) * 1e4 of float32 rounding remains, as in asteroid's GlobLN: 2.4e-3 there, 2.7e-3 here.
    torch.testing.assert_close(y, layer.beta.view(1, -1, 1).expand_as(y).detach(), atol=1e-2, rtol=0.0)


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


# -- which code runs where ----------------------------------------------------------------------

def _aten_ops(fn, *args):
    """Names of the aten ops ``fn(*args)`` dispatches (what actually runs, whatever the device)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with Record() as rec:
        fn(*args)
    return rec.names


def _layers():
    return {"prelu": (FastPReLU(), "prelu"),
            "conv": (FastDepthwiseConv1d(8, 8, 3, padding=2, dilation=2, groups=8), "convolution"),
            "gln": (FastGlobLN(8), "var")}


@pytest.mark.parametrize("name", ["prelu", "conv", "gln"])
def test_rewrites_run_only_for_cpu_training(name):
    """CPU with gradients: the rewrite. No gradients (inference), or not a CPU tensor (here the meta
    device stands in for CUDA): the stock op, except gLN's rewrite which is kept for CPU inference."""
    layer, stock_op = _layers()[name]

    def runs_stock(module, x):
        return any(stock_op in op for op in _aten_ops(module, x))

    x = torch.randn(2, 8, 30)
    assert not runs_stock(layer, x)  # CPU training: rewritten
    with torch.no_grad():
        assert runs_stock(layer, x) == (name != "gln")
    meta = layer.to("meta")
    assert runs_stock(meta, torch.randn(2, 8, 30, device="meta"))
    with torch.no_grad():
        assert runs_stock(meta, torch.randn(2, 8, 30, device="meta"))


def test_inference_path_is_the_stock_layer_exactly():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 8, 60, generator=gen)
    pairs = [(nn.PReLU(8), FastPReLU(8)), (nn.Conv1d(8, 8, 3, padding=4, dilation=4, groups=8),
                                           FastDepthwiseConv1d(8, 8, 3, padding=4, dilation=4, groups=8))]
    for ref, new in pairs:
        with torch.no_grad():
            for p in ref.parameters():
                p.uniform_(-0.5, 0.8, generator=gen)
        new.load_state_dict(ref.state_dict())
        with torch.no_grad():
            assert torch.equal(new(x), ref(x))


def test_trace_records_the_stock_ops_and_compile_has_no_graph_break():
    """Export traces under no_grad (local.export): the traced graph holds torch's own ops.
    torch.compile captures both paths in one graph each (the choice is a guard, not a break)."""
    layers = nn.Sequential(FastPReLU(), FastGlobLN(8), FastDepthwiseConv1d(8, 8, 3, padding=2, dilation=2, groups=8))
    x = torch.randn(2, 8, 30)
    with torch.no_grad():
        graph = str(torch.jit.trace(layers, x).inlined_graph)
    assert "aten::prelu" in graph and "aten::_convolution" in graph
    compiled = torch.compile(layers, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), layers(x))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), layers(x))


# -- autocast ---------------------------------------------------------------------------------

def _output_dtypes(model, mix):
    """{submodule name: dtype of its output} for one forward and backward under CPU bf16 autocast."""
    dtypes, hooks = {}, []
    for name, module in model.named_modules():
        def hook(mod, inputs, output, name=name):
            out = output[0] if isinstance(output, tuple) else output
            dtypes[name] = out.dtype
        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            est = model(mix)
        est.float().pow(2).mean().backward()
    finally:
        for h in hooks:
            h.remove()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    return dtypes


def test_autocast_dtypes_are_stock_asteroids_layer_by_layer():
    """No fast layer changes the dtype autocast chose: under CPU bf16 autocast every submodule's
    output has the dtype stock asteroid's gives. PReLU and the depthwise conv (autocast ops) are
    bfloat16; gLN is float32 in both (asteroid's float32 gamma/beta promote its bfloat16 input)."""
    from asteroid.models import ConvTasNet

    kwargs = dict(n_filters=32, kernel_size=16, stride=8, n_blocks=3, n_repeats=2, bn_chan=16,
                  hid_chan=24, skip_chan=16, mask_act="sigmoid")
    torch.manual_seed(0)
    ours = ConvTasNetVariant(2, **kwargs)
    stock = ConvTasNet(2, **kwargs)
    stock.load_state_dict(ours.state_dict())
    mix = torch.randn(2, 4000, generator=torch.Generator().manual_seed(5))
    got, expected = _output_dtypes(ours, mix), _output_dtypes(stock, mix)
    assert got == expected
    modules = dict(ours.named_modules())
    kinds = {FastPReLU: set(), FastDepthwiseConv1d: set(), FastGlobLN: set()}
    for name, dtype in got.items():
        if type(modules[name]) in kinds:
            kinds[type(modules[name])].add(dtype)
    assert kinds == {FastPReLU: {torch.bfloat16}, FastDepthwiseConv1d: {torch.bfloat16}, FastGlobLN: {torch.float32}}


@pytest.mark.parametrize("who_is_pinv", [None, "encoder", "decoder"])
def test_filterbank_rewrites_train_like_asteroids_and_keep_shared_filters(who_is_pinv):
    """FastEncoder/FastDecoder (frames x filters, matmul + fold): the same outputs and gradients as
    asteroid's convolutions, the same state dict, and a Pinv pair still shares one filterbank."""
    from asteroid.models import ConvTasNet

    from local.fast_ops import FastDecoder, FastEncoder

    kwargs = dict(n_filters=32, kernel_size=16, stride=8, n_blocks=2, n_repeats=1, bn_chan=16,
                  hid_chan=24, skip_chan=16, mask_act="relu")
    torch.manual_seed(0)
    ours = ConvTasNetVariant(2, who_is_pinv=who_is_pinv, **kwargs)
    assert type(ours.encoder) is FastEncoder and type(ours.decoder) is FastDecoder
    assert (ours.encoder.filterbank is ours.decoder.filterbank) == (who_is_pinv is not None)
    stock = ConvTasNet(2, who_is_pinv=who_is_pinv, **kwargs)
    stock.load_state_dict(ours.state_dict())
    mix = torch.randn(3, 1001, generator=torch.Generator().manual_seed(5))  # not a whole number of hops
    got, ref = ours(mix), stock(mix)  # gradients on: the rewrites run
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    got.square().mean().backward()
    ref.square().mean().backward()
    for (name, a), (_, b) in zip(ours.named_parameters(), stock.named_parameters()):
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-3, msg=name)


def test_filterbank_rewrites_run_only_for_cpu_training():
    from asteroid_filterbanks import FreeFB

    from local.fast_ops import FastDecoder, FastEncoder

    enc, dec = FastEncoder(FreeFB(16, 8, stride=4)), FastDecoder(FreeFB(16, 8, stride=4))
    wav, spec = torch.randn(2, 1, 200), torch.randn(2, 3, 16, 49)
    assert "convolution" not in " ".join(_aten_ops(enc, wav)) and "col2im" in " ".join(_aten_ops(dec, spec))
    with torch.no_grad():
        assert "convolution" in " ".join(_aten_ops(enc, wav)) and "convolution" in " ".join(_aten_ops(dec, spec))
    assert dec(spec, length=190).shape == (2, 3, 190)


@pytest.mark.parametrize("skip_chan", [16, 0])
def test_channels_last_tcn_trains_like_asteroids(skip_chan):
    """FastTDConvNet (CPU training: the TCN channels-last, 1x1 convolutions as F.linear): asteroid's
    outputs and gradients with asteroid's state dict, with and without skip connections; no
    convolution runs in its TCN then, and inference runs asteroid's own forward."""
    from asteroid.models import ConvTasNet

    from local.fast_ops import FastTDConvNet

    kwargs = dict(n_filters=32, kernel_size=16, stride=8, n_blocks=3, n_repeats=2, bn_chan=16,
                  hid_chan=24, skip_chan=skip_chan, mask_act="relu")
    torch.manual_seed(0)
    ours = ConvTasNetVariant(2, **kwargs)
    assert type(ours.masker) is FastTDConvNet
    stock = ConvTasNet(2, **kwargs)
    assert stock.state_dict().keys() == ours.state_dict().keys()
    stock.load_state_dict(ours.state_dict())
    mix = torch.randn(3, 1000, generator=torch.Generator().manual_seed(7))
    got, ref = ours(mix), stock(mix)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    got.square().mean().backward()
    ref.square().mean().backward()
    for (name, a), (_, b) in zip(ours.named_parameters(), stock.named_parameters()):
        assert (a.grad is None) == (b.grad is None or not a.requires_grad), name
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-3, msg=name)
    spec = torch.randn(2, 32, 40)
    assert not any("convolution" in op for op in _aten_ops(ours.masker, spec))
    with torch.no_grad():
        assert any("convolution" in op for op in _aten_ops(ours.masker, spec))


def test_channels_last_tcn_leaves_causal_norms_to_asteroid():
    """cLN and cgLN (the causal models) keep asteroid's channels-first forward in training too."""
    from local.fast_ops import FastTDConvNet

    for norm in ("cLN", "cgLN"):
        model = ConvTasNetVariant(2, n_filters=32, kernel_size=16, stride=8, n_blocks=2, n_repeats=1,
                                  bn_chan=16, hid_chan=24, skip_chan=16, norm_type=norm, causal=True)
        assert type(model.masker) is FastTDConvNet
        assert any("convolution" in op for op in _aten_ops(model.masker, torch.randn(2, 32, 40)))
