"""The paper's encoder/decoder/mask/norm variants and the combinations the recipe accepts.

Torch-free on purpose: ``local.config`` validates a YAML file with it before any
stage starts, without paying for importing torch and asteroid.
"""

from __future__ import annotations

ENCODER_ACTIVATIONS = ("linear", "relu", "sigmoid")
MASK_ACTIVATIONS = ("softmax", "sigmoid", "relu")
PINV_CHOICES = (None, "encoder", "decoder")
NORM_TYPES = ("gLN", "cLN", "cgLN", "BN")
# asteroid 0.7.0: cLN normalises each frame over its channels only; cgLN is the paper's
# cumulative layer norm (statistics over every frame so far). Both see no future frame.
CAUSAL_NORMS = ("cLN", "cgLN")


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
