"""Conv-TasNet with every encoder/decoder/mask variant of the paper.

The model is asteroid's own ``ConvTasNet`` (``asteroid_filterbanks`` FreeFB
encoder/decoder + ``asteroid.masknn.TDConvNet``) with one addition: the
pseudo-inverse choice ``who_is_pinv`` is a constructor argument that is also
returned by ``get_model_args``, so that ``serialize`` / ``from_pretrained``
keep the paper's "Pinv" autoencoder ablation. Upstream ConvTasNet accepts
``who_is_pinv`` through ``**fb_kwargs`` but forgets it when serialised, and a
reloaded Pinv model silently becomes a free encoder/decoder pair.

Paper symbols -> arguments (Luo & Mesgarani 2019, Table I):
    N n_filters, L kernel_size, (L/2) stride, B bn_chan, H hid_chan,
    Sc skip_chan, P conv_kernel_size, X n_blocks, R n_repeats.

This module holds only the network: no data loading and no file I/O.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from asteroid.models import ConvTasNet, register_model
from asteroid.models import get as get_asteroid_model

from local.fast_ops import use_fast_ops

from local.variants import check_variant


class ConvTasNetVariant(ConvTasNet):
    """asteroid ``ConvTasNet`` whose variant survives ``serialize``.

    Args (in addition to :class:`asteroid.models.ConvTasNet`'s):
        who_is_pinv: ``None`` (encoder and decoder learned independently),
            ``"encoder"`` (paper's Pinv row: the decoder basis V is learned and
            the encoder is its pseudo-inverse, so encoder+decoder is an exact
            autoencoder) or ``"decoder"`` (the reverse).
    """

    def __init__(
        self,
        n_src: int,
        *,
        n_filters: int = 512,
        kernel_size: int = 16,
        stride: Optional[int] = None,
        encoder_activation: Optional[str] = None,
        who_is_pinv: Optional[str] = None,
        n_blocks: int = 8,
        n_repeats: int = 3,
        bn_chan: int = 128,
        hid_chan: int = 512,
        skip_chan: int = 128,
        conv_kernel_size: int = 3,
        norm_type: str = "gLN",
        mask_act: str = "sigmoid",
        causal: bool = False,
        sample_rate: float = 8000,
        **unused,
    ):
        # Keys that asteroid's own get_model_args adds (fb_name, in_chan, out_chan, ...)
        # come back in from_pretrained; they carry nothing we do not set ourselves.
        unused.pop("fb_name", None)
        unused.pop("in_chan", None)
        unused.pop("out_chan", None)
        unused.pop("is_pinv", None)
        if unused:
            raise TypeError(f"ConvTasNetVariant got unknown arguments: {sorted(unused)}")
        check_variant(
            encoder_activation=encoder_activation,
            mask_act=mask_act,
            who_is_pinv=who_is_pinv,
            norm_type=norm_type,
            causal=causal,
        )
        stride = stride if stride is not None else kernel_size // 2
        with warnings.catch_warnings():
            # check_variant already refused a causal model with a non-causal norm,
            # so asteroid's "changing norm to cLN" warning can never apply here.
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(
                n_src,
                n_blocks=n_blocks,
                n_repeats=n_repeats,
                bn_chan=bn_chan,
                hid_chan=hid_chan,
                skip_chan=skip_chan,
                conv_kernel_size=conv_kernel_size,
                norm_type=norm_type,
                mask_act=mask_act,
                causal=causal,
                fb_name="free",
                kernel_size=kernel_size,
                n_filters=n_filters,
                stride=stride,
                encoder_activation=encoder_activation,
                sample_rate=sample_rate,
                who_is_pinv=who_is_pinv,
            )
        self.who_is_pinv = who_is_pinv
        # Same function and parameters as asteroid's layers, faster CPU training (local.fast_ops).
        use_fast_ops(self)
        freeze_unused_residual(self.masker)

    def get_model_args(self) -> dict:
        args = super().get_model_args()
        args["who_is_pinv"] = self.who_is_pinv
        args["sample_rate"] = self.sample_rate
        return args

    # Paper-facing summaries -------------------------------------------------
    def n_parameters(self, trainable_only: bool = False) -> int:
        """Number of distinct parameters (a shared Pinv basis counts once).

        By default every parameter the model stores, as the paper counts them (5.05M for
        the paper's best model). That includes the last TCN block's residual 1x1 conv,
        which nothing reads when ``skip_chan > 0`` (``bn_chan x hid_chan + bn_chan``
        values: 65,664 of the 5.05M; see :func:`freeze_unused_residual`).
        ``trainable_only=True`` leaves it out: the parameters training updates and the
        output depends on.
        """
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def receptive_field(self) -> float:
        """Receptive field of the separator, in seconds (exact, not the paper's approximation)."""
        return receptive_field_seconds(
            kernel_size=self.encoder.filterbank.kernel_size,
            stride=self.encoder.stride,
            conv_kernel_size=self.masker.conv_kernel_size,
            n_blocks=self.masker.n_blocks,
            n_repeats=self.masker.n_repeats,
            sample_rate=self.sample_rate,
        )


def freeze_unused_residual(masker) -> None:
    """Stop the last TCN block's residual conv from asking for a gradient it never gets.

    In asteroid's ``TDConvNet`` with skip connections (``skip_chan > 0``) the masks are
    computed from the sum of the blocks' skip outputs; the last block's residual output
    (``res_conv``) is added to a running sum that nothing reads afterwards. Its two
    parameters therefore never receive a gradient, and plain DDP (``strategy: ddp``, no
    ``find_unused_parameters``) stops at the second step waiting for them.

    They are kept, with ``requires_grad=False``, instead of being removed or replaced:

    - the state dict keeps asteroid's keys, so a stock ``ConvTasNet`` checkpoint loads
      into this model and this model's into stock ``ConvTasNet`` (both ``strict``), and
      ``local.streaming`` still finds every block's ``res_conv``;
    - DDP registers only parameters that require a gradient, so it waits for nothing;
    - the optimizer may keep them (``make_optimizer`` passes ``model.parameters()``, so
      optimizer state dicts keep their layout): Adam skips parameters whose ``grad`` is
      ``None``, which is exactly what happened to them before, so training is unchanged
      number for number;
    - the forward pass is asteroid's, unchanged (the unused 1x1 conv still runs eagerly;
      ``torch.compile`` drops it as dead code).

    A model without skip connections uses every block's residual output: nothing is frozen.
    Whatever sets ``requires_grad`` on every parameter (``model.requires_grad_(True)``,
    Lightning's ``unfreeze()``) brings the DDP problem back; nothing in this recipe does.
    """
    if masker.skip_chan:
        masker.TCN[-1].res_conv.requires_grad_(False)


def receptive_field_seconds(kernel_size, stride, conv_kernel_size, n_blocks, n_repeats, sample_rate):
    """Samples seen by one output frame, in seconds.

    Each TCN block with dilation d widens the field by (P - 1) * d frames;
    one frame spans ``kernel_size`` samples and consecutive frames are ``stride`` apart.
    """
    frames = 1 + n_repeats * (conv_kernel_size - 1) * (2**n_blocks - 1)
    samples = (frames - 1) * stride + kernel_size
    return samples / float(sample_rate)


def make_model(conf: dict) -> ConvTasNetVariant:
    """Build the model from a recipe config's ``filterbank``, ``masknet`` and ``data`` sections.

    ``n_src`` and ``sample_rate`` come from the data section only, so they are
    never written twice.
    """
    return ConvTasNetVariant(
        n_src=conf["data"]["n_src"],
        sample_rate=conf["data"]["sample_rate"],
        **conf["filterbank"],
        **conf["masknet"],
    )


def load_model(package: dict) -> ConvTasNetVariant:
    """Rebuild a model from asteroid's ``serialize`` dictionary."""
    return ConvTasNetVariant.from_pretrained(package)


def _register() -> None:
    # asteroid.models.get lets asteroid's BaseModel.from_pretrained find our class by name.
    try:
        get_asteroid_model(ConvTasNetVariant.__name__)
    except ValueError:
        register_model(ConvTasNetVariant)


_register()


@torch.no_grad()
def separate_tensor(model: ConvTasNetVariant, mixture: torch.Tensor) -> torch.Tensor:
    """(time,) or (batch, time) mixture -> (batch, n_src, time) estimates, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        if mixture.dim() == 1:
            mixture = mixture.unsqueeze(0)
        return model(mixture)
    finally:
        model.train(was_training)


def serialize_model(model: ConvTasNetVariant, **infos) -> dict:
    """asteroid's ``serialize`` package, made loadable with ``torch.load(weights_only=True)``.

    asteroid stores ``torch.__version__`` (a ``TorchVersion`` object) in the
    package, which the safe unpickler refuses; plain strings load everywhere.
    """
    package = model.serialize()
    versions = package["infos"].get("software_versions", {})
    package["infos"]["software_versions"] = {k: str(v) for k, v in versions.items()}
    package["infos"].update(infos)
    return package
