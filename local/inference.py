"""One inference path for separation, evaluation and exports: a folded, device-aware Conv-TasNet.

Usage:

    from local.inference import prepare_for_inference
    fast = prepare_for_inference(model, "cuda")     # a trained ConvTasNetVariant (or asteroid ConvTasNet)
    with torch.inference_mode():
        est = fast(wav)                             # (time,) -> (n_src, time), (batch, time) -> (batch, n_src, time)

:class:`FastConvTasNet` computes exactly the function of asteroid's ``ConvTasNet``
(same weights; outputs within float32 round-off, ``tests/test_inference.py``
checks 1e-4 and sees ~1e-6) with fewer and cheaper operations. It is built once
from an eval-mode model, holds its folded weights as buffers (so ``.to(device)``
moves everything) and is plain TorchScript-able code: ``torch.jit.script`` of it
is the export's ``model.ts``, with no device baked in.

What is folded (all exact algebra; only the rounding differs)
------------------------------------------------------------
- Every norm's affine part into the next layer: ``W (gamma * xhat + beta) + b =
  (W * gamma) xhat + (W beta + b)`` for the 1x1 convolutions; for the dilated
  depthwise convolution ``gamma`` scales its taps and ``beta`` moves into its
  bias, minus the few edge frames where a tap reads the zero padding (subtracted
  explicitly, so the zero padding of the normalised signal is kept exactly).
- gLN's normalisation itself: its mean ``m`` and deviation ``s`` are one number
  per utterance, so ``W (x - m) / s = (W / s) x - (m / s) W 1`` is a 1x1 conv of
  the *raw* input with per-utterance weights; the normalised tensor is never
  written. The statistics come from one sum and one sum of squares (no Welford
  ``torch.var``, which is slow on CPU). BN (eval) is a fixed per-channel affine
  map and folds completely. cLN / cgLN (per-frame statistics) are normalised
  explicitly, their affine part folded.
- The residual and skip 1x1 convolutions of a block are one matrix product
  (concatenated output channels) accumulated in place into one (residual | skip)
  tensor; biases are carried as a pending per-channel vector and folded into the
  next block's input convolution, so no bias pass touches the big tensors. The
  last block's residual output, which nothing reads, is not computed.
- PReLU with one slope runs in place (``leaky_relu_``); the depthwise convolution
  is P shifted in-place multiply-adds (oneDNN's dilated depthwise kernel is ~3x
  slower on CPU); the decoder's transposed convolution is a matrix product plus
  an overlap-add of ``L / stride`` shifted copies (``conv_transpose1d`` is ~10x
  slower on CPU for these shapes).

``portable=True`` (what the ONNX export uses) keeps the same folding but writes
the depthwise convolution and the encoder as standard convolutions and avoids
in-place updates, which every runtime supports.

- Two (batch, H, frames) work buffers serve every block: allocating a fresh 20 MB
  tensor per layer made glibc return and re-fault its pages at every block
  (280k page faults, 0.6 s of system time per 10 s of input, measured).

Measured (``benchmarks/benchmark_separation.py``, paper_best, one thread of the
benchmark machine, fresh processes): 10 s of 8 kHz input in 1.2-1.3 s where stock
asteroid takes 2.6-2.7 s (2.1x), 60 s in 0.185 x real time against 0.51 (2.8x);
``torch.compile`` of it was slower (2.2 s, and a minute of compilation) and
``torch.jit.freeze`` of its TorchScript within noise, so neither is used.

Reduced precision (opt-in, never the default): :func:`reduced_precision` returns an
int8 dynamically quantised copy of the eager model (1x1 convolutions as int8
linear layers) or a bfloat16 copy of the fast model, and the output SNR against
float32 of a given input, so that the loss of accuracy is always reported.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("local.inference")

__all__ = ["FastConvTasNet", "prepare_for_inference", "default_device", "resolve_device", "unsupported_reason",
           "reduced_precision", "output_snr", "model_geometry"]


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``: the default of every ``--device`` option."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: Optional[str | torch.device] = None) -> torch.device:
    """``device`` as a ``torch.device`` (``None``: :func:`default_device`); a clear error for an absent GPU."""
    dev = torch.device(device if device is not None else default_device())
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA GPU here (use --device cpu)")
    return dev


# ---------------------------------------------------------------- geometry
def model_geometry(model) -> dict:
    """The numbers separation needs from any model form (eager, fast, TorchScript, ONNX wrapper).

    ``sample_rate``, ``n_src``, ``kernel_size``, ``stride``, ``causal``, ``conv_kernel_size``,
    ``n_blocks``, ``n_repeats``.
    """
    geometry = getattr(model, "geometry", None)
    if isinstance(geometry, dict):
        return dict(geometry)
    masker = model.masker
    return {"sample_rate": float(model.sample_rate), "n_src": int(masker.n_src),
            "kernel_size": int(model.encoder.filterbank.kernel_size), "stride": int(model.encoder.stride),
            "causal": bool(masker.causal), "conv_kernel_size": int(masker.conv_kernel_size),
            "n_blocks": int(masker.n_blocks), "n_repeats": int(masker.n_repeats)}


def model_sizes(model) -> dict:
    """The sizes and activations that the inference graphs (:class:`FastConvTasNet`,
    :class:`local.streaming.StreamStep`) keep as plain attributes, read from one model."""
    masker = model.masker
    return {"sample_rate": float(model.sample_rate), "kernel_size": int(model.encoder.filterbank.kernel_size),
            "stride": int(model.encoder.stride), "n_src": int(masker.n_src), "in_chan": int(masker.in_chan),
            "out_chan": int(masker.out_chan), "bn_chan": int(masker.bn_chan), "hid_chan": int(masker.hid_chan),
            "skip_chan": int(masker.skip_chan or 0), "causal": bool(masker.causal),
            "enc_act": type(model.enc_activation).__name__.lower(),
            "mask_act": type(masker.output_act).__name__.lower()}


# ---------------------------------------------------------------- folding helpers
def _norm_kind(module) -> Optional[str]:
    from asteroid.masknn.norms import BatchNorm, ChanLN, CumLN, GlobLN

    if isinstance(module, GlobLN):  # FastGlobLN too
        return "gLN"
    if isinstance(module, CumLN):
        return "cgLN"
    if isinstance(module, ChanLN):
        return "cLN"
    if isinstance(module, BatchNorm) and module.track_running_stats and module.running_mean is not None:
        return "BN"
    return None


def _norm_affine(module) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gamma, beta, scale, shift) with ``norm(x) = gamma * (scale * x + shift) + beta`` where
    scale/shift are the static per-channel parts (BN); ones/zeros for the layer norms."""
    if _norm_kind(module) == "BN":
        scale = torch.rsqrt(module.running_var + module.eps)
        shift = -module.running_mean * scale
        gamma = module.weight if module.weight is not None else torch.ones_like(scale)
        beta = module.bias if module.bias is not None else torch.zeros_like(scale)
        return gamma.detach(), beta.detach(), scale.detach(), shift.detach()
    gamma, beta = module.gamma.detach(), module.beta.detach()
    return gamma, beta, torch.ones_like(gamma), torch.zeros_like(gamma)


def _prelu_parts(module) -> Tuple[float, torch.Tensor]:
    weight = module.weight.detach().reshape(-1)
    return (float(weight[0]) if weight.numel() == 1 else float("nan")), weight.clone()


def unsupported_reason(model) -> Optional[str]:
    """Why :class:`FastConvTasNet` cannot represent ``model`` (None when it can)."""
    masker = getattr(model, "masker", None)
    if masker is None or not hasattr(masker, "TCN") or not hasattr(model, "encoder"):
        return "not an asteroid ConvTasNet"
    if type(masker.output_act).__name__ not in ("Sigmoid", "Softmax", "ReLU", "Identity"):
        return f"mask activation {type(masker.output_act).__name__}"
    if type(model.enc_activation).__name__ not in ("Sigmoid", "ReLU", "Identity"):
        return f"encoder activation {type(model.enc_activation).__name__}"
    if int(getattr(model.encoder, "padding", 0) or 0) or int(getattr(model.decoder, "padding", 0) or 0):
        return "padded filterbank"
    kinds = {_norm_kind(masker.bottleneck[0])}
    for layer in masker.TCN:
        sb = layer.shared_block
        kinds |= {_norm_kind(sb[2]), _norm_kind(sb[5])}
        conv = sb[3][0] if isinstance(sb[3], nn.Sequential) else sb[3]
        p, d, taps = conv.padding[0], conv.dilation[0], conv.kernel_size[0]
        if masker.causal and p != (taps - 1) * d:
            return "causal padding other than (P - 1) * dilation"
        if not masker.causal and 2 * p != (taps - 1) * d:
            return "non-causal padding that changes the length"
    if None in kinds or len(kinds) != 1:
        return f"norms {sorted(map(str, kinds))}"
    return None


# ---------------------------------------------------------------- modules
class _Site(nn.Module):
    """A norm folded into the 1x1 convolution after it: ``W norm(x) + b`` from raw ``x``.

    ``forward(x) -> (weights (B|1, R, C), bias (B|1, R), input to multiply)``.
    """

    def __init__(self, norm, weight: torch.Tensor, bias: torch.Tensor, kind: str):
        super().__init__()
        gamma, beta, scale, shift = _norm_affine(norm)
        weight = weight.detach()
        self.kind = kind
        folded = weight * (gamma * scale)[None, :]
        self.register_buffer("w", folded.contiguous())
        self.register_buffer("b", (weight @ (gamma * shift + beta) + bias.detach()).contiguous())
        self.register_buffer("w_rowsum", folded.sum(1).contiguous())

    def forward(self, x: torch.Tensor, inplace: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``inplace``: a per-frame norm may normalise ``x`` in place (the caller's own buffer)."""
        if self.kind == "gLN":
            inv, m_inv = _glob_stats(x)
            w = self.w.unsqueeze(0) * inv.view(-1, 1, 1)
            b = self.b.unsqueeze(0) - m_inv.view(-1, 1) * self.w_rowsum.unsqueeze(0)
            return w, b, x
        if self.kind == "BN":
            return self.w.unsqueeze(0), self.b.unsqueeze(0), x
        return self.w.unsqueeze(0), self.b.unsqueeze(0), _frame_normalise(x, self.kind == "cgLN", inplace)


class _DepthwiseSite(nn.Module):
    """A norm folded into the dilated depthwise convolution after it (zero padding kept exact)."""

    def __init__(self, norm, conv: nn.Conv1d, kind: str, portable: bool):
        super().__init__()
        gamma, beta, scale, shift = _norm_affine(norm)
        self.kind = kind
        self.portable = portable
        taps = conv.kernel_size[0]
        self.dilation = int(conv.dilation[0])
        self.pad = int(conv.padding[0])
        self.offsets: List[int] = [k * self.dilation - self.pad for k in range(taps)]
        self.center = self.offsets.index(0)
        w = conv.weight.detach()[:, 0, :]  # (H, P)
        b = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
        self.register_buffer("a_static", (gamma * scale).contiguous())  # z = a * x + c
        self.register_buffer("c_static", (gamma * shift + beta).contiguous())
        self.register_buffer("gamma", gamma.clone())
        self.register_buffer("w", w.contiguous())
        self.register_buffer("b", b.contiguous())

    def forward(self, x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``out``: a buffer of ``x``'s shape for the result (not portable; then ``x`` may be
        normalised in place too): the fast path reuses two buffers for every block."""
        # z = a * x + c per channel (and per utterance for gLN); conv(z) from x without writing z
        if self.kind == "gLN":
            inv, m_inv = _glob_stats(x)
            a = self.gamma.unsqueeze(0) * inv.view(-1, 1)  # (B, H)
            c = self.c_static.unsqueeze(0) - self.gamma.unsqueeze(0) * m_inv.view(-1, 1)
        elif self.kind == "BN":
            a = self.a_static.unsqueeze(0)
            c = self.c_static.unsqueeze(0)
        else:
            x = _frame_normalise(x, self.kind == "cgLN", out is not None)
            a = self.a_static.unsqueeze(0)
            c = self.c_static.unsqueeze(0)
        if self.portable:
            return self._portable(x, a, c)
        w = self.w.unsqueeze(0) * a.unsqueeze(-1)  # (B|1, H, P)
        length = x.shape[-1]
        bias = (self.b.unsqueeze(0) + c * self.w.sum(1).unsqueeze(0)).unsqueeze(-1)  # (B|1, H, 1)
        if out is None:
            y = x * w[:, :, self.center:self.center + 1]
        else:
            y = torch.mul(x, w[:, :, self.center:self.center + 1], out=out)
        y.add_(bias)
        for k, o in enumerate(self.offsets):
            if o == 0:
                continue
            n = max(length - abs(o), 0)
            edge = (c * self.w[:, k].unsqueeze(0)).unsqueeze(-1)  # what the tap read from the zero padding
            if o < 0:
                if n > 0:
                    y[:, :, -o:].addcmul_(x[:, :, :n], w[:, :, k:k + 1])
                y[:, :, :min(-o, length)].sub_(edge)
            else:
                if n > 0:
                    y[:, :, :n].addcmul_(x[:, :, o:], w[:, :, k:k + 1])
                y[:, :, n:].sub_(edge)
        return y

    def _portable(self, x: torch.Tensor, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        z = x * a.unsqueeze(-1) + c.unsqueeze(-1)
        right = self.offsets[-1]
        left = -self.offsets[0]
        z = F.pad(z, [left, right])
        return F.conv1d(z, self.w.unsqueeze(1), self.b, dilation=self.dilation, groups=self.w.shape[0])


def _glob_stats(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """gLN statistics of (B, C, T) ``x``: (1 / s, m / s) per utterance, s = sqrt(var + eps)."""
    n = x.shape[1] * x.shape[2]
    mean = x.sum(dim=[1, 2]) / n
    # per-row norms, then their sum: as accurate as a float64 sum here (one norm over all
    # B x T values accumulates in float32 lanes: 1e-4 relative error, 1e-5 at the output)
    rows = torch.linalg.vector_norm(x, 2, dim=[2])
    var = torch.clamp((rows * rows).sum(1) / n - mean * mean, min=0.0)
    inv = torch.rsqrt(var + 1e-8)  # asteroid's EPS
    return inv, mean * inv


def _frame_normalise(x: torch.Tensor, cumulative: bool, inplace: bool = False) -> torch.Tensor:
    """cLN (per frame over channels) or cgLN (over channels and all frames so far) without the affine part."""
    chan = x.shape[1]
    s1 = x.sum(1, keepdim=True)  # (B, 1, T)
    sq = torch.linalg.vector_norm(x, 2, dim=[1], keepdim=True)
    s2 = sq * sq
    if cumulative:  # running sums in float64: a long input does not drift
        count = chan * torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=torch.float64)
        mean64 = torch.cumsum(s1.double(), -1) / count
        var64 = torch.cumsum(s2.double(), -1) / count - mean64 * mean64
        mean, var = mean64.to(x.dtype), var64.to(x.dtype)
    else:
        mean = s1 / chan
        var = s2 / chan - mean * mean
    inv = torch.rsqrt(torch.clamp(var, min=0.0) + 1e-8)
    if inplace:
        return x.sub_(mean).mul_(inv)
    return (x - mean) * inv


class _Prelu(nn.Module):
    def __init__(self, module):
        super().__init__()
        slope, weight = _prelu_parts(module)
        self.shared = weight.numel() == 1
        self.slope = slope if self.shared else 0.0
        self.register_buffer("weight", weight)

    def forward(self, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if self.shared:
            return F.leaky_relu_(x, self.slope) if inplace else F.leaky_relu(x, self.slope)
        return F.prelu(x, self.weight)


class _Block(nn.Module):
    """One TCN block from the raw residual stream, accumulating into (residual | skip) in place."""

    def __init__(self, layer, kind: str, causal: bool, bn_chan: int, skip_chan: int, last: bool, portable: bool):
        super().__init__()
        sb = layer.shared_block
        conv = sb[3][0] if causal else sb[3]
        self.bn_chan = bn_chan
        self.portable = portable
        self.register_buffer("w_in", sb[0].weight.detach()[:, :, 0].contiguous())
        self.register_buffer("b_in", sb[0].bias.detach().clone())
        self.act1 = _Prelu(sb[1])
        self.depthwise = _DepthwiseSite(sb[2], conv, kind, portable)
        self.act2 = _Prelu(sb[4])
        weights, biases = [], []
        if not (skip_chan and last):  # the last block's residual output is never read when there are skips
            weights.append(layer.res_conv.weight[:, :, 0])
            biases.append(layer.res_conv.bias)
        if skip_chan:
            weights.append(layer.skip_conv.weight[:, :, 0])
            biases.append(layer.skip_conv.bias)
        self.row0 = bn_chan if (skip_chan and last) else 0
        self.row1 = bn_chan + skip_chan if skip_chan else bn_chan
        self.out = _Site(sb[5], torch.cat(weights, 0).detach(), torch.cat(biases, 0).detach(), kind)

    def forward(self, state: torch.Tensor, pending: torch.Tensor, work: List[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``state`` (B, R, T) without its bias ``pending`` (B, R): true stream = state + pending.

        ``work``: two (B, H, T) buffers that every block reuses (not portable): a fresh 20 MB
        tensor per layer made glibc return and re-fault its pages at every block (0.5 s of
        page faults per 10 s of paper-size input on one thread, measured).
        """
        batch = state.shape[0]
        res = state[:, :self.bn_chan]
        bias = torch.addmm(self.b_in.unsqueeze(0), pending[:, :self.bn_chan], self.w_in.t())  # W (r + q) + b
        inplace = not self.portable
        if inplace:
            h = torch.bmm(self.w_in.expand(batch, self.w_in.shape[0], self.w_in.shape[1]), res, out=work[0])
            h.add_(bias.unsqueeze(-1))
        else:
            h = torch.matmul(self.w_in, res) + bias.unsqueeze(-1)
        h = self.act1(h, inplace)
        y = self.depthwise(h, work[1] if inplace else None)
        y = self.act2(y, inplace)
        w, b, y = self.out(y, inplace)
        w = w.expand(batch, w.shape[1], w.shape[2])
        b = b.expand(batch, b.shape[1])
        if inplace:
            state[:, self.row0:self.row1].baddbmm_(w, y)
            pending[:, self.row0:self.row1] += b
            return state, pending
        upd = torch.matmul(w, y)  # rows row0:row1, and row1 is the last row
        if self.row0 > 0:
            state = torch.cat([state[:, :self.row0], state[:, self.row0:] + upd], 1)
            pending = torch.cat([pending[:, :self.row0], pending[:, self.row0:] + b], 1)
            return state, pending
        return state + upd, pending + b


class FastConvTasNet(nn.Module):
    """asteroid ``ConvTasNet``'s function, folded for inference (see the module docstring).

    Built from an eval-mode model (``FastConvTasNet(model)``); the weights are copied
    and folded once, so rebuild it after changing the model. Inference only (no training:
    several ops are in place). ``forward(wav)``: ``(time,)`` -> ``(n_src, time)``,
    ``(batch, time)`` or ``(batch, 1, time)`` -> ``(batch, n_src, time)``.
    """

    def __init__(self, model, portable: bool = False):
        super().__init__()
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"FastConvTasNet cannot represent this model: {reason}")
        model = model.eval()
        masker = model.masker
        self.geometry = model_geometry(model)
        self.portable = portable
        for name, value in model_sizes(model).items():
            setattr(self, name, value)
        kind = str(_norm_kind(masker.bottleneck[0]))
        with torch.no_grad():
            self.register_buffer("enc_w", model.encoder.get_filters().detach()[:, 0, :].contiguous())  # (N, L)
            self.register_buffer("dec_w", model.decoder.get_filters().detach()[:, 0, :].contiguous())  # (N, L)
            bottleneck = masker.bottleneck[1]
            self.bottleneck = _Site(masker.bottleneck[0], bottleneck.weight[:, :, 0], bottleneck.bias, kind)
            n = len(masker.TCN)
            self.blocks = nn.ModuleList([_Block(layer, kind, self.causal, self.bn_chan, self.skip_chan, i == n - 1,
                                                portable) for i, layer in enumerate(masker.TCN)])
            self.mask_prelu = _Prelu(masker.mask_net[0])
            self.register_buffer("mask_w", masker.mask_net[1].weight.detach()[:, :, 0].contiguous())
            self.register_buffer("mask_b", masker.mask_net[1].bias.detach().clone())

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """(batch, time) -> (batch, N, frames), the encoder's activation applied."""
        if self.portable:
            tf = F.conv1d(wav.unsqueeze(1), self.enc_w.unsqueeze(1), stride=self.stride)
        else:
            frames = wav.unfold(-1, self.kernel_size, self.stride)  # (batch, frames, L), a view
            tf = torch.matmul(self.enc_w, frames.transpose(1, 2))
        if self.enc_act == "relu":
            tf = torch.relu(tf)
        elif self.enc_act == "sigmoid":
            tf = torch.sigmoid(tf)
        return tf

    def masks(self, tf: torch.Tensor) -> torch.Tensor:
        """(batch, N, frames) -> masks (batch, n_src, N, frames): asteroid's ``TDConvNet``."""
        batch, _, n_frames = tf.shape
        w, b, x = self.bottleneck(tf)
        rows = self.bn_chan + self.skip_chan
        w = w.expand(batch, w.shape[1], w.shape[2])
        if self.portable:
            state = torch.matmul(w, x)
            if self.skip_chan:
                state = torch.cat([state, state.new_zeros(batch, self.skip_chan, n_frames)], 1)
        else:  # one allocation: the residual rows are the product, the skip rows start at zero
            state = x.new_zeros(batch, rows, n_frames)
            state[:, :self.bn_chan].baddbmm_(w, x)
        pending = torch.cat([b.expand(batch, b.shape[1]), b.new_zeros(batch, rows - self.bn_chan)], 1)
        work: List[torch.Tensor] = []
        if not self.portable:
            work = [tf.new_empty(batch, self.hid_chan, n_frames), tf.new_empty(batch, self.hid_chan, n_frames)]
        for block in self.blocks:
            state, pending = block(state, pending, work)
        if self.skip_chan:
            mask_in = state[:, self.bn_chan:] + pending[:, self.bn_chan:].unsqueeze(-1)
        else:
            mask_in = state + pending.unsqueeze(-1)
        inplace = not self.portable
        mask_in = self.mask_prelu(mask_in, inplace)
        score = torch.matmul(self.mask_w, mask_in)
        score = score.add_(self.mask_b.unsqueeze(-1)) if inplace else score + self.mask_b.unsqueeze(-1)
        score = score.view(batch, self.n_src, self.out_chan, n_frames)
        if self.mask_act == "sigmoid":
            return torch.sigmoid_(score) if inplace else torch.sigmoid(score)
        if self.mask_act == "softmax":
            return torch.softmax(score, dim=1)
        if self.mask_act == "relu":
            return torch.relu_(score) if inplace else torch.relu(score)
        return score

    def decode(self, masked: torch.Tensor, length: int) -> torch.Tensor:
        """(batch, n_src, N, frames) -> (batch, n_src, length): transposed conv as a product + overlap-add."""
        batch, n_src, _, n_frames = masked.shape
        hop, window = self.stride, self.kernel_size
        if window % hop != 0:
            wav = F.conv_transpose1d(masked.reshape(batch * n_src, -1, n_frames), self.dec_w.unsqueeze(1),
                                     stride=hop).view(batch, n_src, -1)
        else:
            frames = torch.matmul(masked.transpose(-1, -2), self.dec_w)  # (batch, n_src, frames, L)
            k = window // hop
            wav = F.pad(frames[..., :hop], [0, 0, 0, k - 1])
            for j in range(1, k):
                wav = wav + F.pad(frames[..., j * hop:(j + 1) * hop], [0, 0, j, k - 1 - j])
            wav = wav.reshape(batch, n_src, (n_frames + k - 1) * hop)
        return F.pad(wav, [0, length - wav.shape[-1]])

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        squeeze = wav.dim() == 1
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        elif wav.dim() == 3:
            wav = wav[:, 0]
        with torch.no_grad():  # inference only: several updates are in place
            tf = self.encode(wav)
            masks = self.masks(tf)
            masked = masks.mul_(tf.unsqueeze(1)) if not self.portable else masks * tf.unsqueeze(1)
            out = self.decode(masked, wav.shape[-1])
        return out[0] if squeeze else out


# ---------------------------------------------------------------- entry points
def prepare_for_inference(model, device: Optional[str | torch.device] = None, fast: bool = True):
    """The model to run for inference on ``device`` (default :func:`default_device`), in eval mode.

    ``fast=True`` (default): a :class:`FastConvTasNet` of the model (exact, see the module
    docstring); a model it cannot represent is returned as it is, moved, with a log line.
    Already prepared models (FastConvTasNet, TorchScript, ONNX wrappers) are only moved.
    """
    dev = resolve_device(device)
    if isinstance(model, (FastConvTasNet, torch.jit.ScriptModule)) or getattr(model, "is_prepared", False):
        return model.to(dev) if hasattr(model, "to") else model
    model = model.eval()
    if fast:
        reason = unsupported_reason(model)
        if reason is None:
            return FastConvTasNet(model).to(dev).eval()
        log.info("fast inference path unavailable (%s): running the model as it is", reason)
    return model.to(dev)


def output_snr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """10 log10(|ref|^2 / |ref - est|^2) in dB over all samples: how close reduced precision stays."""
    ref, est = reference.double(), estimate.double()
    noise = (ref - est).pow(2).sum().item()
    return float("inf") if noise == 0 else 10 * torch.log10(ref.pow(2).sum() / noise).item()


class _Bf16(nn.Module):
    """A bfloat16 copy of a float32 model behind a float32 interface."""

    def __init__(self, model):
        super().__init__()
        self.inner = model.to(torch.bfloat16)
        self.geometry = getattr(model, "geometry", None)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.inner(wav.to(torch.bfloat16)).float()


def reduced_precision(model, mode: str, probe: Optional[torch.Tensor] = None) -> Tuple[nn.Module, Optional[float]]:
    """An opt-in lower-precision copy of ``model`` (CPU) and its output SNR (dB) vs float32 on ``probe``.

    ``mode``: ``"int8"`` (dynamic int8 quantisation of the 1x1 convolutions: every 1x1
    ``Conv1d`` of the TCN becomes an int8 ``Linear`` over channels, weights quantised per
    channel, activations per call) or ``"bf16"`` (the fast model in bfloat16, where the CPU
    has bf16 instructions). Never the default: the SNR says what it costs.
    """
    import copy

    model = model.eval()
    if mode == "int8":
        low = _int8_model(copy.deepcopy(model).cpu())
    elif mode == "bf16":
        base = model if isinstance(model, FastConvTasNet) else FastConvTasNet(model)
        low = _Bf16(copy.deepcopy(base).cpu())
    else:
        raise ValueError(f"precision {mode!r}: choose int8 or bf16")
    snr = None
    if probe is not None:
        with torch.inference_mode():
            ref = model.cpu()(probe)
            snr = output_snr(ref, low(probe))
    return low, snr


class _PointwiseLinear(nn.Module):
    """A 1x1 ``Conv1d`` as a ``Linear`` over channels (what dynamic quantisation knows)."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(conv.weight[:, :, 0])
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


def _int8_model(model):
    for parent in list(model.masker.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv1d) and child.kernel_size == (1,) and child.groups == 1:
                setattr(parent, name, _PointwiseLinear(child))
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
