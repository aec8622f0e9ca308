"""Model packages that plain asteroid loads: what asteroid's ``publish_dir/`` and hub expect.

Our ``serialize`` package names the model ``ConvTasNetVariant`` (``local.model``), which
``asteroid.models.BaseModel.from_pretrained`` finds only where this recipe is imported.
:func:`asteroid_package` renames it ``ConvTasNet``; :func:`as_asteroid_export` rewrites an
export folder (``local.export``) that way, with asteroid's dataset and licence fields: the
asteroid-layout recipe's ``eval.py`` does so to ``exp/<tag>/publish_dir/`` for ``asteroid-upload``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def asteroid_package(package: dict) -> dict:
    """Our ``serialize`` package (model ``ConvTasNetVariant``) -> one that plain asteroid loads.

    asteroid's ``ConvTasNet`` accepts every argument of ours (``who_is_pinv`` goes
    to ``make_enc_dec``), so naming the model ``ConvTasNet`` is enough for
    ``asteroid.models.BaseModel.from_pretrained`` to rebuild it without this recipe
    installed. ``who_is_pinv`` stays in ``model_args``, so the variant survives
    whether or not asteroid takes the upstream patch. Converting twice changes nothing.
    """
    out = dict(package)
    out["model_name"] = "ConvTasNet"
    args = dict(package["model_args"])
    args.setdefault("who_is_pinv", None)
    out["model_args"] = args
    infos = dict(package.get("infos", {}))
    infos.setdefault("recipe_model_name", package["model_name"])
    out["infos"] = infos
    return out


def as_asteroid_export(folder: str | os.PathLike, dataset: Optional[str] = None) -> None:
    """Rewrite an export (``local.export``) for asteroid: ``model.pth`` and ``model.safetensors`` +
    ``model.json`` as :func:`asteroid_package`, with asteroid's ``dataset`` and ``licenses`` fields
    for ``dataset`` (default: the one the export recorded), and the model card (``README.md``) for
    the model name asteroid sees and that corpus's licence."""
    import json

    import torch

    from local.callbacks import atomic_torch_save
    from local.config import load_raw
    from local.export import model_card, write_safetensors_package
    from local.model_card import DATA_LICENSES, dataset_key

    folder = Path(folder)
    path = folder / "model.pth"
    package = asteroid_package(torch.load(path, map_location="cpu", weights_only=True))
    dataset = dataset or package["infos"].get("dataset")
    if dataset:
        package["dataset"] = dataset
        package["licenses"] = [DATA_LICENSES[key] for key in [dataset_key(dataset)] if key]
    atomic_torch_save(package, path)
    write_safetensors_package(package, path.with_name("model.safetensors"))
    conf_path, metrics = folder / "conf.yml", json.loads((folder / "metrics.json").read_text())
    (folder / "README.md").write_text(model_card(load_raw(conf_path), package, metrics, folder.parent.name,
                                                 conf_text=conf_path.read_text(), dataset=dataset))
