"""Frame-by-frame (streaming) separation with a causal Conv-TasNet.

Usage:

    from local.streaming import StreamingSeparator
    stream = StreamingSeparator(model)          # a causal ConvTasNetVariant, eval mode
    for chunk in chunks:                        # any sizes, down to one encoder hop
        out = stream.process(chunk)             # (n_src, n) separated samples, n ~ len(chunk)
    tail = stream.flush()                       # the last samples; the stream is reset

The concatenation of all ``process`` outputs and the ``flush`` output equals
``model(signal)`` of the offline causal model on the concatenated chunks
(``tests/test_streaming.py`` checks 1e-4; it is float32 round-off, ~1e-6).

What is carried between calls
-----------------------------
- the input samples of the frame not yet complete (fewer than ``L``),
- for every dilated depthwise convolution of the TCN, its last
  ``(P - 1) * dilation`` input frames: asteroid's causal ``Conv1DBlock`` pads
  ``(P - 1) * d`` frames on both sides and chops the right ones (``_Chop1d``),
  which is the same as left zero padding, so the state starts at zeros,
- for cumulative norms, the running sums (see below),
- the decoder's overlap-add tail (``L - stride`` samples).

Norms in asteroid 0.7.0 (``asteroid/masknn/norms.py``)
------------------------------------------------------
``norm_type="cLN"`` is ``ChanLN``: mean and variance over the channels of
each frame separately. It is not the paper's *cumulative* layer norm; it
needs no state. ``norm_type="cgLN"`` is ``CumLN``, the paper's cumulative
layer norm: statistics over all channels and all frames up to the current
one. For it the running sum, the running sum of squares and the frame count
are carried between calls (in float64, so a long stream does not drift;
asteroid's offline version accumulates in the input's dtype). ``gLN`` looks
at the whole utterance and is refused; ``BN`` in eval mode is per frame.

Latency
-------
A frame needs ``L`` samples, and output sample ``n`` is final once every frame
overlapping it is computed. With chunks of ``k`` hops the first sample of a
chunk leaves ``k * stride + (L - stride)`` samples after it arrived:
:meth:`StreamingSeparator.algorithmic_latency`. For ``k = 1`` that is one
window, ``L`` samples (2 ms for L=16 at 8 kHz).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from asteroid.masknn.norms import BatchNorm, ChanLN, CumLN, GlobLN

__all__ = ["StreamingSeparator"]

_EPS = 1e-8  # asteroid's norms default


class StreamingSeparator:
    """Stateful chunk-in / chunk-out separation with a causal Conv-TasNet.

    Args:
        model: a causal asteroid ``ConvTasNet`` (``ConvTasNetVariant``) with a
            free filterbank. Its weights are read once here (encoder and
            decoder filters, pseudo-inverse included, are cached): build a new
            ``StreamingSeparator`` after changing them.

    ``process`` takes ``(time,)`` or ``(batch, time)`` float tensors and
    returns ``(n_src, n)`` or ``(batch, n_src, n)``.
    """

    def __init__(self, model):
        masker = model.masker
        if not getattr(masker, "causal", False):
            raise ValueError("streaming needs a causal model (masknet.causal: true); "
                             "use chunked offline separation for a non-causal one")
        self.model = model.eval()
        self.masker = masker
        fb = model.encoder.filterbank
        self.kernel_size = int(fb.kernel_size)
        self.stride = int(model.encoder.stride)
        if self.stride > self.kernel_size:
            raise ValueError(f"stride {self.stride} > kernel_size {self.kernel_size} is not supported")
        self.sample_rate = float(model.sample_rate)
        self.n_src = int(masker.n_src)
        for module in masker.modules():
            if isinstance(module, GlobLN):
                raise ValueError("gLN normalises over the whole utterance: it cannot stream")
            if isinstance(module, (ChanLN, CumLN, BatchNorm)) or not hasattr(module, "gamma"):
                continue
            raise ValueError(f"unsupported norm {type(module).__name__} for streaming")
        with torch.no_grad():
            self._enc_filters = model.encoder.get_filters().detach().clone()
            self._dec_filters = model.decoder.get_filters().detach().clone()
            self._prepare_blocks()
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the stream: the next ``process`` starts a new signal."""
        self._pending: Optional[torch.Tensor] = None  # (batch, < L samples not yet framed + hop rest)
        self._conv_state: dict[int, torch.Tensor] = {}
        self._cum_state: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        self._ola_tail: Optional[torch.Tensor] = None  # (batch, n_src, L - stride)
        self._batch: Optional[int] = None
        self.n_in = 0  # samples received
        self.n_out = 0  # samples returned

    def algorithmic_latency(self, chunk_hops: int = 1) -> float:
        """Seconds between a sample's arrival and its separated output, for chunks of ``chunk_hops`` hops."""
        return (chunk_hops * self.stride + self.kernel_size - self.stride) / self.sample_rate

    # --------------------------------------------------------------- process
    @torch.inference_mode()
    def process(self, chunk: torch.Tensor) -> torch.Tensor:
        """Separate the next ``chunk`` of the stream; returns the samples that are now final."""
        chunk, squeeze = self._as_batch(chunk)
        self.n_in += chunk.shape[-1]
        buf = chunk if self._pending is None else torch.cat([self._pending, chunk], -1)
        L, S = self.kernel_size, self.stride
        n_frames = (buf.shape[-1] - L) // S + 1 if buf.shape[-1] >= L else 0
        if n_frames == 0:
            self._pending = buf
            return self._out(buf.new_zeros(buf.shape[0], self.n_src, 0), squeeze)
        used = (n_frames - 1) * S + L
        self._pending = buf[:, n_frames * S:]
        tf_rep = self.model.enc_activation(F.conv1d(buf[:, None, :used], self._enc_filters, stride=S))
        masks = self._masker_step(tf_rep)
        masked = masks * tf_rep.unsqueeze(1)  # (batch, n_src, N, frames)
        batch = masked.shape[0]
        wav = F.conv_transpose1d(masked.reshape(batch * self.n_src, -1, n_frames), self._dec_filters, stride=S)
        wav = wav.reshape(batch, self.n_src, -1)  # (frames - 1) * S + L samples
        if self._ola_tail is not None:
            wav[..., : self._ola_tail.shape[-1]] += self._ola_tail
        ready = n_frames * S
        self._ola_tail = wav[..., ready:].clone()
        return self._out(wav[..., :ready], squeeze)

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """The samples still held back (the last frame's tail, then zeros, as the offline model pads).

        After it, the total output length equals the total input length, and the stream is reset.
        """
        squeeze = getattr(self, "_squeeze", True)
        remaining = self.n_in - self.n_out
        if self._batch is None:
            self.reset()
            return torch.zeros(self.n_src, 0) if squeeze else torch.zeros(0, self.n_src, 0)
        out = torch.zeros(self._batch, self.n_src, remaining)
        if self._ola_tail is not None and self.n_out > 0:
            n = min(remaining, self._ola_tail.shape[-1])
            out[..., :n] = self._ola_tail[..., :n]
        result = self._out(out, squeeze)
        self.reset()
        return result

    # -------------------------------------------------------------- helpers
    def _as_batch(self, chunk) -> tuple[torch.Tensor, bool]:
        chunk = torch.as_tensor(chunk, dtype=torch.float32)
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

    def _norm(self, module, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(module, CumLN):
            return module(x)  # per-frame norms (ChanLN, eval BatchNorm) need no state
        chan, n = x.shape[1], x.shape[-1]
        key = id(module)
        prev_sum, prev_pow, prev_n = self._cum_state.get(key, (0.0, 0.0, 0))
        xd = x.double()
        cum_sum = torch.cumsum(xd.sum(1, keepdim=True), -1) + prev_sum
        cum_pow = torch.cumsum(xd.pow(2).sum(1, keepdim=True), -1) + prev_pow
        cnt = chan * torch.arange(prev_n + 1, prev_n + n + 1, dtype=torch.float64).view(1, 1, -1)
        self._cum_state[key] = (cum_sum[..., -1:], cum_pow[..., -1:], prev_n + n)
        mean = cum_sum / cnt
        var = cum_pow / cnt - mean.pow(2)
        normed = ((xd - mean) / (var + _EPS).sqrt()).to(x.dtype)
        return module.apply_gain_and_bias(normed)

    def _prepare_blocks(self) -> None:
        """Per-block weights in the shapes the channels-last step uses (read once: eval mode)."""
        m = self.masker
        self._blocks = []
        for layer in m.TCN:
            sb = layer.shared_block
            conv = sb[3][0]  # causal: Sequential(depthwise conv, _Chop1d)
            out_w = layer.res_conv.weight[..., 0]
            out_b = layer.res_conv.bias
            if m.skip_chan:  # residual and skip 1x1 convolutions as one matrix product
                out_w = torch.cat([out_w, layer.skip_conv.weight[..., 0]], 0)
                out_b = torch.cat([out_b, layer.skip_conv.bias], 0)
            self._blocks.append(dict(
                in_w=sb[0].weight[..., 0].detach(), in_b=sb[0].bias.detach(), act1=sb[1].weight.detach(),
                norm1=sb[2],
                dw_w=conv.weight[:, 0, :].t().detach(), dw_b=conv.bias.detach(),  # (P, H), (H,)
                dilation=conv.dilation[0], pad=conv.dilation[0] * (conv.kernel_size[0] - 1),
                act2=sb[4].weight.detach(), norm2=sb[5], out_w=out_w.detach(), out_b=out_b.detach(),
            ))

    def _norm_last(self, module, x: torch.Tensor) -> torch.Tensor:
        """``_norm`` for channels-last (batch, frames, chan) tensors."""
        if isinstance(module, ChanLN):  # per-frame mean/var over channels: exactly a layer norm
            return F.layer_norm(x, (x.shape[-1],), module.gamma, module.beta, _EPS)
        return self._norm(module, x.transpose(1, 2)).transpose(1, 2)

    def _masker_step(self, tf_rep: torch.Tensor) -> torch.Tensor:
        """``masker(tf_rep)`` for new frames only, from the carried state.

        Runs channels-last, so 1x1 convolutions are matrix products, cLN is
        ``layer_norm`` and the dilated depthwise convolution is P shifted
        multiply-adds over [state, new frames]: fewer, larger operations per
        call, which is what dominates the time at one hop per call.
        """
        m = self.masker
        batch, _, n_frames = tf_rep.shape
        x = self._norm(m.bottleneck[0], tf_rep).transpose(1, 2)  # (batch, frames, N)
        bottleneck = m.bottleneck[1]
        out = F.linear(x, bottleneck.weight[..., 0], bottleneck.bias)
        skip = None
        n_res = out.shape[-1]
        for i, blk in enumerate(self._blocks):
            h = self._norm_last(blk["norm1"], F.prelu(F.linear(out, blk["in_w"], blk["in_b"]), blk["act1"]))
            pad, d = blk["pad"], blk["dilation"]
            state = self._conv_state.get(i)
            if state is None:
                state = h.new_zeros(batch, pad, h.shape[-1])
            h = torch.cat([state, h], 1)
            self._conv_state[i] = h[:, h.shape[1] - pad:]
            y = blk["dw_b"] + h[:, :n_frames] * blk["dw_w"][0]
            for k in range(1, blk["dw_w"].shape[0]):
                y = torch.addcmul(y, h[:, k * d:k * d + n_frames], blk["dw_w"][k])
            h = self._norm_last(blk["norm2"], F.prelu(y, blk["act2"]))
            res_skip = F.linear(h, blk["out_w"], blk["out_b"])
            out = out + res_skip[..., :n_res]
            if m.skip_chan:
                skip = res_skip[..., n_res:] if skip is None else skip + res_skip[..., n_res:]
        score = m.mask_net((skip if m.skip_chan else out).transpose(1, 2))
        return m.output_act(score.reshape(batch, m.n_src, m.out_chan, n_frames))
