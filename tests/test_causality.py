"""Causal means causal: no output sample depends on input more than one encoder window ahead.

Every causal variant (each causal norm x encoder/decoder variant x mask, and every causal
config in conf/) is checked by perturbing the input after sample t: every output sample
before t - L (L = one encoder window) must stay exactly what it was. A causal config with
gLN is refused when the config is loaded.
"""

from pathlib import Path

import pytest
import torch

from local.config import ConfigError, load_config
from local.model import ConvTasNetVariant
from local.variants import CAUSAL_NORMS

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(n_filters=16, bn_chan=8, hid_chan=16, skip_chan=8, n_blocks=3, n_repeats=2)
VARIANTS = [  # (encoder_activation, who_is_pinv, mask_act): the paper's ablation rows
    ("linear", None, "sigmoid"), ("linear", None, "softmax"), ("linear", None, "relu"),
    ("relu", None, "sigmoid"), ("sigmoid", None, "sigmoid"), ("linear", "encoder", "softmax"),
    ("linear", "decoder", "softmax"),
]


def _leak(model, n=3000, cuts=(700, 1601, 2900)) -> float:
    """Largest change of an output sample before t - L when the input after t is perturbed."""
    window = int(model.encoder.filterbank.kernel_size)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, n, generator=gen)
    worst = 0.0
    with torch.no_grad():
        ref = model(x)
        for t in cuts:
            y = x.clone()
            y[:, t:] += 3.0 * torch.randn(1, n - t, generator=gen)
            out = model(y)
            keep = max(t - window, 0)
            worst = max(worst, float((out[..., :keep] - ref[..., :keep]).abs().max()))
            assert float((out[..., t:] - ref[..., t:]).abs().max()) > 0  # the perturbation does reach the output
    return worst


@pytest.mark.parametrize("norm_type", CAUSAL_NORMS)
@pytest.mark.parametrize("enc_act,pinv,mask_act", VARIANTS)
@pytest.mark.parametrize("kernel_size,stride", [(16, 8), (32, 16)])
def test_causal_variants_ignore_the_future(norm_type, enc_act, pinv, mask_act, kernel_size, stride):
    torch.manual_seed(0)
    model = ConvTasNetVariant(2, **SMALL, kernel_size=kernel_size, stride=stride, norm_type=norm_type,
                              causal=True, encoder_activation=enc_act, who_is_pinv=pinv, mask_act=mask_act).eval()
    assert _leak(model) == 0.0


def _causal_configs():
    found = []
    for path in sorted((REPO / "conf").rglob("*.yml")):
        try:
            conf = load_config(path)
        except ConfigError:
            continue  # base fragments of a folder, checked by test_config
        if conf["masknet"]["causal"]:
            found.append(path)
    return found


def test_every_causal_config_is_causal():
    from local.model import make_model

    configs = _causal_configs()
    assert configs, "no causal config in conf/"
    for path in configs:
        conf = load_config(path, [f"masknet.{k}={v}" for k, v in SMALL.items() if k != "n_filters"]
                           + [f"filterbank.n_filters={SMALL['n_filters']}"])
        torch.manual_seed(0)
        assert _leak(make_model(conf).eval()) == 0.0, path


def test_the_check_has_teeth():
    """A non-causal model (gLN, centred convolutions) does change earlier samples."""
    torch.manual_seed(0)
    model = ConvTasNetVariant(2, **SMALL, kernel_size=16, stride=8, norm_type="gLN", causal=False).eval()
    assert _leak(model) > 1e-6


def test_causal_with_gln_is_refused_at_config_load(tmp_path):
    conf = tmp_path / "bad.yml"
    conf.write_text(f"base: {REPO / 'conf' / 'paper_best_causal.yml'}\nmasknet:\n  norm_type: gLN\n")
    with pytest.raises(ConfigError, match="causal=true needs a causal norm_type"):
        load_config(conf)
    with pytest.raises(ConfigError, match="causal"):
        load_config(REPO / "conf" / "paper_best.yml", ["masknet.causal=true"])
    with pytest.raises(ValueError, match="causal"):
        ConvTasNetVariant(2, **SMALL, norm_type="gLN", causal=True)
