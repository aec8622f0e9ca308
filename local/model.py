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

ENCODER_ACTIVATIONS = ("linear", "relu", "sigmoid")
MASK_ACTIVATIONS = ("softmax", "sigmoid", "relu")
PINV_CHOICES = (None, "encoder", "decoder")
NORM_TYPES = ("gLN", "cLN", "cgLN", "BN")
CAUSAL_NORMS = ("cLN", "cgLN")


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
        # Same function and parameters as asteroid's layers, ~1.25x faster CPU training.
        use_fast_ops(self.masker)

    def get_model_args(self) -> dict:
        args = super().get_model_args()
        args["who_is_pinv"] = self.who_is_pinv
        args["sample_rate"] = self.sample_rate
        return args

    # Paper-facing summaries -------------------------------------------------
    def n_parameters(self) -> int:
        """Number of distinct trainable parameters (a shared Pinv basis counts once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

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


def receptive_field_seconds(kernel_size, stride, conv_kernel_size, n_blocks, n_repeats, sample_rate):
    """Samples seen by one output frame, in seconds.

    Each TCN block with dilation d widens the field by (P - 1) * d frames;
    one frame spans ``kernel_size`` samples and consecutive frames are ``stride`` apart.
    """
    frames = 1 + n_repeats * (conv_kernel_size - 1) * (2**n_blocks - 1)
    samples = (frames - 1) * stride + kernel_size
    return samples / float(sample_rate)


def check_variant(*, encoder_activation, mask_act, who_is_pinv, norm_type, causal):
    """Refuse variant combinations that would silently mean something else."""
    if (encoder_activation or "linear") not in ENCODER_ACTIVATIONS:
        raise ValueError(
            f"encoder_activation={encoder_activation!r}: choose one of {ENCODER_ACTIVATIONS}"
        )
    if mask_act not in MASK_ACTIVATIONS:
        raise ValueError(f"mask_act={mask_act!r}: choose one of {MASK_ACTIVATIONS}")
    if who_is_pinv not in PINV_CHOICES:
        raise ValueError(f"who_is_pinv={who_is_pinv!r}: choose one of {PINV_CHOICES}")
    if norm_type not in NORM_TYPES:
        raise ValueError(f"norm_type={norm_type!r}: choose one of {NORM_TYPES}")
    if causal and norm_type not in CAUSAL_NORMS:
        # asteroid would swap in cLN with a warning; a config that says gLN and
        # causal is a mistake the user should see, not a silent change.
        raise ValueError(
            f"causal=true needs a causal norm_type ({' or '.join(CAUSAL_NORMS)}), got {norm_type!r}: "
            "gLN normalises over the whole utterance and leaks future samples"
        )


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
