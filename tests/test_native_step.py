"""The C streaming step (``engine="native"``): equal to offline causal processing for every
variant it accepts, the caller's audio untouched, a build cache keyed by the machine, and
one-line errors where it cannot run (no compiler, a failing compiler, GPU or float64)."""

import os
import platform
import stat

import pytest
import torch

from local import native_step
from local.streaming import StreamingSeparator, StreamStep

from tests.test_streaming import TOL, causal_model, stream

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("kw", [
    dict(skip_chan=0),  # masks from the residual stream
    dict(mask_act="softmax"),
    dict(mask_act="relu", encoder_activation="relu"),
    dict(who_is_pinv="decoder"),
    dict(kernel_size=20, stride=8),  # a window that is not a whole number of hops
    dict(conv_kernel_size=5),
])
def test_every_accepted_variant_equals_offline(kw):
    model = causal_model("cgLN", **kw)
    x = torch.randn(2, 3001, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        offline = model(x)
    for sizes in ([8], [1, 7, 13, 100, 3], [8 * 40]):
        online = stream(StreamingSeparator(model, device="cpu", engine="native"), x, sizes)
        assert online.shape == offline.shape
        assert (online - offline).abs().max() < TOL


REDUCED = (("native-fp16", 50.0), ("native-int12", 50.0), ("native-int8", 30.0))  # engine, SNR floor (dB)


@pytest.mark.parametrize("engine, floor_db", REDUCED)
def test_reduced_weights_stay_close_to_float32(engine, floor_db):
    """Opt-in weight storage: not equal to float32, but close (SNR against the float32 stream)."""
    from local.inference import output_snr

    model = causal_model("cgLN")
    x = torch.randn(2, 3001, generator=torch.Generator().manual_seed(4))
    exact = stream(StreamingSeparator(model, device="cpu", engine="native"), x, [8])
    sep = StreamingSeparator(model, device="cpu", engine=engine)
    approx = stream(sep, x, [1, 7, 100])
    assert approx.shape == exact.shape and not torch.equal(approx, exact)
    assert output_snr(exact, approx) > floor_db
    assert torch.equal(stream(sep, x, [8]), stream(sep, x, [8 * 40]))  # chunking changes nothing


def test_fp16_rounds_the_1x1_convolutions_and_nothing_else():
    """native-fp16 equals the eager step with only its 1x1 matrices (bottleneck, blocks, masks) rounded
    to half precision, each row over its largest magnitude, to float32 round-off: the encoder and
    decoder stay float32 (rounded too, they cost a trained model 5.5 dB of output SNR); rounding
    them as well moves the output measurably."""
    from local.inference import output_snr

    model = causal_model("cgLN")
    x = torch.randn(2, 3001, generator=torch.Generator().manual_seed(6))
    fp16 = stream(StreamingSeparator(model, device="cpu", engine="native-fp16"), x, [8])

    def rounded(names):
        sep = StreamingSeparator(model, device="cpu", engine="eager")
        step = sep.step
        mats = [step.bottleneck_w, step.mask_w] + [w for b in step.blocks for w in (b.in_w, b.out_w)]
        with torch.no_grad():
            for w in mats:
                scale = native_step.row_max(w)[:, None]
                w.copy_((w / scale).half().float() * scale)
            for name in names:
                w = getattr(step, name)
                w.copy_(w.half().float())
        return stream(sep, x, [8])

    same = rounded([])
    assert (fp16 - same).abs().max() < 1e-6 * fp16.abs().max()
    filterbanks_too = rounded(["enc_w", "dec_w", "enc_w_t", "dec_w_2d"])
    assert output_snr(fp16, filterbanks_too) < output_snr(fp16, same) - 20


def test_fp16_rows_are_stored_over_their_largest_magnitude():
    """Each fp16 row is its float32 row over its largest magnitude: that weight is stored exactly
    (+-1), and a row of small weights keeps fp16's precision instead of falling into its subnormal
    range; a zero row (and a padding row) stays zero."""
    model = causal_model("cgLN")
    step = native_step.NativeStreamStep(StreamStep(model), weights="fp16")
    w = torch.randn(37, 20, generator=torch.Generator().manual_seed(7))
    w[5] *= 1e-6  # all of it below fp16's smallest normal number, 6.1e-5
    w[3] = 0.0
    mat = step._mat(w)
    scale, packed = step._keep[-1], step._keep[-2]
    rows = packed.transpose(1, 2).reshape(-1, 20)[:37].float()
    assert packed.dtype == torch.float16 and (mat.w, mat.scale) == (packed.data_ptr(), scale.data_ptr())
    assert scale.numel() % step._panel == 0
    padded = packed.transpose(1, 2).reshape(-1, 20).float()
    assert torch.equal(padded[37:], torch.zeros_like(padded[37:])) and torch.equal(rows[3], torch.zeros(20))
    assert torch.equal(rows.abs().amax(1)[torch.arange(37) != 3], torch.ones(36))
    assert torch.equal(scale[:37][torch.arange(37) != 3], w.abs().amax(1)[torch.arange(37) != 3])
    back = rows * scale[:37, None]
    # fp16's relative precision, row 5 too (and half its smallest subnormal, times the scale)
    assert ((back - w).abs() <= w.abs() * 1.001 * 2.0 ** -11 + scale[:37, None] * 2.0 ** -25).all()
    assert ((w[5].half().float() - w[5]).abs() > w[5].abs() * 2.0 ** -8).any()  # which plain fp16 loses


def test_int8_rows_are_scaled_by_their_largest_weight():
    """Each stored row spans -127..127 (its largest magnitude maps to 127) and, times its scale,
    gives back the float32 row within half a step; an all-zero row stays zero."""
    model = causal_model("cgLN")
    step = native_step.NativeStreamStep(StreamStep(model), weights="int8")
    w = torch.randn(37, 20)
    w[3] = 0.0
    mat = step._mat(w)
    panel = step._panel
    packed, scale = step._keep[-1], step._keep[-2]
    rows = packed.transpose(1, 2).reshape(-1, 20)[:37].float()  # back from panels (column-major) to rows
    assert packed.dtype == torch.int8 and mat.scale == scale.data_ptr() and scale.numel() % panel == 0
    assert torch.equal(rows.abs().amax(1)[torch.arange(37) != 3], torch.full((36,), 127.0))
    assert torch.equal(rows[3], torch.zeros(20))
    assert ((rows * scale[:37, None] - w).abs() <= scale[:37, None] / 2 + 1e-7).all()
    with pytest.raises(ValueError, match="weights='bf16'"):
        native_step.NativeStreamStep(StreamStep(model), weights="bf16")


@pytest.mark.parametrize("cols", [20, 21, 23])  # whole steps, and 3 or 1 zero columns added
def test_int12_weights_are_a_high_byte_and_a_low_nibble(cols):
    """Unpacked as native_step.c reads them (high bytes as int8's column pairs; low nibbles two
    steps to a byte), 16 * high + low spans -2047..2047 per row and, times the row's scale, gives
    back the float32 row within half a step; an all-zero row stays zero, padding columns too."""
    model = causal_model("cgLN")
    step = native_step.NativeStreamStep(StreamStep(model), weights="int12")
    w = torch.randn(37, cols)
    w[3] = 0.0
    mat = step._mat(w)
    lo, high, scale = step._keep[-1], step._keep[-2], step._keep[-3]
    panel, width = step._panel, cols + (-cols) % 4
    assert high.dtype == torch.int8 and lo.dtype == torch.uint8 and lo.numel() * 2 == high.numel()
    assert (mat.w, mat.scale, mat.lo) == (high.data_ptr(), scale.data_ptr(), lo.data_ptr())
    # lo: (panel, pair of steps, row, element); low nibble the even step, high nibble the odd one
    low = torch.stack([lo & 15, lo >> 4], -1).permute(0, 2, 1, 4, 3).reshape(-1, panel, width)
    rows = (16 * high.transpose(1, 2).reshape(-1, panel, width).float() + low.float()).reshape(-1, width)
    assert torch.equal(rows[37:], torch.zeros_like(rows[37:])) and torch.equal(rows[:, cols:], torch.zeros(len(rows), width - cols))
    rows = rows[:37, :cols]
    assert torch.equal(rows.abs().amax(1)[torch.arange(37) != 3], torch.full((36,), 2047.0))
    assert torch.equal(rows[3], torch.zeros(cols))
    assert ((rows * scale[:37, None] - w).abs() <= scale[:37, None] / 2 + 1e-7).all()


def test_each_weight_storage_has_its_own_build():
    paths = {w: native_step.library_path(w) for w in native_step.WEIGHTS}
    assert len(set(paths.values())) == len(native_step.WEIGHTS) == 4
    for weights, (_, code) in native_step.WEIGHTS.items():
        assert native_step.load_library(weights).weight_storage() == code


def _has_cpu_flags(*flags) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            have = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return all(flag in have for flag in flags)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 instruction sets")
@pytest.mark.parametrize("march, panel", [("x86-64", 4), ("haswell", 8), ("native", None)])
def test_every_vector_width_computes_the_same(fresh_build, monkeypatch, march, panel):
    """Each branch of native_step.c's vector layer (generic 4-wide, AVX2 8-wide, this CPU's), with
    sizes that leave the last weight panel part-filled (30, 9, 18 and 20 rows) and odd column
    counts (9 and 11: the integer builds' last column pair padded, int12's last two)."""
    if march == "haswell" and not _has_cpu_flags("avx2", "fma", "f16c"):
        pytest.skip("this CPU runs no AVX2 code")
    monkeypatch.setattr(native_step, "FLAGS", [f"-march={march}" if f.startswith("-march=") else f
                                               for f in native_step.FLAGS])
    model = causal_model("cgLN", n_filters=30, bn_chan=9, hid_chan=18, skip_chan=11)
    x = torch.randn(1, 1601, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        offline = model(x)
    exact = StreamingSeparator(model, device="cpu", engine="native")
    if panel:
        assert exact.step._panel == panel
    assert (stream(exact, x, [1, 9, 40]) - offline).abs().max() < TOL
    from local.inference import output_snr
    for engine, floor_db in REDUCED:
        approx = stream(StreamingSeparator(model, device="cpu", engine=engine), x, [1, 9, 40])
        assert output_snr(offline, approx) > floor_db, engine


def test_the_callers_audio_is_never_written():
    """The step updates its state in place; the first window's samples must be a copy of the input."""
    model = causal_model("cLN")
    x = torch.randn(1, 2000, generator=torch.Generator().manual_seed(3))
    kept = x.clone()
    sep = StreamingSeparator(model, device="cpu", engine="native")
    out = torch.cat([sep.process(x[:, i:i + 64]) for i in range(0, 2000, 64)] + [sep.flush()], -1)
    assert torch.equal(x, kept)
    with torch.no_grad():
        assert (out - model(x)).abs().max() < TOL


def test_whole_hop_chunks_go_straight_to_the_c_call(monkeypatch):
    """Contiguous float32 chunks of whole hops skip the general path (its tensor operations cost
    ~30 us a call at one hop) and give its output bit for bit, mono and batched; a float64
    chunk takes the general path and agrees."""
    model = causal_model("cgLN")
    for shape in ((1500,), (2, 1500)):
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(6))
        sep = StreamingSeparator(model, device="cpu", engine="native")
        general = stream(sep, x, [1, 7, 13])  # never a whole number of hops: the general path
        taken = []
        process = sep._process
        monkeypatch.setattr(sep, "_process", lambda chunk: taken.append(chunk.shape[-1]) or process(chunk))
        chunks = [x[..., i:i + sep.stride].contiguous() for i in range(0, x.shape[-1], sep.stride)]
        direct = torch.cat([sep.process(c) for c in chunks] + [sep.flush()], -1)
        assert torch.equal(direct, general)
        assert taken == [8, 8, 1500 % 8]  # the first window (L = 2 hops), then only the short last chunk
        doubles = torch.cat([sep.process(c.double()) for c in chunks] + [sep.flush()], -1)
        assert torch.equal(doubles, general) and len(taken) == 3 + len(chunks)


def _addresses(struct):
    """Every non-NULL pointer field of a ctypes struct, nested structs included."""
    import ctypes

    found = []
    for name, kind in struct._fields_:
        if kind is ctypes.c_void_p and getattr(struct, name):
            found.append(getattr(struct, name))
        elif issubclass(kind, ctypes.Structure):
            found += _addresses(getattr(struct, name))
    return found


@pytest.mark.parametrize("weights", ["fp32", "fp16", "int12"])
def test_the_weights_live_in_one_buffer_and_compute_the_same(monkeypatch, weights):
    """After the move into the arena every array the C structs point to lies inside it (on
    Linux: from a huge-page boundary), NULLs stay NULL, and the output is bit for bit the
    output of the step that reads the tensors where they were built."""
    import ctypes

    model = causal_model("cgLN")
    step = native_step.NativeStreamStep(StreamStep(model), weights=weights)
    arena = step._arena
    start = ctypes.addressof(ctypes.c_char.from_buffer(arena)) if not isinstance(arena, torch.Tensor) \
        else arena.data_ptr()
    size = len(arena) if not isinstance(arena, torch.Tensor) else arena.numel()
    blocks = ctypes.addressof(step._blocks)  # the model's one pointer to a struct, not to an array of numbers
    inside = [a for a in _addresses(step._model) if a != blocks] + [a for b in step._blocks for a in _addresses(b)]
    assert inside and all(start <= a < start + size for a in inside)
    mat = step._blocks[0].in_w  # NULL where the storage has no such array
    assert (mat.lo is not None) == (weights == "int12") and (mat.scale is not None) == (weights != "fp32")
    if platform.system() == "Linux":
        assert min(inside) % native_step.HUGE_PAGE == 0  # the first matrix opens the arena
    x = torch.randn(2, 1203, generator=torch.Generator().manual_seed(8))
    engine = "native" if weights == "fp32" else f"native-{weights}"
    moved = stream(StreamingSeparator(model, device="cpu", engine=engine), x, [8, 1, 24])
    monkeypatch.setattr(native_step.NativeStreamStep, "_into_arena", lambda self: None)
    in_place = stream(StreamingSeparator(model, device="cpu", engine=engine), x, [8, 1, 24])
    assert torch.equal(moved, in_place)


def test_each_call_returns_an_output_of_its_own(monkeypatch):
    """Outputs come from blocks allocated ahead: with room for two per block, a stream of
    one-hop calls refills the pool many times, and every output kept keeps its values (no call
    writes another's), equal to the general path's."""
    monkeypatch.setattr(native_step, "SPARE_BYTES", 2 * 4 * 2 * 8)  # two outputs of 2 sources x 8 samples
    model = causal_model("cgLN")
    x = torch.randn(1, 1600, generator=torch.Generator().manual_seed(9))
    sep = StreamingSeparator(model, device="cpu", engine="native")
    assert sep.stride == 8 and sep.n_src == 2
    kept = [sep.process(c) for c in x[0].split(sep.stride)] + [sep.flush()]
    fast = [o for o in kept if o.shape[-1] == sep.stride][1:]  # past the first window: the C call's own
    assert len({o.data_ptr() for o in fast}) == len(fast) > 100
    assert len({o.untyped_storage().data_ptr() for o in fast}) >= len(fast) // 2  # one block per two calls
    general = stream(StreamingSeparator(model, device="cpu", engine="native"), x, [1, 7, 13])
    assert torch.equal(torch.cat(kept, -1), general[0])


def test_a_second_stream_after_flush_starts_clean():
    model = causal_model("cgLN")
    sep = StreamingSeparator(model, device="cpu", engine="native")
    for seed in (1, 2):
        x = torch.randn(1500, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            offline = model(x[None])[0]
        assert (stream(sep, x, [8]) - offline).abs().max() < TOL


def test_the_build_is_keyed_by_the_cpu(monkeypatch):
    first = native_step.library_path()
    monkeypatch.setattr(native_step, "_cpu_description", lambda: "model name: another CPU\nflags: sse2")
    assert native_step.library_path() != first
    assert native_step.library_path().name == first.name


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """No library loaded in this process, and an empty build cache."""
    monkeypatch.setattr(native_step, "_LIBRARIES", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_it_builds_into_an_empty_cache_and_leaves_no_temporary_file(fresh_build):
    lib = native_step.load_library()
    path = native_step.library_path()
    assert path.is_file() and str(path).startswith(str(fresh_build / "cache"))
    assert list(path.parent.iterdir()) == [path]
    assert lib.work_floats is not None


def test_without_a_compiler_it_says_so_in_one_line(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    with pytest.raises(native_step.NativeBuildError, match="needs a C compiler.*no-such-compiler-here"):
        StreamingSeparator(causal_model(), device="cpu", engine="native")


def test_a_failing_compiler_leaves_nothing_a_rerun_would_trust(fresh_build, monkeypatch):
    cc = fresh_build / "cc"
    cc.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo broken-cc 1.0; exit 0; }\n"
                  "echo 'fatal error: something went wrong' >&2\nexit 1\n")
    cc.chmod(cc.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(cc))
    with pytest.raises(native_step.NativeBuildError, match="compiling native_step.c failed .*something went wrong"):
        native_step.load_library()
    folder = native_step.library_path().parent
    assert not os.listdir(folder)  # no .so, no temporary file


def test_it_refuses_what_it_does_not_run():
    with pytest.raises(ValueError, match="float32 on the CPU"):
        StreamingSeparator(causal_model().double(), device="cpu", engine="native")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            StreamingSeparator(causal_model(), device="cuda", engine="native")
