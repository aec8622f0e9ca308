"""Drop-in replacements for asteroid's layers that are slow to train on CPU: the TCN's, the filterbanks'.

Profiling a demo training step (``benchmarks/benchmark_tcn_ops.py``) showed that a
quarter of a CPU step went into layers whose work is trivial:

- ``torch.var`` inside asteroid's global layer norm (gLN) uses a Welford reduction
  that PyTorch 2.11 does not vectorise on CPU: about 1.1 ms for an 8x128x499 tensor,
  where a mean over the same tensor takes 0.02 ms. :class:`FastGlobLN` computes the
  variance from the means of ``x`` and ``x * x`` instead (plain reductions, one pass).
- ``nn.PReLU``'s backward with one shared slope reduces through a slow generic
  kernel; :class:`FastPReLU` writes the same function as ``relu(x) - a * relu(-x)``,
  whose backward is made of fast element-wise ops and one sum.
- The dilated depthwise convolution of every TCN block goes through oneDNN,
  whose backward for one-channel-per-group kernels is slow on CPU (a few ms per
  block for what is 3 multiply-adds per sample). :class:`FastDepthwiseConv1d`
  writes it as ``P`` shifted, scaled copies of the input: element-wise work that
  ``torch.compile`` fuses into one loop forward and backward. A compiled demo training
  step (batch 16 x 1 s) takes 78 ms instead of 135 ms on 2 threads, 122 ms instead of
  175 ms on 1 (eagerly about 1.1x; per layer: ``benchmarks/benchmark_tcn_ops.py``).
- The filterbank encoder and decoder are convolutions with one input (output) channel,
  a poor fit for oneDNN, on AVX2 even more than on AVX-512 (``benchmarks/benchmark_compile.py
  --profile``): :class:`FastEncoder` multiplies the waveform's frames by the filters, and
  :class:`FastDecoder` overlap-adds the frames' products with ``F.fold``. The compiled demo
  step (one thread, another job on the second core) went from 387 to 323 ms under
  ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` and from 299 to 281 ms with AVX-512.
- The TCN's 1x1 convolutions are matrix products, but oneDNN runs them as convolutions, and
  a ``matmul`` on the channels-first (batch, chan, frames) tensors costs layout copies in the
  compiled step that eat the gain. :class:`FastTDConvNet` runs the whole TCN channels-last
  instead, (batch, frames, chan), where every 1x1 convolution is one ``F.linear`` (a BLAS
  matrix product forward and backward, no copy) and the norms, PReLUs and depthwise taps are
  the same element-wise work along other strides: one transpose in, one out. A compiled demo
  step (2 threads, ``benchmarks/benchmark_compile.py``, 2026-12-03, Xeon family 6 model 167)
  took 125 ms instead of 153 ms with every library held to AVX2 (``ATEN_CPU_CAPABILITY=avx2
  ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``), 125 instead of 134 ms with the
  machine's AVX-512 kernels.

Which code runs is decided at every call, from the input (parameters are shared, so
nothing has to be swapped when the model moves between devices): the rewritten formulas
run for CPU inputs with gradients enabled outside autocast, i.e. CPU training; gLN's also
runs for CPU inference. Everywhere else the layers call torch's or asteroid's own op:

- Off the CPU (CUDA) every layer is asteroid's own computation: cuDNN's depthwise
  convolution and torch's PReLU kernel are what a GPU is fast at, and the results are
  asteroid's bit for bit.
- Without gradients (validation, separation, evaluation, ``torch.jit.trace`` export, which
  traces under ``no_grad``) the PReLU and convolution rewrites do not pay. Forward only
  (8x128x499, one thread): torch's PReLU takes 0.16 ms where ``relu(x) - a * relu(-x)``
  takes 2.3 ms, oneDNN's depthwise convolution 2.5 ms where the shifted sums take 2.7 ms;
  gLN's rewrite stays faster (2.7 ms against asteroid's 6.2 ms), so it is kept on the CPU.
  The demo model's no-grad forward (batch 16 x 1 s, one thread) takes about 150 ms this
  way, 190 ms with every rewrite (medians of three noisy runs each).
- Under CPU autocast (``precision: bf16-mixed``) PReLU and the depthwise convolution are
  ops that autocast runs in bfloat16, inputs and weights cast, whatever dtype their input
  has (gLN's output is float32 there, see below). Calling the stock ops there keeps that
  policy exactly; the rewrites would multiply by float32 weights and return float32.
  gLN has no autocast rule: asteroid's returns float32 under autocast (its float32
  ``gamma``/``beta`` promote a bfloat16 input) and :class:`FastGlobLN` does the same.

All compute the same function with the same parameters under the same names
(``weight``/``bias``; ``gamma``/``beta``), so state dicts, asteroid's ``from_pretrained``
and stock ``ConvTasNet`` checkpoints are unchanged. Outputs agree with asteroid's
layers to float32 rounding (tested in ``tests/test_fast_ops.py``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from asteroid.masknn.convolutional import TDConvNet
from asteroid.masknn.norms import GlobLN, _glob_norm
from asteroid_filterbanks.enc_dec import Decoder, Encoder, multishape_conv1d, multishape_conv_transpose1d
from torch import nn


def _train_on_cpu(x: torch.Tensor) -> bool:
    """Whether ``x`` is a CPU training input outside autocast: where the rewrites pay."""
    if torch.jit.is_scripting():  # TorchScript has no device-type argument for the autocast query
        return x.is_cpu and torch.is_grad_enabled()
    return x.is_cpu and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")


class FastPReLU(nn.PReLU):
    """``nn.PReLU`` with a cheaper backward on CPU (same parameter, same result)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _train_on_cpu(x):
            return F.prelu(x, self.weight)
        weight = self.weight
        if weight.numel() > 1:  # one slope per channel: broadcast over [batch, chan, time]
            shape = [1, -1] + [1] * (x.dim() - 2)
            weight = weight.view(shape)
        return _prelu(x, weight)


def _prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PReLU with slopes ``weight`` already shaped to broadcast over ``x``."""
    return torch.relu(x) - weight * torch.relu(-x)


class FastGlobLN(GlobLN):
    """asteroid's ``GlobLN`` (normalise over channels and time) without ``torch.var`` on CPU."""

    def forward(self, x: torch.Tensor, EPS: float = 1e-8) -> torch.Tensor:
        if not x.is_cpu:
            return self.apply_gain_and_bias(_glob_norm(x, eps=EPS))  # asteroid's GlobLN.forward
        shape = [1, -1] + [1] * (x.dim() - 2)
        return _global_norm(x, self.gamma.view(shape), self.beta.view(shape), EPS)


def _global_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """gLN over every dimension but the batch's, with ``gamma``/``beta`` shaped to broadcast over ``x``."""
    dims = list(range(1, x.dim()))
    # One pass over x for both moments (var = E[x^2] - E[x]^2), not a second pass over the
    # centred tensor: compiled, the demo step has one reduction loop less per norm and ran
    # about 4% faster with the AVX2 kernels (benchmarks/benchmark_compile.py, 2 threads).
    # The activations normalised here have means of the order of their spread, far from
    # where the cancellation matters in float32; the clamp keeps rounding from making a
    # constant input's variance negative.
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x * x).mean(dim=dims, keepdim=True) - mean * mean).clamp_min(0.0)
    scale = gamma * torch.rsqrt(var + eps)
    return torch.addcmul(beta - mean * scale, x, scale)


class FastDepthwiseConv1d(nn.Conv1d):
    """A depthwise ``nn.Conv1d`` (one channel per group, stride 1, zero padding) as shifted sums.

    ``y[c, t] = b[c] + sum_k w[c, k] * x_pad[c, t + k * dilation]``, the definition of
    the convolution, with the same ``weight`` (C, 1, P) and ``bias`` (C,).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _train_on_cpu(x):
            return self._conv_forward(x, self.weight, self.bias)  # nn.Conv1d.forward
        pad = self.padding[0]
        bias = self.bias  # a local for TorchScript's Optional refinement
        if bias is not None:
            bias = bias.unsqueeze(-1)
        return _shifted_sums(F.pad(x, [pad, pad]), self.weight[:, 0, :].unsqueeze(-1), bias, self.dilation[0], -1)

    def channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """The same convolution of a (batch, frames, chan) tensor."""
        pad = self.padding[0]
        return _shifted_sums(F.pad(x, [0, 0, pad, pad]), self.weight[:, 0, :], self.bias, self.dilation[0], 1)


def _shifted_sums(padded: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dilation: int,
                  time_dim: int) -> torch.Tensor:
    """``sum_k weight[:, k] * padded[t + k * dilation] (+ bias)`` along ``time_dim``; ``weight`` is
    (C, P) or (C, P, 1) and ``bias`` shaped, like each tap ``weight[:, k]``, to broadcast over it."""
    taps = weight.shape[1]
    length = padded.shape[time_dim] - dilation * (taps - 1)
    out = padded.narrow(time_dim, 0, length) * weight[:, 0]
    for k in range(1, taps):
        out = out + padded.narrow(time_dim, k * dilation, length) * weight[:, k]
    if bias is not None:
        out = out + bias
    return out


class FastEncoder(Encoder):
    """asteroid's filterbank ``Encoder``; in CPU training, the waveform's frames times the filters.

    A convolution with one input channel, a 64-sample kernel and stride 32 (the demo's
    encoder) is a poor fit for oneDNN: forward and backward took 19.5 ms against 7.9 ms for
    the same product written as ``unfold`` + ``matmul`` (demo shape, one thread, the same on
    AVX2 and AVX-512; ``benchmarks/benchmark_compile.py --profile``). Same filters
    (``get_filters``: learned or pseudo-inverse), same output up to float32 rounding.
    """

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        filters = self.get_filters()
        waveform = self.filterbank.pre_analysis(waveform)
        if (_train_on_cpu(waveform) and waveform.dim() == 3 and waveform.shape[1] == 1 and self.as_conv1d
                and self.padding == 0 and filters.shape[1] == 1):
            frames = waveform[:, 0].unfold(-1, filters.shape[-1], self.stride)  # (batch, frames, L)
            spec = torch.matmul(filters[:, 0], frames.transpose(1, 2))  # (batch, N, frames)
        else:
            spec = multishape_conv1d(waveform, filters=filters, stride=self.stride, padding=self.padding,
                                     as_conv1d=self.as_conv1d)
        return self.filterbank.post_analysis(spec)


class FastDecoder(Decoder):
    """asteroid's filterbank ``Decoder``; in CPU training, the overlap-add as ``matmul`` + ``fold``.

    The transposed convolution to one output channel took 47.4 ms forward and backward against
    18.7 ms for the frames' product with the filters followed by ``F.fold`` (the overlap-add),
    demo shape, one thread, on AVX2 and AVX-512 alike. Same filters, same output up to float32
    rounding.
    """

    def forward(self, spec: torch.Tensor, length: Optional[int] = None) -> torch.Tensor:
        filters = self.get_filters()
        spec = self.filterbank.pre_synthesis(spec)
        if (_train_on_cpu(spec) and spec.dim() >= 3 and self.padding == 0 and self.output_padding == 0
                and filters.shape[1] == 1):
            flat = spec.reshape((-1,) + spec.shape[-2:])  # (M, N, frames)
            kernel = filters.shape[-1]
            out_len = (flat.shape[-1] - 1) * self.stride + kernel
            frames = torch.matmul(filters[:, 0].t(), flat)  # (M, L, frames)
            wav = F.fold(frames, output_size=(1, out_len), kernel_size=(1, kernel), stride=(1, self.stride))
            wav = wav.reshape(spec.shape[:-2] + (out_len,)) if spec.dim() > 3 else wav.reshape(-1, 1, out_len)
        else:
            wav = multishape_conv_transpose1d(spec, filters, stride=self.stride, padding=self.padding,
                                              output_padding=self.output_padding)
        wav = self.filterbank.post_synthesis(wav)
        if length is not None:
            length = min(length, wav.shape[-1])
            return wav[..., :length]
        return wav


_GLN_EPS = 1e-8  # asteroid's GlobLN default


class FastTDConvNet(TDConvNet):
    """asteroid's ``TDConvNet``; in CPU training with gLN, the whole TCN channels-last.

    With (batch, frames, chan) activations every 1x1 convolution is one ``F.linear``: BLAS
    matrix products forward and backward, where oneDNN's 1x1 convolutions were half of a
    compiled demo step with the AVX2 kernels (``benchmarks/benchmark_compile.py --profile``).
    The blocks are asteroid's modules (the same parameters and names: state dicts are
    unchanged); only their order of axes differs. Other norms (cLN, cgLN, BN: the causal
    models), inference and other devices run asteroid's ``forward``.
    """

    def forward(self, mixture_w: torch.Tensor) -> torch.Tensor:
        if not (_train_on_cpu(mixture_w) and mixture_w.dim() == 3 and not self.causal
                and type(self.bottleneck[0]) is FastGlobLN):
            return super().forward(mixture_w)
        batch, _, n_frames = mixture_w.shape
        in_norm, in_conv = self.bottleneck
        out = _pointwise(_global_norm(mixture_w.transpose(1, 2), in_norm.gamma, in_norm.beta, _GLN_EPS), in_conv)
        skip = None
        for i, block in enumerate(self.TCN):
            conv, prelu, norm, depth_conv, depth_prelu, depth_norm = block.shared_block
            hidden = _global_norm(_prelu(_pointwise(out, conv), prelu.weight), norm.gamma, norm.beta, _GLN_EPS)
            hidden = _prelu(depth_conv.channels_last(hidden), depth_prelu.weight)
            hidden = _global_norm(hidden, depth_norm.gamma, depth_norm.beta, _GLN_EPS)
            if self.skip_chan:
                block_skip = _pointwise(hidden, block.skip_conv)
                skip = block_skip if skip is None else skip + block_skip
                if i == len(self.TCN) - 1:  # asteroid adds the last residual to a sum nothing reads
                    break
            out = out + _pointwise(hidden, block.res_conv)
        prelu, mask_conv = self.mask_net
        score = _pointwise(_prelu(skip if self.skip_chan else out, prelu.weight), mask_conv)
        score = score.transpose(1, 2).reshape(batch, self.n_src, self.out_chan, n_frames)
        return self.output_act(score)


def _pointwise(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """A 1x1 ``nn.Conv1d`` applied to a channels-last (batch, frames, chan) tensor."""
    return F.linear(x, conv.weight[:, :, 0], conv.bias)


def _is_plain_depthwise(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv1d and conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
            and conv.stride == (1,) and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


def use_fast_ops(module: nn.Module) -> nn.Module:
    """Replace every ``TDConvNet``, ``nn.PReLU``, ``GlobLN``, depthwise ``nn.Conv1d`` and filterbank
    ``Encoder`` / ``Decoder`` inside ``module`` in place.

    Exact types only: subclasses of those layers may compute something else. Returns ``module``.
    The new layers choose their code per call (see the module docstring), so the swap is
    right for every device the model is later moved to.
    """
    for parent in list(module.modules()):  # first the TCNs, whose new layers the second pass swaps
        for name, child in list(parent.named_children()):
            if type(child) is TDConvNet:
                with torch.random.fork_rng(devices=[]):  # a new TCN's initial weights must not move the caller's stream
                    fast = FastTDConvNet(**child.get_config())
                setattr(parent, name, _take_over(fast, child))
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (Encoder, Decoder):  # the same filterbank object: shared (Pinv) filters stay shared
                fast = FastEncoder(child.filterbank, is_pinv=child.is_pinv, as_conv1d=child.as_conv1d,
                                   padding=child.padding) if type(child) is Encoder else \
                    FastDecoder(child.filterbank, is_pinv=child.is_pinv, padding=child.padding,
                                output_padding=child.output_padding)
                setattr(parent, name, fast)
                continue
            if type(child) is nn.PReLU:
                new = FastPReLU(child.num_parameters)
            elif type(child) is GlobLN:
                new = FastGlobLN(child.channel_size)
            elif _is_plain_depthwise(child):
                new = FastDepthwiseConv1d(child.in_channels, child.out_channels, child.kernel_size,
                                          padding=child.padding, dilation=child.dilation, groups=child.groups,
                                          bias=child.bias is not None)
            else:
                continue
            setattr(parent, name, _take_over(new, child))
    return module


def _take_over(new: nn.Module, old: nn.Module) -> nn.Module:
    """``new`` with ``old``'s parameters and buffers, device, dtype and ``requires_grad`` flags."""
    new.to(next(old.parameters()))
    new.load_state_dict(old.state_dict())
    for old_p, new_p in zip(old.parameters(), new.parameters()):
        new_p.requires_grad_(old_p.requires_grad)
    return new
