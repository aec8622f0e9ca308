"""The model: the paper's toy example, the Pinv autoencoder, every variant, save/load."""

import itertools

import pytest
import torch
from asteroid.models import ConvTasNet

from local.model import ConvTasNetVariant, load_model, receptive_field_seconds, serialize_model
from local.variants import check_variant

TINY = dict(n_filters=32, kernel_size=8, stride=4, bn_chan=16, hid_chan=24, skip_chan=16, n_blocks=2, n_repeats=1)


def test_paper_toy_example_through_real_encoder_mask_decoder():
    """PAPER.md's worked example: x=[1,2,3,4], one filter [1,0], kernel 2, stride 1."""
    model = ConvTasNetVariant(2, n_filters=1, kernel_size=2, stride=1, bn_chan=4, hid_chan=4, skip_chan=4,
                              n_blocks=1, n_repeats=1)
    with torch.no_grad():
        model.encoder.filterbank._filters.copy_(torch.tensor([[[1.0, 0.0]]]))
        model.decoder.filterbank._filters.copy_(torch.tensor([[[1.0, 0.0]]]))
    s_a = torch.tensor([0.0, 1.0, 0.0, 3.0])
    s_b = torch.tensor([1.0, 1.0, 3.0, 1.0])
    x = s_a + s_b
    enc = lambda s: model.forward_encoder(s.view(1, 1, -1))  # noqa: E731
    e, e_a, e_b = enc(x), enc(s_a), enc(s_b)
    assert e.flatten().tolist() == [1.0, 2.0, 3.0]
    assert e_a.flatten().tolist() == [0.0, 1.0, 0.0]
    assert e_b.flatten().tolist() == [1.0, 1.0, 3.0]
    masks = torch.stack([e_a / e, e_b / e], dim=1)  # ideal masks M_A, M_B
    assert masks[0, 0].flatten().tolist() == [0.0, 0.5, 0.0]
    est = model.forward_decoder(model.apply_masks(e, masks))
    assert est[0, 0].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert est[0, 1].tolist() == [1.0, 1.0, 3.0, 0.0]  # last sample lost: W^T W != I


@pytest.mark.parametrize("n_filters,kernel_size", [(64, 16), (16, 16), (256, 40)])
def test_pinv_autoencoder_reconstructs_input(n_filters, kernel_size):
    """Decoder learned, encoder its pseudo-inverse: decode(encode(x)) == x away from the edges."""
    torch.manual_seed(0)
    model = ConvTasNetVariant(2, **{**TINY, "n_filters": n_filters, "kernel_size": kernel_size,
                                    "stride": kernel_size // 2}, who_is_pinv="encoder")
    x = torch.randn(3, 1, 4000)
    with torch.no_grad():
        rec = model.decoder(model.encoder(x))
    inner = slice(kernel_size, 4000 - kernel_size)
    err = (rec[..., inner] - x[..., inner]).norm() / x[..., inner].norm()
    assert err < 1e-4


def test_free_autoencoder_does_not_reconstruct():
    """Control for the test above: an untrained free pair is not an autoencoder."""
    torch.manual_seed(0)
    model = ConvTasNetVariant(2, **TINY)
    x = torch.randn(1, 1, 2000)
    with torch.no_grad():
        rec = model.decoder(model.encoder(x))
    assert (rec[..., 100:-100] - x[..., 100:-100]).norm() / x[..., 100:-100].norm() > 0.1


VARIANTS = [
    dict(encoder_activation=enc, mask_act=mask, who_is_pinv=pinv)
    for enc, mask, pinv in itertools.product(("linear", "relu", "sigmoid"), ("softmax", "sigmoid", "relu"),
                                             (None, "encoder"))
] + [dict(causal=True, norm_type="cLN"), dict(causal=True, norm_type="cLN", who_is_pinv="encoder")]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={w}" for k, w in v.items()))
def test_every_variant_forward_backward_and_roundtrip(variant, tmp_path):
    torch.manual_seed(0)
    model = ConvTasNetVariant(2, **TINY, **variant)
    x = torch.randn(2, 800)
    out = model(x)
    assert out.shape == (2, 2, 800)
    out.pow(2).mean().backward()
    # Every parameter that asks for a gradient gets one (plain DDP needs that); the one
    # that cannot, the last block's unused residual conv, does not ask (test below).
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    fb = model.decoder.filterbank._filters if variant.get("who_is_pinv") else model.encoder.filterbank._filters
    assert fb.grad.abs().sum() > 0
    if variant.get("mask_act") == "softmax":
        masks = model.forward_masker(model.forward_encoder(x.unsqueeze(1)))
        assert torch.allclose(masks.sum(1), torch.ones_like(masks[:, 0]), atol=1e-5)

    torch.save(serialize_model(model), tmp_path / "m.pth")
    loaded = load_model(torch.load(tmp_path / "m.pth", weights_only=True))
    assert loaded.who_is_pinv == model.who_is_pinv
    assert loaded.encoder_activation == model.encoder_activation
    assert loaded.masker.mask_act == model.masker.mask_act
    assert loaded.masker.causal == model.masker.causal
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_plain_asteroid_loads_pinv_model_with_same_output(tmp_path):
    """The exported package needs no recipe code: asteroid's ConvTasNet rebuilds the Pinv variant."""
    torch.manual_seed(1)
    model = ConvTasNetVariant(2, **TINY, who_is_pinv="encoder", encoder_activation="relu").eval()
    torch.save(serialize_model(model), tmp_path / "m.pth")
    plain = ConvTasNet.from_pretrained(str(tmp_path / "m.pth")).eval()
    assert plain.encoder.is_pinv
    x = torch.randn(1, 600)
    with torch.no_grad():
        assert torch.allclose(plain(x), model(x), atol=1e-6)


def test_causal_config_with_global_norm_is_an_error():
    with pytest.raises(ValueError, match="causal"):
        ConvTasNetVariant(2, **TINY, causal=True, norm_type="gLN")


@pytest.mark.parametrize("kwargs", [dict(encoder_activation="tanh"), dict(mask_act="linear"),
                                    dict(who_is_pinv="both"), dict(norm_type="LN")])
def test_unknown_variant_names_are_errors(kwargs):
    base = dict(encoder_activation="linear", mask_act="sigmoid", who_is_pinv=None, norm_type="gLN", causal=False)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        check_variant(**{**base, **kwargs})


def test_receptive_field_matches_paper_best():
    # Table II best: X=8, R=3, P=3, L=16 at 8 kHz -> about 1.53 s.
    assert receptive_field_seconds(16, 8, 3, 8, 3, 8000) == pytest.approx(1.53, abs=0.01)


def test_parameter_counts_match_paper_sizes():
    best = ConvTasNetVariant(2, n_filters=512, kernel_size=16, stride=8, bn_chan=128, hid_chan=512, skip_chan=128,
                             n_blocks=8, n_repeats=3)
    assert 4.9e6 < best.n_parameters() < 5.2e6  # paper: 5.1M
    ablation = ConvTasNetVariant(2, n_filters=256, kernel_size=40, stride=20, bn_chan=128, hid_chan=256,
                                 skip_chan=128, n_blocks=7, n_repeats=2)
    assert 1.4e6 < ablation.n_parameters() < 1.7e6  # paper: 1.5M


# -- the last block's unused residual conv (plain DDP) and asteroid compatibility -----------------

PAPER_LIKE = dict(n_filters=64, kernel_size=16, stride=8, bn_chan=16, hid_chan=32, skip_chan=16, n_blocks=3,
                  n_repeats=2, conv_kernel_size=3, norm_type="gLN", mask_act="relu")  # paper_best, scaled down


def _frozen(model):
    return {n for n, p in model.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("skip_chan", [16, 0])
def test_every_trainable_parameter_gets_a_gradient(skip_chan):
    torch.manual_seed(0)
    model = ConvTasNetVariant(2, **{**PAPER_LIKE, "skip_chan": skip_chan})
    model(torch.randn(2, 1600)).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    last = len(model.masker.TCN) - 1
    # With skip connections the masks come from the skip sum: the last block's residual conv
    # feeds nothing and is the only parameter that does not ask for a gradient.
    expected = {f"masker.TCN.{last}.res_conv.weight", f"masker.TCN.{last}.res_conv.bias"} if skip_chan else set()
    assert _frozen(model) == expected
    assert all(p.grad is None for n, p in model.named_parameters() if n in expected)


def test_state_dicts_load_both_ways_with_stock_asteroid():
    torch.manual_seed(0)
    ours, stock = ConvTasNetVariant(2, **PAPER_LIKE), ConvTasNet(2, **PAPER_LIKE)
    assert list(ours.state_dict()) == list(stock.state_dict())
    ours.load_state_dict(stock.state_dict(), strict=True)  # a stock asteroid checkpoint into ours
    x = torch.randn(1, 1600)
    ours.eval(), stock.eval()
    with torch.no_grad():  # to float32 rounding: gLN's CPU formula differs from asteroid's (local.fast_ops)
        torch.testing.assert_close(ours(x), stock(x), atol=1e-6, rtol=1e-5)
    torch.manual_seed(1)
    trained = ConvTasNetVariant(2, **PAPER_LIKE).eval()
    stock.load_state_dict(trained.state_dict(), strict=True)  # ours into stock asteroid's
    with torch.no_grad():
        torch.testing.assert_close(stock(x), trained(x), atol=1e-6, rtol=1e-5)
    assert len(_frozen(trained)) == 2  # loading weights does not unfreeze


def test_frozen_residual_conv_is_left_alone_by_the_optimizer_and_counted_on_request():
    from local.system import make_optimizer

    torch.manual_seed(0)
    model = ConvTasNetVariant(2, **PAPER_LIKE)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = make_optimizer(model.parameters(), {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.1})
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(2, 1600)).pow(2).mean().backward()
        opt.step()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())  # not even weight decay
    assert all(params[n] not in opt.state for n in frozen)  # no optimizer state either
    # The optimizer still lists it, so optimizer state dicts keep their layout.
    assert sum(len(g["params"]) for g in opt.param_groups) == len(params)
    stored = sum(p.numel() for p in model.parameters())
    unused = sum(p.numel() for p in params.values() if not p.requires_grad)
    assert model.n_parameters() == stored
    assert model.n_parameters(trainable_only=True) == stored - unused == stored - (16 * 32 + 16)
