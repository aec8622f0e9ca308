"""The fast inference path equals asteroid's model; devices; reduced precision is opt-in and reported.

GPU tests (``pytest -m gpu``, skipped without CUDA): separation, streaming and every export on
``cuda`` equal the CPU results within 1e-4 (float32).
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from asteroid.models import ConvTasNet

from local.inference import (FastConvTasNet, default_device, model_geometry, output_snr, prepare_for_inference,
                             reduced_precision, resolve_device, unsupported_reason)
from local.model import ConvTasNetVariant

REPO = Path(__file__).resolve().parents[1]
from tests.small_model import SMALL  # noqa: E402
TOL = 1e-4  # float32 round-off: the observed difference is ~1e-7


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def model_with(norm_type="gLN", causal=False, seed=0, **kw):
    torch.manual_seed(seed)
    model = ConvTasNetVariant(2, **{**SMALL, **kw}, norm_type=norm_type, causal=causal)
    with torch.no_grad():  # trained-looking affine parts, so the folding of gamma/beta is exercised
        for module in model.modules():
            if hasattr(module, "gamma"):
                module.gamma.uniform_(0.5, 1.5)
                module.beta.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("norm_type,causal", [("gLN", False), ("cLN", False), ("cLN", True), ("cgLN", True)])
@pytest.mark.parametrize("variant", [dict(), dict(skip_chan=0), dict(mask_act="softmax"),
                                     dict(mask_act="relu", encoder_activation="relu", who_is_pinv="encoder")])
def test_fast_path_equals_asteroid(norm_type, causal, variant):
    model = model_with(norm_type, causal, **variant)
    fast = FastConvTasNet(model)
    portable = FastConvTasNet(model, portable=True)
    x = torch.randn(3, 4001, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
        for f in (fast, portable):
            assert (f(x) - ref).abs().max() < TOL
            assert (f(x[0]) - ref[0]).abs().max() < TOL  # (time,) -> (n_src, time)
            assert (f(x[:, None]) - ref).abs().max() < TOL  # (batch, 1, time)
            short = x[:1, :100]  # shorter than the dilations: every tap reads padding
            assert (f(short) - model(short)).abs().max() < TOL


def test_batchnorm_folds_exactly():
    torch.manual_seed(0)
    model = ConvTasNet(2, **SMALL, norm_type="bN")
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "running_mean", None) is not None:
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(2, 3001)
    with torch.inference_mode():
        assert (FastConvTasNet(model)(x) - model(x)).abs().max() < TOL


def test_stock_asteroid_model_and_large_offsets():
    """Stock ConvTasNet with the same weights; a mixture with a large DC offset (gLN's sums stay exact)."""
    ours = model_with("gLN")
    stock = ConvTasNet(2, **SMALL, norm_type="gLN", mask_act="sigmoid").eval()
    stock.load_state_dict(ours.state_dict())
    x = 3.0 + 0.01 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = stock(x)
        assert (FastConvTasNet(stock)(x) - ref).abs().max() < TOL
        assert (FastConvTasNet(ours)(x) - ref).abs().max() < TOL


def test_prepare_for_inference_and_devices():
    model = model_with("cLN")
    prepared = prepare_for_inference(model, "cpu")
    assert isinstance(prepared, FastConvTasNet)
    assert prepare_for_inference(prepared, "cpu") is prepared
    assert model_geometry(prepared) == model_geometry(model)
    assert model_geometry(model)["sample_rate"] == 8000.0
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert not any(p.requires_grad for p in prepared.parameters())  # inference only: buffers
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    plain = prepare_for_inference(model, "cpu", fast=False)
    assert plain is model


def test_unsupported_model_runs_as_it_is(caplog):
    model = model_with("cLN")
    model.masker.output_act = torch.nn.Tanh()
    assert "mask activation" in unsupported_reason(model)
    assert prepare_for_inference(model, "cpu") is model
    with pytest.raises(ValueError, match="cannot represent"):
        FastConvTasNet(model)


def test_fast_path_is_scriptable_without_device_constants():
    scripted = torch.jit.script(FastConvTasNet(model_with("gLN")))
    code = "\n".join(m.code for m in scripted.modules() if hasattr(m, "code"))
    assert "device=" not in code and 'Device = prim::Constant' not in str(scripted.inlined_graph)


@pytest.mark.parametrize("mode,min_snr", [("int8", 20.0), ("bf16", 25.0)])
def test_reduced_precision_is_opt_in_and_reports_its_snr(mode, min_snr):
    model = model_with("gLN")
    x = torch.randn(1, 8000, generator=torch.Generator().manual_seed(3))
    low, snr = reduced_precision(model, mode, probe=x)
    assert snr is not None and min_snr < snr < 200  # close, but not float32-exact
    with torch.inference_mode():
        assert low(x).dtype == torch.float32
        assert output_snr(model(x), low(x)) == pytest.approx(snr, abs=0.1)
    assert prepare_for_inference(model, "cpu").enc_w.dtype == torch.float32  # the default stays float32
    with pytest.raises(ValueError, match="int8 or bf16"):
        reduced_precision(model, "fp8")


def test_benchmark_quick_mode_prints_the_table(tmp_path):
    out = tmp_path / "table.md"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "benchmark_separation.py"), "--quick",
                          "--paths", "fast", "torchscript", "onnx", "native", "native-fp16", "native-int12",
                          "native-int8",
                          "--out", str(out)],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    table = out.read_text()
    assert table == res.stdout
    assert "thread(s)" in table and "Separation on " in table
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| asteroid ConvTasNet (stock)", "| eager (training-time model)",
                                                     "| fast (local.inference, default)", "| TorchScript model.ts",
                                                     "| ONNX Runtime model.onnx",
                                                     "| C step (local.native_step, streaming only)",
                                                     "| C step, fp16 weights (opt-in)",
                                                     "| C step, int12 weights (opt-in)",
                                                     "| C step, int8 weights (opt-in)"]
    assert "failed" not in table and "error" not in table
    for row in rows[1:-4]:  # the C steps are streaming only: no offline cells
        diff = row.split(" | ")[6]  # path, RTF 1 s, RTF 2 s, x stock, peak 1 s, peak 2 s, diff
        assert float(diff) < TOL
    for row in rows[-4:]:
        assert row.split(" | ")[1:7] == ["-"] * 6
    for row in rows[2:-3]:  # eager, fast, torchscript, onnx and the C step stream (fast: offline only)
        cells = row.split(" | ")
        if "fast" not in cells[0]:
            assert float(cells[-1].strip(" |")) < TOL
    for row, floor in zip(rows[-3:], (40, 40, 25)):  # fp16 / int12 / int8 weights: their SNR against float32
        snr = row.split(" | ")[-1].strip(" |")  # "SNR 41.2 dB (max abs diff 3.0e-05)"
        assert snr.startswith("SNR ") and snr.endswith(")") and float(snr.split()[1]) > floor, row
        assert float(snr.split()[-1].rstrip(")")) < 1.0, row


# ------------------------------------------------------------------ GPU (pytest -m gpu)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("norm_type,causal", [("gLN", False), ("cgLN", True)])
def test_gpu_separation_equals_cpu(norm_type, causal):
    from local.separate import chunked_separate

    model = model_with(norm_type, causal)
    x = torch.randn(2, 8003, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cpu = model(x)
        gpu_fast = prepare_for_inference(model, "cuda")
        assert (gpu_fast(x.cuda()).cpu() - cpu).abs().max() < TOL
        assert (prepare_for_inference(model_with(norm_type, causal), "cuda", fast=False)(x.cuda()).cpu()
                - cpu).abs().max() < TOL
    chunked_cpu = chunked_separate(prepare_for_inference(model, "cpu"), x[0], 2000)
    chunked_gpu = chunked_separate(gpu_fast, x[0], 2000)
    assert (chunked_gpu - chunked_cpu).abs().max() < TOL


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("norm_type", ["cLN", "cgLN"])
def test_gpu_streaming_equals_cpu(norm_type):
    from local.streaming import StreamingSeparator

    model = model_with(norm_type, causal=True)
    x = torch.randn(4003, generator=torch.Generator().manual_seed(1))
    outs = {}
    for device in ("cpu", "cuda"):
        sep = StreamingSeparator(model, device=device)
        parts = [sep.process(x[i:i + 24]) for i in range(0, x.shape[0], 24)] + [sep.flush()]
        assert all(p.device.type == device for p in parts)
        outs[device] = torch.cat(parts, -1).cpu()
    assert (outs["cuda"] - outs["cpu"]).abs().max() < TOL


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_every_export_loads_and_runs_on_cuda(tmp_path, causal):
    from local.export import main as export_main
    from local.separate import load_separator
    from tests.test_export import make_exp

    exp, model = make_exp(tmp_path, causal=causal)
    assert export_main(["--exp-dir", str(exp)]) == 0
    out = exp / "export"
    x = torch.randn(2, 3001, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
        for path, backend in ((out, "eager"), (out, "fast"), (out / "model.pth", "eager"), (out / "model.ts", None)):
            sep = load_separator(path, device="cuda", backend=backend)
            assert (sep(x.cuda()).cpu() - ref).abs().max() < TOL, (path, backend)
        ts = torch.jit.load(str(out / "model.ts"), map_location="cuda")
        assert (ts(x.cuda()).cpu() - ref).abs().max() < TOL
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            assert (load_separator(out / "model.onnx", device="cuda")(x) - ref).abs().max() < TOL
