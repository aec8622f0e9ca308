"""Drop-in replacements for two of asteroid's TCN layers that are slow on CPU.

Profiling a demo training step (``benchmarks/benchmark_tcn_ops.py``) showed that a
quarter of a CPU step went into two layers whose work is trivial:

- ``torch.var`` inside asteroid's global layer norm (gLN) uses a Welford reduction
  that PyTorch 2.11 does not vectorise on CPU: about 1.1 ms for an 8x128x499 tensor,
  where a mean over the same tensor takes 0.02 ms. :class:`FastGlobLN` computes the
  variance as the mean of squared deviations instead (two plain reductions).
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

All compute the same function with the same parameters under the same names
(``weight``/``bias``; ``gamma``/``beta``), so state dicts, asteroid's ``from_pretrained``
and stock ``ConvTasNet`` checkpoints are unchanged. Outputs agree with asteroid's
layers to float32 rounding (tested in ``tests/test_fast_ops.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from asteroid.masknn.norms import GlobLN
from torch import nn


class FastPReLU(nn.PReLU):
    """``nn.PReLU`` with a cheaper backward on CPU (same parameter, same result)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if weight.numel() > 1:  # one slope per channel: broadcast over [batch, chan, time]
            shape = [1, -1] + [1] * (x.dim() - 2)
            weight = weight.view(shape)
        return torch.relu(x) - weight * torch.relu(-x)


class FastGlobLN(GlobLN):
    """asteroid's ``GlobLN`` (normalise over channels and time) without ``torch.var``."""

    def forward(self, x: torch.Tensor, EPS: float = 1e-8) -> torch.Tensor:
        dims = list(range(1, x.dim()))
        centred = x - x.mean(dim=dims, keepdim=True)
        var = (centred * centred).mean(dim=dims, keepdim=True)
        shape = [1, -1] + [1] * (x.dim() - 2)
        scale = self.gamma.view(shape) * torch.rsqrt(var + EPS)
        return torch.addcmul(self.beta.view(shape), centred, scale)


class FastDepthwiseConv1d(nn.Conv1d):
    """A depthwise ``nn.Conv1d`` (one channel per group, stride 1, zero padding) as shifted sums.

    ``y[c, t] = b[c] + sum_k w[c, k] * x_pad[c, t + k * dilation]``, the definition of
    the convolution, with the same ``weight`` (C, 1, P) and ``bias`` (C,).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.padding[0]
        dilation = self.dilation[0]
        taps = self.kernel_size[0]
        padded = F.pad(x, [pad, pad])
        length = padded.shape[-1] - dilation * (taps - 1)
        weight = self.weight[:, 0, :].unsqueeze(-1)  # (C, P, 1): one column per tap
        out = padded[..., :length] * weight[:, 0]
        for k in range(1, taps):
            out = out + padded[..., k * dilation:k * dilation + length] * weight[:, k]
        bias = self.bias  # a local for TorchScript's Optional refinement
        if bias is not None:
            out = out + bias.unsqueeze(-1)
        return out


def _is_plain_depthwise(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv1d and conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
            and conv.stride == (1,) and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


def use_fast_ops(module: nn.Module) -> nn.Module:
    """Replace every ``nn.PReLU``, ``GlobLN`` and depthwise ``nn.Conv1d`` inside ``module`` in place.

    Exact types only: subclasses of those layers may compute something else. Returns ``module``.
    """
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
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
            new.to(next(child.parameters()))  # same device and dtype
            new.load_state_dict(child.state_dict())
            setattr(parent, name, new)
    return module
