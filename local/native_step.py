"""The streaming step in C (``engine="native"`` of :class:`local.streaming.StreamingSeparator`).

At one encoder hop per call the TorchScript step costs about 3.2 ms per 1-ms frame on one
thread, nearly all of it the ~900 operator calls of a call, while the arithmetic is 48
matrix-vector products. ``native_step.c`` does the same step as one C function over the weights
:class:`~local.streaming.StreamStep` has folded (norm affines into the next 1x1 convolution,
residual and skip convolutions as one product), with the depthwise convolution's past in ring
buffers. Output equals the scripted step to float32 round-off (``tests/test_native_step.py``).

The library is compiled on first use with the system's C compiler (``$CC``, else ``cc``) for
this CPU (``-march=native``) into ``$XDG_CACHE_HOME/conv_tasnet_recipe/native/<key>/``, the key
covering the source, the compiler's version and the CPU model and flags, so a cache copied to
another machine is never reused. The build is written to a temporary file and renamed, so an
interrupted build is never picked up. Without a compiler the engine is refused in one line.

``weights="fp16"`` (engine ``native-fp16``) stores the 1x1 convolutions' weight matrices in half precision
(each row over its largest magnitude, a float scale per row),
``weights="int12"`` (engine ``native-int12``) as 12-bit integers with a float scale per row (its
largest magnitude maps to 2047; stored as a signed high byte and a low nibble, 1.5 bytes a
weight) and ``weights="int8"`` (engine ``native-int8``) as int8 with a float scale per row (to
127), each in a build of its own: at one hop per call reading the weights is most of the step
(19 MB in float32 for paper_best_causal; one core here reads 27-30 GB/s from L3), so half,
three eighths or a quarter of the bytes makes it faster. fp16 weights are widened to float32 for
the products; integer weights are multiplied with each frame's input quantised to int16 (its own
scale) in int32 arithmetic, two products per lane per instruction. The encoder and the decoder
stay float32 in every build (small, and the most sensitive to rounding). All three are opt-in: their
output is not float32's, and ``benchmarks/benchmark_separation.py`` reports their SNR against
float32 (about 72, 70 and 46 dB on random weights).

Every array the step reads is copied, once, into one buffer aligned to a huge page (the
weight matrices first, in the order of use; see ``NativeStreamStep._into_arena``), and its
outputs come from blocks allocated ahead: at one hop per call the two took about 25 us off an
fp16 frame of ~0.41 ms (README, 2026-12-06).
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List

import torch

from local.compile_cache import _cpu_description

SOURCE = Path(__file__).with_name("native_step.c")
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-std=c11"]
#: weight storage -> (the define that selects it in native_step.c, its number there: weight_storage())
WEIGHTS = {"fp32": ([], 0), "fp16": (["-DNATIVE_WEIGHTS_FP16"], 1), "int8": (["-DNATIVE_WEIGHTS_INT8"], 2),
           "int12": (["-DNATIVE_WEIGHTS_INT12"], 3)}
#: the largest integer of the integer storages (a row's largest weight maps to it)
INTEGER_MAX = {"int8": 127, "int12": 2047}
NORMS = {"cLN": 0, "cgLN": 1, "BN": 2}
# every activation local.model accepts, by model_sizes' name (it refuses the others when the model is built)
ENC_ACTS = {"identity": 0, "relu": 1, "sigmoid": 2}
MASK_ACTS = {"relu": 1, "sigmoid": 2, "softmax": 3}

_P = ctypes.c_void_p
_I = ctypes.c_int64
#: the arena's alignment: a transparent huge page on x86-64 Linux (2 MB), so that it can be backed by them
HUGE_PAGE = 2 << 20
#: bytes of outputs allocated at once per call shape (see NativeStreamStep._spare_outputs)
SPARE_BYTES = 16 << 10


class _Norm(ctypes.Structure):
    _fields_ = [("kind", _I), ("affine", _I), ("sums_index", _I), ("gamma", _P), ("beta", _P),
                ("scale", _P), ("shift", _P)]


class _Mat(ctypes.Structure):
    _fields_ = [("w", _P), ("scale", _P), ("lo", _P)]


class _Block(ctypes.Structure):
    _fields_ = [(name, _I) for name in ("dilation", "taps", "out_rows", "out_offset", "slope1_n", "slope2_n",
                                        "ring", "ring_offset")] + \
               [("in_w", _Mat), ("out_w", _Mat)] + \
               [(name, _P) for name in ("in_b", "slope1", "dw_w", "dw_b", "slope2", "out_b")] + \
               [("norm1", _Norm), ("norm2", _Norm)]


class _Model(ctypes.Structure):
    _fields_ = [(name, _I) for name in ("N", "L", "hop", "B", "H", "Sc", "n_blocks", "n_src", "enc_act",
                                        "mask_act", "mask_slope_n", "n_sums", "ring_total")] + \
               [(name, _P) for name in ("enc_w_t", "dec_w")] + \
               [(name, _Mat) for name in ("bott_w", "mask_w")] + \
               [(name, _P) for name in ("bott_b", "mask_slope", "mask_b")] + \
               [("norm0", _Norm), ("blocks", _P)]


def row_max(w: torch.Tensor) -> torch.Tensor:
    """Per row of ``w``, its largest magnitude (float32's smallest normal number for a zero row): the
    reduced storages keep ``w`` over it, times ``INTEGER_MAX`` rounded for the integer ones, or
    rounded to half for fp16, so each row's largest weight is exact and no row of small weights
    falls into fp16's subnormal range (below 6.1e-5), where it would keep fewer bits."""
    return w.abs().amax(1).clamp_min(torch.finfo(torch.float32).tiny)


class NativeBuildError(RuntimeError):
    """The C step could not be compiled or loaded (the message says what to install or set)."""


def _compiler() -> str:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise NativeBuildError(f"engine='native' needs a C compiler: {cc!r} was not found "
                               "(install gcc or clang, or set CC), or use engine='script'")
    return cc


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "conv_tasnet_recipe" / "native"


def _check_weights(weights: str) -> None:
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r}: choose one of {sorted(WEIGHTS)}")


def _flags(weights: str) -> List[str]:
    return FLAGS + WEIGHTS[weights][0]


def library_path(weights: str = "fp32") -> Path:
    """Where this machine's build lives (the key: source, compiler version, flags, CPU)."""
    _check_weights(weights)
    cc = _compiler()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise NativeBuildError(f"engine='native': running {cc!r} --version failed ({err})") from None
    parts = [SOURCE.read_text(), cc, version, " ".join(_flags(weights)), _cpu_description()]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return _cache_root() / key / "native_step.so"


_LIBRARIES: Dict[str, ctypes.CDLL] = {}


def load_library(weights: str = "fp32") -> ctypes.CDLL:
    """The compiled step for this machine and weight storage, built on first use."""
    if weights in _LIBRARIES:
        return _LIBRARIES[weights]
    path = library_path(weights)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
        os.close(fd)
        cmd = [_compiler(), *_flags(weights), str(SOURCE), "-o", tmp, "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                hint = " (fp16 weights need _Float16: GCC 12+ or clang 15+)" if weights == "fp16" else ""
                raise NativeBuildError(f"engine='native': compiling {SOURCE.name} failed ({last}){hint}; "
                                       "use engine='script'")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(path))
    lib.weight_storage.restype = _I
    stored = lib.weight_storage()
    if stored != WEIGHTS[weights][1]:  # a build of another storage under this name: never use it
        other = next((name for name, (_, code) in WEIGHTS.items() if code == stored), f"storage {stored}")
        raise NativeBuildError(f"engine='native': {path} stores {other} weights, not {weights}; delete it to rebuild")
    lib.panel_rows.restype = _I
    lib.work_floats.restype = _I
    lib.work_floats.argtypes = [ctypes.POINTER(_Model), _I]
    lib.stream_step.restype = None
    lib.stream_step.argtypes = [ctypes.POINTER(_Model), _I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _P]
    _LIBRARIES[weights] = lib
    return lib


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous().cpu()


def _aligned_buffer(size: int) -> tuple:
    """(a zeroed buffer of at least ``size`` bytes, the address of its first byte aligned to
    :data:`HUGE_PAGE`): an anonymous private mapping advised to use huge pages where the platform
    has them, else a torch byte tensor (64-byte aligned)."""
    span = -(-max(size, 1) // HUGE_PAGE) * HUGE_PAGE
    private = getattr(mmap, "MAP_PRIVATE", None)
    if private is None:  # no POSIX mmap flags (Windows)
        tensor = torch.zeros(span, dtype=torch.uint8)
        return tensor, tensor.data_ptr()
    buffer = mmap.mmap(-1, span + HUGE_PAGE, flags=private | mmap.MAP_ANONYMOUS)
    start = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    skip = -start % HUGE_PAGE
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        try:
            buffer.madvise(advice, skip, span)  # before the first write, which allocates the pages
        except OSError:  # a kernel without transparent huge pages: 4 KB pages, the same arithmetic
            pass
    return buffer, start + skip


def _repoint(struct: ctypes.Structure, moved: Dict[int, int]) -> None:
    """Every pointer field of ``struct`` (nested structs too) found in ``moved`` set to its new address."""
    for name, kind in struct._fields_:
        if kind is _P:
            address = getattr(struct, name)
            if address in moved:
                setattr(struct, name, moved[address])
        elif issubclass(kind, ctypes.Structure):
            _repoint(getattr(struct, name), moved)  # a view into struct: set in place


class NativeStreamStep:
    """:class:`~local.streaming.StreamStep`'s arithmetic as one C call (CPU, float32).

    ``weights``: how the weight matrices are stored, ``"fp32"`` (exact), ``"fp16"``, ``"int12"`` or
    ``"int8"`` (opt-in, see the module docstring).
    ``initial_state(batch)`` -> ``(pending, frames_done, rings, positions, sums, tail)``;
    ``step(chunk, *state)`` -> ``(out, *state)``, the state updated in place.
    """

    def __init__(self, step, weights: str = "fp32"):
        _check_weights(weights)
        self.weights = weights
        for name in ("sample_rate", "kernel_size", "stride", "n_src", "in_chan", "out_chan", "bn_chan",
                     "hid_chan", "skip_chan"):
            setattr(self, name, getattr(step, name))
        ref = step.enc_w
        if ref.device.type != "cpu" or ref.dtype != torch.float32:
            raise ValueError(f"engine='native' runs float32 on the CPU, not {ref.dtype} on {ref.device}: "
                             "use engine='script' there")
        self._lib = load_library(weights)  # after the checks: a refused model compiles nothing
        self._panel = int(self._lib.panel_rows())
        self._keep: List[torch.Tensor] = []  # every tensor the C structs point into
        blocks = list(step.blocks)
        self.rings = [int(b.cache_size) + 1 for b in blocks]
        offsets = [sum(self.rings[:i]) for i in range(len(blocks))]
        self._blocks = (_Block * max(len(blocks), 1))()
        for i, b in enumerate(blocks):
            out_rows = int(b.out_w.shape[0])
            self._blocks[i] = _Block(
                dilation=int(b.dilation), taps=int(b.taps), out_rows=out_rows,
                out_offset=self.bn_chan if b.skip_only else 0,
                slope1_n=int(b.act1.weight.numel()), slope2_n=int(b.act2.weight.numel()),
                ring=self.rings[i], ring_offset=offsets[i],
                in_w=self._mat(b.in_w), out_w=self._mat(b.out_w), in_b=self._ptr(b.in_b),
                slope1=self._ptr(b.act1.weight), dw_w=self._ptr(b.dw_w), dw_b=self._ptr(b.dw_b),
                slope2=self._ptr(b.act2.weight), out_b=self._ptr(b.out_b),
                norm1=self._norm(b.norm1), norm2=self._norm(b.norm2))
        self._model = _Model(
            N=self.in_chan, L=self.kernel_size, hop=self.stride, B=self.bn_chan, H=self.hid_chan,
            Sc=self.skip_chan, n_blocks=len(blocks), n_src=self.n_src,
            enc_act=ENC_ACTS[step.enc_act], mask_act=MASK_ACTS[step.mask_act],
            mask_slope_n=int(step.mask_act_w.numel()), n_sums=int(step.n_sums), ring_total=sum(self.rings),
            enc_w_t=self._ptr(step.enc_w_t), dec_w=self._ptr(step.dec_w_2d),
            bott_w=self._mat(step.bottleneck_w), mask_w=self._mat(step.mask_w), bott_b=self._ptr(step.bottleneck_b),
            mask_slope=self._ptr(step.mask_act_w), mask_b=self._ptr(step.mask_b),
            norm0=self._norm(step.norm0), blocks=ctypes.cast(self._blocks, _P))
        self._arena = self._into_arena()
        self._model_ref = ctypes.byref(self._model)
        self.n_sums = int(step.n_sums)
        self._work = torch.empty(0)
        self._work_ptr: Dict[int, int] = {}  # hops per call -> the scratch buffer's address
        self._spare: Dict[tuple, List[torch.Tensor]] = {}  # (batch, hops, squeeze) -> outputs not yet returned

    def _into_arena(self) -> "mmap.mmap | torch.Tensor":
        """Moves every array the C structs point to into one buffer, the weight matrices first in
        the order the step reads them, and points the structs there; returns the buffer (kept
        with the step). On Linux it is an anonymous mapping aligned to :data:`HUGE_PAGE` and
        advised to be backed by transparent huge pages: a frame at one hop reads every weight
        once, and with 4 KB pages that is a new page (a TLB miss) every 2048 fp16 weights. In
        one process, paper_best_causal fp16, 2026-12-06 (Xeon model 167): 379-381 us a call
        against 387-391 from the tensors as allocated; a plain 10 MB read from L3, 31.0 against
        30.0 GB/s. Elsewhere (or where the kernel grants no huge pages) it is still one buffer."""
        by_address: Dict[int, torch.Tensor] = {}
        for t in self._keep:  # the C step only reads them: arrays that overlap may be copied apart
            if t.data_ptr() and t.nbytes >= by_address.get(t.data_ptr(), t).nbytes:  # 0: empty, NULL in C
                by_address[t.data_ptr()] = t  # of two from one address, the longer
        mats = [self._model.bott_w] + [m for b in self._blocks for m in (b.in_w, b.out_w)] + [self._model.mask_w]
        first = [a for m in mats for a in (m.w, m.lo, m.scale) if a]
        placed = set(first)
        order = first + [a for a in by_address if a not in placed]
        offsets, total = {}, 0
        for address in order:
            offsets[address] = total
            total += -(-by_address[address].nbytes // 64) * 64  # each array on its own cache lines
        buffer, base = _aligned_buffer(total)
        for address, offset in offsets.items():
            ctypes.memmove(base + offset, address, by_address[address].nbytes)
        moved = {address: base + offset for address, offset in offsets.items()}
        _repoint(self._model, moved)
        for block in self._blocks:
            _repoint(block, moved)
        self._keep = []  # the structs point into the buffer alone now
        return buffer

    def _ptr(self, tensor: torch.Tensor) -> int:
        return self._keep_ptr(_f32(tensor))

    def _mat(self, tensor: torch.Tensor) -> _Mat:
        """A weight matrix (rows, cols) in this step's storage and layout, kept alive with the step:
        panels of ``panel_rows()`` rows (the last one padded with zeros), each stored column-major
        (see ``linear`` in native_step.c); fp16: each row over its largest magnitude (:func:`row_max`),
        the scale kept per row; integers: each row over its largest magnitude times
        ``INTEGER_MAX``, rounded, with that scale kept per row, and the columns in pairs; int12
        splits them into high bytes (stored as int8's) and low nibbles, two steps' to a byte."""
        w = _f32(tensor.reshape(tensor.shape[0], -1))
        rows, cols = w.shape
        w = torch.cat([w, w.new_zeros((-rows) % self._panel, cols)])
        if self.weights == "fp32":
            return _Mat(w=self._keep_ptr(self._panels(w)))
        if self.weights == "fp16":  # each row over its largest magnitude: that weight exact, small rows kept
            scale = row_max(w)
            return _Mat(w=self._keep_ptr(self._panels(w / scale[:, None]).to(torch.float16)),
                        scale=self._keep_ptr(scale))
        top = INTEGER_MAX[self.weights]
        scale = row_max(w) / top
        q = torch.round(w / scale[:, None]).clamp(-top, top)
        # zero columns up to whole steps: a pair (int8) or two pairs (int12: a byte of low nibbles)
        q = torch.cat([q, q.new_zeros(q.shape[0], (-cols) % (4 if self.weights == "int12" else 2))], 1)
        high = torch.div(q, 16, rounding_mode="floor") if self.weights == "int12" else q
        pairs = q.shape[1] // 2
        # (panel, pair, row, 2): a step's weights for the panel's rows, each row's pair adjacent
        packed = high.reshape(-1, self._panel, pairs, 2).transpose(1, 2).to(torch.int8).contiguous()
        mat = _Mat(scale=self._keep_ptr(scale), w=self._keep_ptr(packed))
        if self.weights == "int12":  # (panel, pair of steps, row, 2): the even step's nibble low, the odd's high
            low = (q - 16 * high).to(torch.uint8).reshape(-1, self._panel, pairs // 2, 2, 2).permute(0, 2, 1, 4, 3)
            mat.lo = self._keep_ptr((low[..., 0] | (low[..., 1] << 4)).contiguous())
        return mat

    def _panels(self, w: torch.Tensor) -> torch.Tensor:
        """(rows, cols), rows padded to whole panels, as panels of ``panel_rows()`` rows, each column-major."""
        return w.reshape(-1, self._panel, w.shape[1]).transpose(1, 2).contiguous()

    def _keep_ptr(self, tensor: torch.Tensor) -> int:
        """``tensor``'s address, the tensor kept alive with the step (as stored: no conversion)."""
        self._keep.append(tensor)
        return tensor.data_ptr()

    def _norm(self, norm) -> _Norm:
        return _Norm(kind=NORMS[norm.kind], affine=int(norm.affine), sums_index=int(norm.index),
                     gamma=self._ptr(norm.gamma), beta=self._ptr(norm.beta),
                     scale=self._ptr(norm.scale), shift=self._ptr(norm.shift))

    def initial_state(self, batch: int):
        overlap = self.kernel_size - self.stride
        return (torch.zeros(batch, overlap), torch.zeros(1, dtype=torch.int64),
                torch.zeros(batch, sum(self.rings), self.hid_chan), torch.zeros(len(self.rings), dtype=torch.int64),
                torch.zeros(batch, self.n_sums, 2, dtype=torch.float64), torch.zeros(batch, self.n_src, overlap))

    @staticmethod
    def pointers(state) -> tuple:
        """The addresses of a state from :meth:`initial_state`, in the C call's order. The step
        updates the state in place, so they stay valid for the stream: a caller that keeps them
        saves their lookup on every call."""
        pending, frames_done, rings, positions, sums, tail = state
        for t in state:
            if t.device.type != "cpu" or not t.is_contiguous():
                raise ValueError("NativeStreamStep: the state must be the contiguous CPU tensors of initial_state()")
        return tuple(t.data_ptr() for t in (pending, tail, sums, rings, positions, frames_done))

    def run(self, chunk: torch.Tensor, batch: int, k: int, pointers: tuple, squeeze: bool = False) -> torch.Tensor:
        """``k`` hops of ``batch`` streams: ``chunk`` a contiguous CPU float32 tensor of
        ``batch * k * stride`` samples, ``pointers`` from :meth:`pointers`; returns a
        ``(batch, n_src, k * stride)`` tensor (``(n_src, k * stride)`` with ``squeeze``, one
        stream) that no other call writes. At one hop per call every Python-side tensor operation
        costs 5-15 us (the step has just streamed the weights through the caches, evicting the
        interpreter's data), as much as the norms of the whole model: hence nothing here but
        taking a preallocated output (:meth:`_spare_outputs`) and the call."""
        work = self._work_ptr.get(k)
        if work is None:
            need = int(self._lib.work_floats(self._model_ref, k))
            if self._work.numel() < need:
                self._work = torch.empty(need)
                self._work_ptr.clear()
            work = self._work_ptr[k] = self._work.data_ptr()
        spare = self._spare.get((batch, k, squeeze))
        if not spare:
            spare = self._spare_outputs(batch, k, squeeze)
        out = spare.pop()
        self._lib.stream_step(self._model_ref, batch, k, chunk.data_ptr(), out.data_ptr(), *pointers, work)
        return out

    def _spare_outputs(self, batch: int, k: int, squeeze: bool) -> List[torch.Tensor]:
        """Outputs for the next calls of this shape, allocated together (:data:`SPARE_BYTES` of them,
        at least one): after a call has streamed the weights through the caches a ``torch.empty``
        costs about 9 us, a list's ``pop`` well under one. Each is its own region of one block (a
        view, contiguous), written by exactly one call."""
        shape = (self.n_src, k * self.stride) if squeeze else (batch, self.n_src, k * self.stride)
        count = max(1, SPARE_BYTES // (4 * batch * self.n_src * k * self.stride))
        spare = self._spare[(batch, k, squeeze)] = list(torch.empty(count, *shape).unbind(0))
        return spare

    def __call__(self, chunk, pending, frames_done, rings, positions, sums, tail):
        if chunk.dtype != torch.float32 or chunk.device.type != "cpu" or not chunk.is_contiguous():
            chunk = _f32(chunk)
        state = (pending, frames_done, rings, positions, sums, tail)
        out = self.run(chunk, chunk.shape[0], chunk.shape[1] // self.stride, self.pointers(state))
        return (out, *state)
