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

Both compute the same function with the same parameters under the same names
(``weight``; ``gamma``/``beta``), so state dicts, asteroid's ``from_pretrained``
and stock ``ConvTasNet`` checkpoints are unchanged. Outputs agree with asteroid's
layers to float32 rounding (tested in ``tests/test_fast_ops.py``).
"""

from __future__ import annotations

import torch
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


def use_fast_ops(module: nn.Module) -> nn.Module:
    """Replace every ``nn.PReLU`` and ``GlobLN`` inside ``module`` in place; returns it.

    Exact types only: subclasses of those layers may compute something else.
    """
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.PReLU:
                new = FastPReLU(child.num_parameters)
            elif type(child) is GlobLN:
                new = FastGlobLN(child.channel_size)
            else:
                continue
            new.to(next(child.parameters()))  # same device and dtype
            new.load_state_dict(child.state_dict())
            setattr(parent, name, new)
    return module
