"""Frame-by-frame (streaming) separation with a causal Conv-TasNet.

Usage:

    from local.streaming import StreamingSeparator
    stream = StreamingSeparator(model, device="cpu")  # a causal ConvTasNetVariant; engine="script" (default),
                                                      # "eager", "onnx" (a model_stream.onnx, onnxruntime)
                                                      # or "native" (the step in C, the fastest; opt-in
                                                      # "native-fp16" / "-int12" / "-int8": reduced weights)
    for chunk in chunks:                        # any sizes, down to one encoder hop
        out = stream.process(chunk)             # (n_src, n) separated samples, n ~ len(chunk)
    tail = stream.flush()                       # the last samples; the stream is reset

The concatenation of all ``process`` outputs and the ``flush`` output equals
``model(signal)`` of the offline causal model on the concatenated chunks
(``tests/test_streaming.py`` checks 1e-4; it is float32 round-off, ~1e-6).

The step: one stateful graph
----------------------------
:class:`StreamStep` is the whole model for ``k`` new encoder hops as one function
with its state as explicit tensors, ``step(chunk, pending, frames_done, caches,
sums, tail) -> (out, pending, frames_done, caches, sums, tail)``:

- ``pending`` (batch, L - stride): the input samples the next frame shares with the last one,
- ``caches[i]`` (batch, (P - 1) * dilation, H): the last input frames of block ``i``'s dilated
  depthwise convolution (asteroid's causal ``Conv1DBlock`` pads ``(P - 1) * d`` frames on both
  sides and chops the right ones, which is left zero padding, so the state starts at zeros),
- ``sums[j]`` (batch, 1, 2), float64: for cumulative norms (``cgLN``), the running sum and sum of
  squares over the channels of every frame so far (float64 so a long stream does not drift;
  asteroid's offline version accumulates in the input's dtype); ``frames_done`` counts frames,
- ``tail`` (batch, n_src, L - stride): the decoder's overlap-add tail.

It is plain TorchScript-able code: :class:`StreamingSeparator` runs it scripted by
default (``engine="script"``), and ``local.onnx_export`` writes it as
``model_stream.onnx`` with the same state as inputs and outputs (``engine="onnx"``
runs that file through onnxruntime). Every state tensor is created on the model's
device with its dtype (float64 sums aside), so the same code streams on a GPU.

Norms in asteroid 0.7.0 (``asteroid/masknn/norms.py``)
------------------------------------------------------
``norm_type="cLN"`` is ``ChanLN``: mean and variance over the channels of
each frame separately (exactly ``F.layer_norm`` over the channels, which the step
uses). It is not the paper's *cumulative* layer norm; it needs no state.
``norm_type="cgLN"`` is ``CumLN``, the paper's cumulative layer norm: statistics
over all channels and all frames up to the current one, from the carried sums.
``gLN`` looks at the whole utterance and is refused; ``BN`` in eval mode is a
fixed per-channel affine map (folded into the weights).

Speed (one thread; ``benchmarks/benchmark_separation.py``)
----------------------------------------------------------
Channels-last ``(batch, frames, channels)``, so every 1x1 convolution is one
``F.linear`` and cLN one ``layer_norm``; norms' affine parts are folded into the
1x1 convolution after them; the residual and skip 1x1 convolutions of a block are
one product; the scripted engine keeps each block's past in a history buffer it
writes in place (:meth:`StreamStep.stream`) instead of copying its cache at every
call, and is frozen (weights as constants). Measured for ``paper_best_causal``
(cgLN) on the benchmark machine's core (2026-12-01): 3.2 ms per frame at one hop
per call, 0.68 ms at 8 hops, 0.31 ms at 32 hops (eager: 7.0, 1.0, 0.42 ms). At
one hop nearly all of it is the ~900 small operations of a call, so
``engine="native"`` (:mod:`local.native_step`) runs the same folded weights as one
C function: 0.75, 0.15 and 0.09 ms (2026-12-02, family 6 model 167; TorchScript 2.30,
0.51 and 0.24 ms in the same run). One hop per call cannot reach the paper's 0.4 ms
per frame there in float32: the model's 19 MB of weights are read once per frame,
and one core reads about 30 GB/s from L3 (0.65 ms). The opt-in
``engine="native-fp16"``, ``"native-int12"`` and ``"native-int8"`` store the 1x1
convolutions' weights in half precision, as 12-bit or as 8-bit integers (1/2, 3/8 or 1/4
of the bytes; the encoder and decoder stay float32): 0.38, 0.30 and 0.21 ms per frame
at one hop (2026-12-06, model 167; 0.31, 0.24 and 0.18 on model 207, 2026-12-07), output SNR
72, 70 and 46 dB against float32 (``local.stream_check`` measures them on a model's own audio). From 32 hops
per call (33 ms of algorithmic latency) the weights are reused across frames.

Latency
-------
A frame needs ``L`` samples, and output sample ``n`` is final once every frame
overlapping it is computed. With chunks of ``k`` hops the first sample of a
chunk leaves ``k * stride + (L - stride)`` samples after it arrived:
:meth:`StreamingSeparator.algorithmic_latency`. For ``k = 1`` that is one
window, ``L`` samples (2 ms for L=16 at 8 kHz).
"""

from __future__ import annotations

import gc
import time
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from local.inference import model_sizes

__all__ = ["StreamingSeparator", "StreamStep", "check_streamable", "time_stream", "ENGINES"]

ENGINES = ("script", "eager", "onnx", "native", "native-fp16", "native-int12", "native-int8")
#: the C step's engines, by the storage of their weights (local.native_step.WEIGHTS)
NATIVE_WEIGHTS = {"native": "fp32", "native-fp16": "fp16", "native-int12": "int12", "native-int8": "int8"}


def check_streamable(model) -> None:
    """``ValueError`` unless ``model`` is a causal Conv-TasNet whose norms can stream."""
    from asteroid.masknn.norms import BatchNorm, ChanLN, CumLN, GlobLN

    masker = model.masker
    if not getattr(masker, "causal", False):
        raise ValueError("streaming needs a causal model (masknet.causal: true); "
                         "use chunked offline separation for a non-causal one")
    stride, kernel = int(model.encoder.stride), int(model.encoder.filterbank.kernel_size)
    if stride > kernel:
        raise ValueError(f"stride {stride} > kernel_size {kernel} is not supported")
    for module in masker.modules():
        if isinstance(module, GlobLN):
            raise ValueError("gLN normalises over the whole utterance: it cannot stream")
        if isinstance(module, (ChanLN, CumLN, BatchNorm)) or not hasattr(module, "gamma"):
            continue
        raise ValueError(f"unsupported norm {type(module).__name__} for streaming")


# ------------------------------------------------------------------ the step graph
class _Norm(nn.Module):
    """A causal norm on channels-last (batch, frames, C) input.

    ``affine=False`` leaves out ``gamma``/``beta`` (the caller folded them into the 1x1
    convolution that follows: ``W (gamma * xhat + beta) + b = (W * gamma) xhat + (W beta + b)``).
    """

    def __init__(self, module, sums_index: int, affine: bool = True):
        super().__init__()
        from asteroid.masknn.norms import BatchNorm, CumLN

        self.index = sums_index  # into the step's list of running sums (cgLN only)
        self.affine = affine
        gamma, beta = _affine_of(module)
        if isinstance(module, BatchNorm):
            self.kind = "BN"
            scale = torch.rsqrt(module.running_var + module.eps).detach()
            shift = -module.running_mean.detach() * scale
        else:
            self.kind = "cgLN" if isinstance(module, CumLN) else "cLN"
            scale, shift = torch.ones_like(gamma), torch.zeros_like(gamma)
        if affine:  # norm(x) = gamma * (scale * x + shift) + beta
            scale, shift = gamma * scale, gamma * shift + beta
        self.chan = int(gamma.numel())
        self.register_buffer("gamma", gamma.clone())
        self.register_buffer("beta", beta.clone())
        self.register_buffer("scale", scale.clone())
        self.register_buffer("shift", shift.clone())

    def forward(self, x: torch.Tensor, sums: List[torch.Tensor], inv_count: torch.Tensor) -> torch.Tensor:
        """``inv_count`` (1, k, 1) float64: 1 / (frames so far x channels) of each new frame (cgLN)."""
        if self.kind == "cLN":
            if self.affine:
                return F.layer_norm(x, [self.chan], self.gamma, self.beta, 1e-8)
            return F.layer_norm(x, [self.chan], None, None, 1e-8)
        if self.kind == "BN":
            return torch.addcmul(self.shift, x, self.scale)
        # cgLN: statistics over the channels of every frame so far. Each frame's sums in x's dtype,
        # the running sums in float64 (narrow, not x[:, :, a:b]: TorchScript runs one slice per dimension)
        frame = torch.stack([x, x * x], -2).sum(-1)  # (batch, k, 2): sum and sum of squares of each frame
        cum = torch.cumsum(frame.double(), 1) + sums[self.index]
        sums[self.index] = cum.narrow(1, cum.shape[1] - 1, 1)
        avg = cum * inv_count
        mean = avg.narrow(2, 0, 1)
        inv = torch.rsqrt(torch.addcmul(avg.narrow(2, 1, 1), mean, mean, value=-1.0) + 1e-8)  # asteroid's EPS
        stats = torch.cat([mean, inv], 2).to(x.dtype)
        out = (x - stats.narrow(2, 0, 1)) * stats.narrow(2, 1, 1)
        return torch.addcmul(self.beta, out, self.gamma) if self.affine else out


class _Act(nn.Module):
    """PReLU; one shared slope runs as ``leaky_relu`` (one native op)."""

    def __init__(self, module):
        super().__init__()
        weight = module.weight.detach().reshape(-1).clone()
        self.shared = weight.numel() == 1
        self.slope = float(weight[0]) if self.shared else 0.0
        self.register_buffer("weight", weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.slope) if self.shared else F.prelu(x, self.weight)


def _affine_of(module) -> Tuple[torch.Tensor, torch.Tensor]:
    if hasattr(module, "gamma"):
        return module.gamma.detach(), module.beta.detach()
    weight = module.weight.detach() if module.weight is not None else torch.ones_like(module.running_mean)
    bias = module.bias.detach() if module.bias is not None else torch.zeros_like(module.running_mean)
    return weight, bias


def _fold_linear(norm, conv, rows: Optional[slice] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the 1x1 ``conv`` with ``norm``'s affine part folded in (see :class:`_Norm`)."""
    gamma, beta = _affine_of(norm)
    weight, bias = conv.weight.detach()[:, :, 0], conv.bias.detach()
    if rows is not None:
        weight, bias = weight[rows], bias[rows]
    return (weight * gamma).contiguous(), (weight @ beta + bias).contiguous()


class _StepBlock(nn.Module):
    def __init__(self, layer, bn_chan: int, skip_chan: int, last: bool, sums_index: int):
        super().__init__()
        sb = layer.shared_block
        conv = sb[3][0]  # causal: Sequential(depthwise conv, _Chop1d)
        self.bn_chan = bn_chan
        self.register_buffer("in_w", sb[0].weight.detach()[:, :, 0].clone())
        self.register_buffer("in_b", sb[0].bias.detach().clone())
        self.act1 = _Act(sb[1])
        self.norm1 = _Norm(sb[2], sums_index)
        self.dilation = int(conv.dilation[0])
        self.taps = int(conv.kernel_size[0])
        self.cache_size = (self.taps - 1) * self.dilation
        self.slack = max(self.cache_size, 64)  # history frames kept beyond the cache (in-place stepping)
        self.register_buffer("dw_w", conv.weight.detach()[:, 0, :].t().contiguous())  # (P, H)
        self.register_buffer("dw_b", conv.bias.detach().clone())
        self.act2 = _Act(sb[4])
        self.norm2 = _Norm(sb[5], sums_index + 1, affine=False)
        self.skip_only = bool(skip_chan) and last  # the last residual output is never read
        parts = []
        if not self.skip_only:
            parts.append(_fold_linear(sb[5], layer.res_conv))
        if skip_chan:
            parts.append(_fold_linear(sb[5], layer.skip_conv))
        self.register_buffer("out_w", torch.cat([w for w, _ in parts], 0).contiguous())
        self.register_buffer("out_b", torch.cat([b for _, b in parts], 0).contiguous())

    def _first(self, acc: torch.Tensor, sums: List[torch.Tensor], count: torch.Tensor) -> torch.Tensor:
        return self.norm1(self.act1(F.linear(acc.narrow(2, 0, self.bn_chan), self.in_w, self.in_b)), sums, count)

    def _second(self, y: torch.Tensor, acc: torch.Tensor, sums: List[torch.Tensor],
                count: torch.Tensor) -> torch.Tensor:
        out = F.linear(self.norm2(self.act2(y), sums, count), self.out_w, self.out_b)
        if self.skip_only:
            return torch.cat([acc.narrow(2, 0, self.bn_chan), acc.narrow(2, self.bn_chan, out.shape[2]) + out], 2)
        return acc + out

    def _depthwise(self, buf: torch.Tensor, start: int, k: int) -> torch.Tensor:
        """Causal dilated depthwise conv of frames ``buf[:, start + cache_size:][:k]`` (their past before them)."""
        d = self.dilation
        y = torch.addcmul(self.dw_b, buf[:, start:start + k], self.dw_w[0])
        for j in range(1, self.taps):
            y = torch.addcmul(y, buf[:, start + j * d:start + j * d + k], self.dw_w[j])
        return y

    def forward(self, acc: torch.Tensor, cache: torch.Tensor, sums: List[torch.Tensor],
                count: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Functional step: ``acc`` (batch, k, B [+ Sc]) residual stream | skip sum -> (acc, new cache)."""
        k = acc.shape[1]
        buf = torch.cat([cache, self._first(acc, sums, count)], 1)  # (batch, (P - 1) d + k, H)
        return self._second(self._depthwise(buf, 0, k), acc, sums, count), buf[:, k:]

    def forward_history(self, acc: torch.Tensor, hist: torch.Tensor, pos: int, sums: List[torch.Tensor],
                        count: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """In-place step: the new frames are written into ``hist`` at ``pos`` (its last ``cache_size``
        frames before ``pos`` are the cache), so the cache is not copied at every call; when ``hist``
        is full its cache moves to the front (every ``slack / k`` calls)."""
        k = acc.shape[1]
        size = self.cache_size
        h = self._first(acc, sums, count)
        if pos + k > hist.shape[1]:
            keep = hist.narrow(1, pos - size, size).clone()
            if size + k > hist.shape[1]:
                hist = hist.new_zeros(hist.shape[0], size + k + self.slack, hist.shape[2])
            hist.narrow(1, 0, size).copy_(keep)
            pos = size
        hist.narrow(1, pos, k).copy_(h)
        # every tap of every new frame as one strided view (batch, k, P, H) of the history: one product
        window = hist.narrow(1, pos - size, size + k)
        stride = window.stride()
        taps = window.as_strided([window.shape[0], k, self.taps, window.shape[2]],
                                 [stride[0], stride[1], self.dilation * stride[1], stride[2]])
        y = (taps * self.dw_w).sum(2) + self.dw_b
        return self._second(y, acc, sums, count), hist, pos + k


class StreamStep(nn.Module):
    """The causal model for ``k`` new hops with explicit state (see the module docstring).

    ``forward(chunk (batch, k * stride), pending, frames_done (1,) float64, caches, sums, tail)``
    returns ``(out (batch, n_src, k * stride), pending, frames_done, caches, sums, tail)``;
    :meth:`initial_state` gives the state of a new stream. :meth:`stream` is the same step with
    in-place history buffers instead of copied caches (what the TorchScript engine runs).
    """

    def __init__(self, model):
        super().__init__()
        check_streamable(model)
        model = model.eval()
        masker = model.masker
        for name, value in model_sizes(model).items():
            setattr(self, name, value)
        with torch.no_grad():
            self.register_buffer("enc_w", model.encoder.get_filters().detach().clone())  # (N, 1, L)
            self.register_buffer("dec_w", model.decoder.get_filters().detach().clone())  # (N, 1, L)
            self.register_buffer("enc_w_t", self.enc_w[:, 0, :].t().contiguous())  # (L, N)
            self.register_buffer("dec_w_2d", self.dec_w[:, 0, :].contiguous())  # (N, L)
            self.hops_per_window = self.kernel_size // self.stride
            self.norm0 = _Norm(masker.bottleneck[0], 0, affine=False)
            w, b = _fold_linear(masker.bottleneck[0], masker.bottleneck[1])
            self.register_buffer("bottleneck_w", w)
            self.register_buffer("bottleneck_b", b)
            n = len(masker.TCN)
            self.blocks = nn.ModuleList([_StepBlock(layer, self.bn_chan, self.skip_chan, i == n - 1, 1 + 2 * i)
                                         for i, layer in enumerate(masker.TCN)])
            self.register_buffer("mask_act_w", masker.mask_net[0].weight.detach().clone())
            self.register_buffer("mask_w", masker.mask_net[1].weight.detach()[:, :, 0].clone())
            self.register_buffer("mask_b", masker.mask_net[1].bias.detach().clone())
        self.cache_sizes: List[int] = [b.cache_size for b in self.blocks]
        self.history_sizes: List[int] = [b.cache_size + b.slack for b in self.blocks]
        self.n_sums = 1 + 2 * n

    @torch.jit.export
    def initial_state(self, batch: int) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor], List[torch.Tensor],
                                                 torch.Tensor]:
        """(pending, frames_done, caches, sums, tail) of a new stream, on the model's device and dtype."""
        ref = self.enc_w
        pending = ref.new_zeros(batch, self.kernel_size - self.stride)
        frames_done = torch.zeros(1, dtype=torch.float64, device=ref.device)
        caches = [ref.new_zeros(batch, size, self.hid_chan) for size in self.cache_sizes]
        sums = [torch.zeros(batch, 1, 2, dtype=torch.float64, device=ref.device) for _ in range(self.n_sums)]
        tail = ref.new_zeros(batch, self.n_src, self.kernel_size - self.stride)
        return pending, frames_done, caches, sums, tail

    @torch.jit.export
    def initial_history(self, batch: int) -> Tuple[List[torch.Tensor], List[int]]:
        """History buffers and write positions for :meth:`stream` (zeros: the causal left padding)."""
        hist = [self.enc_w.new_zeros(batch, size, self.hid_chan) for size in self.history_sizes]
        return hist, list(self.cache_sizes)

    def _encode(self, chunk: torch.Tensor, pending: torch.Tensor, frames_done: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tf (batch, k, N), 1 / count of the bottleneck's and of the blocks' norms, new pending)."""
        buf = torch.cat([pending, chunk], 1)  # (k - 1) * stride + L samples: k frames
        hop, m = self.stride, self.hops_per_window
        if self.kernel_size == m * hop:  # frames as m shifted hop views: a product, not a tiny convolution
            hops = buf.view(buf.shape[0], -1, hop)
            k = hops.shape[1] - m + 1
            frames = hops[:, 0:k] if m == 1 else torch.cat([hops[:, j:j + k] for j in range(m)], 2)
            tf = torch.matmul(frames, self.enc_w_t)  # (batch, k, N)
        else:
            tf = F.conv1d(buf.unsqueeze(1), self.enc_w, stride=hop).transpose(1, 2)
        if self.enc_act == "relu":
            tf = torch.relu(tf)
        elif self.enc_act == "sigmoid":
            tf = torch.sigmoid(tf)
        k = tf.shape[1]
        frame_idx = (frames_done + torch.arange(1, k + 1, dtype=torch.float64, device=chunk.device)).view(1, -1, 1)
        return tf, 1.0 / (frame_idx * self.in_chan), 1.0 / (frame_idx * self.hid_chan), buf[:, k * hop:]

    def _decode(self, acc: torch.Tensor, tf: torch.Tensor, tail: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        batch, k = tf.shape[0], tf.shape[1]
        mask_in = acc[:, :, self.bn_chan:] if self.skip_chan else acc
        score = F.linear(F.prelu(mask_in, self.mask_act_w), self.mask_w, self.mask_b)  # (batch, k, n_src * N)
        score = score.view(batch, k, self.n_src, self.out_chan)
        if self.mask_act == "sigmoid":
            masks = torch.sigmoid(score)
        elif self.mask_act == "softmax":
            masks = torch.softmax(score, dim=2)
        elif self.mask_act == "relu":
            masks = torch.relu(score)
        else:
            masks = score
        masked = masks * tf.unsqueeze(2)  # (batch, k, n_src, N)
        hop, m = self.stride, self.hops_per_window
        if self.kernel_size == m * hop:  # transposed conv = product + overlap-add of m hop-long pieces
            frames = torch.matmul(masked.transpose(1, 2), self.dec_w_2d)  # (batch, n_src, k, L)
            wav = F.pad(tail.view(batch, self.n_src, m - 1, hop), [0, 0, 0, k])
            for j in range(m):
                wav = wav + F.pad(frames[..., j * hop:(j + 1) * hop], [0, 0, j, m - 1 - j])
            wav = wav.view(batch, self.n_src, (k + m - 1) * hop)
        else:
            wav = F.conv_transpose1d(masked.permute(0, 2, 3, 1).reshape(batch * self.n_src, self.out_chan, k),
                                     self.dec_w, stride=hop).view(batch, self.n_src, -1)
            wav = wav + F.pad(tail, [0, k * hop])  # (k - 1) * stride + L samples
        return wav[:, :, :k * hop], wav[:, :, k * hop:]

    def _bottleneck(self, tf: torch.Tensor, sums: List[torch.Tensor], count0: torch.Tensor) -> torch.Tensor:
        acc = F.linear(self.norm0(tf, sums, count0), self.bottleneck_w, self.bottleneck_b)
        if self.skip_chan:
            acc = torch.cat([acc, acc.new_zeros(acc.shape[0], acc.shape[1], self.skip_chan)], 2)
        return acc

    def forward(self, chunk: torch.Tensor, pending: torch.Tensor, frames_done: torch.Tensor,
                caches: List[torch.Tensor], sums: List[torch.Tensor], tail: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[torch.Tensor], List[torch.Tensor],
                           torch.Tensor]:
        tf, count0, count, pending = self._encode(chunk, pending, frames_done)
        sums = list(sums)
        acc = self._bottleneck(tf, sums, count0)
        new_caches: List[torch.Tensor] = []
        i = 0
        for block in self.blocks:
            acc, cache = block(acc, caches[i], sums, count)
            new_caches.append(cache)
            i += 1
        out, tail = self._decode(acc, tf, tail)
        return out, pending, frames_done + tf.shape[1], new_caches, sums, tail

    @torch.jit.export
    def stream(self, chunk: torch.Tensor, pending: torch.Tensor, frames_done: torch.Tensor,
               history: List[torch.Tensor], positions: List[int], sums: List[torch.Tensor], tail: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[torch.Tensor], List[int],
                          List[torch.Tensor], torch.Tensor]:
        """:meth:`forward` with in-place history buffers (:meth:`initial_history`) instead of caches."""
        tf, count0, count, pending = self._encode(chunk, pending, frames_done)
        sums = list(sums)
        acc = self._bottleneck(tf, sums, count0)
        new_history: List[torch.Tensor] = []
        new_positions: List[int] = []
        i = 0
        for block in self.blocks:
            acc, hist, pos = block.forward_history(acc, history[i], positions[i], sums, count)
            new_history.append(hist)
            new_positions.append(pos)
            i += 1
        out, tail = self._decode(acc, tf, tail)
        return out, pending, frames_done + tf.shape[1], new_history, new_positions, sums, tail


def _frozen_script(step: StreamStep):
    """``torch.jit.script`` of the step, frozen (weights inlined as constants of this device: fewer
    interpreter instructions per call; the frozen module is not saved, so nothing is baked into a file)."""
    scripted = torch.jit.script(step).eval()
    return torch.jit.freeze(scripted, preserved_attrs=["stream", "initial_state", "initial_history"])


# ------------------------------------------------------------------ chunk in / chunk out
class StreamingSeparator:
    """Stateful chunk-in / chunk-out separation with a causal Conv-TasNet.

    Args:
        model: a causal asteroid ``ConvTasNet`` (``ConvTasNetVariant``) with a free filterbank,
            or (``engine="onnx"``) the path of a ``model_stream.onnx``. Its weights are read once
            here: build a new ``StreamingSeparator`` after changing them.
        device: where the step runs (default: ``cuda`` when available, else ``cpu``); every
            state tensor is created there, in the model's dtype.
        engine: ``"script"`` (default: the TorchScript-scripted :class:`StreamStep`), ``"eager"``
            (the same module in Python), ``"onnx"`` (onnxruntime on ``model_stream.onnx``, CPU) or
            ``"native"`` (:mod:`local.native_step`: the same step as one C call, float32 on the CPU,
            compiled on first use; 2.3-3.1x faster than ``"script"`` at 1 to 32 hops per call),
            and its opt-in twins ``"native-fp16"``, ``"native-int12"`` and ``"native-int8"``
            (weights stored in half precision, as 12-bit or as 8-bit integers: about 1.9x, 2.3x
            and 3.4x faster still at one hop; not float32's exact arithmetic, the benchmark
            reports their SNR).

    ``process`` takes ``(time,)`` or ``(batch, time)`` float tensors and
    returns ``(n_src, n)`` or ``(batch, n_src, n)``, on the separator's device.
    """

    def __init__(self, model, device: Optional[str | torch.device] = None, engine: str = "script"):
        from local.inference import resolve_device

        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r}: choose one of {ENGINES}")
        self.engine = engine
        if engine == "onnx":
            from local.onnx_export import OnnxStreamStep

            self.device = torch.device("cpu")
            self.step = OnnxStreamStep(model)
            self.dtype = torch.float32
        else:
            check_streamable(model)
            self.device = resolve_device(device)
            model = model.eval()
            dtype = next(model.parameters()).dtype
            step = StreamStep(model).to(self.device).eval()
            self.dtype = dtype
            if engine in NATIVE_WEIGHTS:
                from local.native_step import NativeStreamStep

                self.step = NativeStreamStep(step, weights=NATIVE_WEIGHTS[engine])
            else:
                self.step = _frozen_script(step) if engine == "script" else step
            info = step
        if engine == "onnx":
            info = self.step
        self.kernel_size = int(info.kernel_size)
        self.stride = int(info.stride)
        self.n_src = int(info.n_src)
        self.sample_rate = float(info.sample_rate)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the stream: the next ``process`` starts a new signal."""
        self._state = None  # (pending, frames_done, caches, sums, tail) once the first window is complete
        self._pointers: Optional[tuple] = None  # a native engine's state addresses (see _native_hops)
        self._head: Optional[torch.Tensor] = None  # samples received but not yet given to the step
        self._batch: Optional[int] = None
        self._squeeze = True
        self.n_in = 0  # samples received
        self.n_out = 0  # samples returned

    def algorithmic_latency(self, chunk_hops: int = 1) -> float:
        """Seconds between a sample's arrival and its separated output, for chunks of ``chunk_hops`` hops."""
        return (chunk_hops * self.stride + self.kernel_size - self.stride) / self.sample_rate

    # --------------------------------------------------------------- process
    def process(self, chunk) -> torch.Tensor:
        """Separate the next ``chunk`` of the stream; returns the samples that are now final."""
        if self._pointers is not None and self._head is None:
            out = self._native_hops(chunk)
            if out is not None:
                return out
        return self._process(chunk)

    def _native_hops(self, chunk) -> Optional[torch.Tensor]:
        """A native engine's common case: a float32 CPU chunk of whole hops and no samples held
        back, straight to the C call (about 30 us a call less at one hop: every tensor operation
        here is slow after the step has evicted the interpreter's data from the caches). None
        where the general path is needed."""
        if type(chunk) is not torch.Tensor or chunk.dtype is not torch.float32 or not chunk.is_cpu \
                or not chunk.is_contiguous():
            return None
        squeeze = chunk.dim() == 1
        if squeeze:
            batch, n = 1, chunk.shape[0]
        elif chunk.dim() == 2:
            batch, n = chunk.shape
        else:
            return None
        k, rest = divmod(n, self.stride)
        if rest or k == 0 or batch != self._batch:
            return None
        out = self.step.run(chunk, batch, k, self._pointers, squeeze)
        self._squeeze = squeeze
        self.n_in += n
        self.n_out += n
        return out

    @torch.inference_mode()
    def _process(self, chunk) -> torch.Tensor:
        chunk, squeeze = self._as_batch(chunk)
        self.n_in += chunk.shape[-1]
        buf = chunk if self._head is None else torch.cat([self._head, chunk], -1)
        if self._state is None:  # the first frame needs L samples: L - stride of them are its "pending"
            overlap = self.kernel_size - self.stride
            if buf.shape[-1] < self.kernel_size:
                self._head = buf
                return self._out(buf.new_zeros(buf.shape[0], self.n_src, 0), squeeze)
            self._state = self._initial_state(buf[:, :overlap].clone())  # owned: the native step writes it in place
            if self.engine in NATIVE_WEIGHTS:  # updated in place: their addresses hold for the stream
                self._pointers = self.step.pointers(self._state)
            buf = buf[:, overlap:]
        n_hops = buf.shape[-1] // self.stride
        if n_hops == 0:
            self._head = buf
            return self._out(buf.new_zeros(buf.shape[0], self.n_src, 0), squeeze)
        used = n_hops * self.stride
        self._head = buf[:, used:] if used < buf.shape[-1] else None
        part = buf if used == buf.shape[-1] and buf.is_contiguous() else buf[:, :used].contiguous()
        if self.engine == "onnx" or self.engine in NATIVE_WEIGHTS:  # plain callables with their own state layout
            out, *state = self.step(part, *self._state)
        else:
            out, *state = self.step.stream(part, *self._state)
        self._state = tuple(state)
        return self._out(out, squeeze)

    def _initial_state(self, pending: torch.Tensor) -> tuple:
        if self.engine == "onnx" or self.engine in NATIVE_WEIGHTS:  # the graph copies its caches in and out; C: rings
            return (pending, *self.step.initial_state(pending.shape[0])[1:])
        _, frames_done, caches, sums, tail = self.step.initial_state(pending.shape[0])
        history, positions = self.step.initial_history(pending.shape[0])
        return pending, frames_done, history, positions, sums, tail

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """The samples still held back (the last frame's tail, then zeros, as the offline model pads).

        After it, the total output length equals the total input length, and the stream is reset.
        """
        squeeze = self._squeeze
        if self._batch is None:
            self.reset()
            shape = (self.n_src, 0) if squeeze else (0, self.n_src, 0)
            return torch.zeros(shape, dtype=self.dtype, device=self.device)
        out = torch.zeros(self._batch, self.n_src, self.n_in - self.n_out, dtype=self.dtype, device=self.device)
        if self._state is not None:
            tail = self._state[-1]
            n = min(out.shape[-1], tail.shape[-1])
            out[..., :n] = tail[..., :n]
        result = self._out(out, squeeze)
        self.reset()
        return result

    # -------------------------------------------------------------- helpers
    def _as_batch(self, chunk) -> tuple[torch.Tensor, bool]:
        if not (isinstance(chunk, torch.Tensor) and chunk.dtype == self.dtype and chunk.device == self.device):
            chunk = torch.as_tensor(chunk).to(device=self.device, dtype=self.dtype)  # (skipped: 5-10 us a call)
        squeeze = chunk.dim() == 1
        if squeeze:
            chunk = chunk[None]
        if chunk.dim() != 2:
            raise ValueError(f"expected (time,) or (batch, time) audio, got shape {tuple(chunk.shape)}")
        if self._batch is None:
            self._batch = chunk.shape[0]
        elif chunk.shape[0] != self._batch:
            raise ValueError(f"batch size changed from {self._batch} to {chunk.shape[0]} within one stream")
        self._squeeze = squeeze
        return chunk, squeeze

    def _out(self, wav: torch.Tensor, squeeze: bool) -> torch.Tensor:
        self.n_out += wav.shape[-1]
        return wav[0] if squeeze else wav


def time_stream(separator: StreamingSeparator, signal: torch.Tensor, hops: int, repeats: int = 1,
                warmup_calls: int = 20) -> Tuple[float, torch.Tensor]:
    """Streams ``signal`` ((time,), at the model's rate) through ``separator`` in chunks of ``hops``
    encoder hops, ``repeats`` times; returns (the fastest pass's seconds per frame, the last pass's
    whole output ``(n_src, time)``, flush included). Used by ``local.stream_check`` and
    ``benchmarks/benchmark_separation.py``.

    Each chunk is cut before the clock starts, as a live source hands each buffer over (slicing
    the stream in the timed loop cost 10-15 us a call at one hop, 3% of a frame), and the garbage
    collector is off while timing, as ``timeit`` does. The first chunk (no frame yet at one hop)
    and the remainder are outside the clock; ``warmup_calls`` calls come first (TorchScript
    optimises the step in its first calls)."""
    chunk = hops * separator.stride
    n_chunks = signal.shape[-1] // chunk
    if hops < 1 or n_chunks < 2:
        raise ValueError(f"timing {hops} hop(s) per call needs a signal of at least {2 * chunk} samples "
                         f"and hops >= 1, got {signal.shape[-1]} samples")
    separator.reset()
    for i in range(min(n_chunks, warmup_calls)):
        separator.process(signal[i * chunk:(i + 1) * chunk])
    pieces = list(signal[:n_chunks * chunk].split(chunk))
    best, online = float("inf"), None
    for _ in range(repeats):
        separator.reset()
        outs = [separator.process(pieces[0])]
        gc.disable()
        try:
            start = time.perf_counter()
            for piece in pieces[1:]:
                outs.append(separator.process(piece))
            if separator.device.type == "cuda":
                torch.cuda.synchronize(separator.device)
            best = min(best, (time.perf_counter() - start) / ((n_chunks - 1) * hops))
        finally:
            gc.enable()
        outs.append(separator.process(signal[n_chunks * chunk:]))
        outs.append(separator.flush())
        online = torch.cat([o.to("cpu") for o in outs], -1)
    return best, online
