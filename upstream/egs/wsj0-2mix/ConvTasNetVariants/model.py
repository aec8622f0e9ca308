"""Conv-TasNet and the encoder/decoder variants of Luo & Mesgarani (2019), Table III.

The model is asteroid's own ``ConvTasNet``; the variants are its arguments:
``encoder_activation`` (linear, relu, sigmoid), ``who_is_pinv`` (None, "encoder",
"decoder": which side is the pseudo-inverse of the other's filterbank) and
``mask_act`` (sigmoid, softmax, relu).

``serialize_model`` is ``model.serialize()`` that also records ``who_is_pinv``:
asteroid <= 0.7.0 forgets it, and a Pinv model would come back from
``from_pretrained`` with two independent filterbanks.
"""
import json
import os

import torch
from asteroid.engine.optimizers import make_optimizer
from asteroid.models import ConvTasNet
from asteroid.utils.torch_utils import load_state_dict_in

NONE_STRINGS = ("", "none", "null")


def _none(value):
    """A null in conf.yml comes back from the command line as a string."""
    return None if value is None or str(value).lower() in NONE_STRINGS else value


def make_model_and_optimizer(conf):
    """Define the model and optimizer from a config dictionary (``local/conf.yml``'s layout).

    Args:
        conf: Dictionary containing the output of hierarchical argparse.

    Returns:
        model, optimizer.
    """
    filterbank = dict(conf["filterbank"])
    filterbank["who_is_pinv"] = _none(filterbank.get("who_is_pinv"))
    filterbank["encoder_activation"] = _none(filterbank.get("encoder_activation"))
    model = ConvTasNet(
        n_src=conf["data"]["n_src"],
        sample_rate=conf["data"]["sample_rate"],
        **filterbank,
        **conf["masknet"],
    )
    optimizer = make_optimizer(model.parameters(), **conf["optim"])
    return model, optimizer


def who_is_pinv(model):
    """Which of the model's encoder and decoder is the pseudo-inverse of the other (or None)."""
    if getattr(model.encoder, "is_pinv", False):
        return "encoder"
    if getattr(model.decoder, "is_pinv", False):
        return "decoder"
    return None


def serialize_model(model):
    """``model.serialize()``, keeping ``who_is_pinv``, loadable with ``weights_only=True``."""
    package = model.serialize()
    package["model_args"]["who_is_pinv"] = who_is_pinv(model)
    versions = package["infos"].get("software_versions", {})
    package["infos"]["software_versions"] = {k: str(v) for k, v in versions.items()}
    return package


def load_best_model(train_conf, exp_dir):
    """Load best model after training.

    Args:
        train_conf (dict): dictionary as expected by `make_model_and_optimizer`
        exp_dir(str): Experiment directory. Expects to find
            `'best_k_models.json'` or `checkpoints/` in it.

    Returns:
        nn.Module the best (or last) pretrained model according to the val_loss.
    """
    model, _ = make_model_and_optimizer(train_conf)
    best_model_path = None
    best_k_path = os.path.join(exp_dir, "best_k_models.json")
    if os.path.exists(best_k_path):
        with open(best_k_path, "r") as f:
            best_k = json.load(f)
        if best_k:
            best_model_path = min(best_k, key=best_k.get)
            if not os.path.exists(best_model_path):  # experiment folder moved since training
                best_model_path = os.path.join(exp_dir, "checkpoints", os.path.basename(best_model_path))
    if best_model_path is None:
        # Get last checkpoint
        ckpt_dir = os.path.join(exp_dir, "checkpoints")
        all_ckpt = [c for c in os.listdir(ckpt_dir) if c.endswith(".ckpt")]
        all_ckpt.sort(key=lambda c: os.path.getmtime(os.path.join(ckpt_dir, c)))
        best_model_path = os.path.join(ckpt_dir, all_ckpt[-1])
    # Our own Lightning checkpoint: it holds the training config, not only tensors.
    checkpoint = torch.load(best_model_path, map_location="cpu", weights_only=False)
    model = load_state_dict_in(checkpoint["state_dict"], model)
    model.eval()
    return model
