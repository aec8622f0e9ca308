"""Train Conv-TasNet (or one of its encoder/decoder variants) on wsj0-2mix.

    python train.py --exp_dir exp/my_exp [--train_dir data/2speakers/wav8k/min/tr ...]

Every second-level key of ``local/conf.yml`` is a flag whose default is the
value in that file (e.g. ``--lr 5e-4 --who_is_pinv encoder --causal true``).
Writes into ``exp_dir``: ``conf.yml``, ``checkpoints/``, ``best_k_models.json``
and ``best_model.pth`` (asteroid's ``serialize`` format plus the dataset infos).
"""
import argparse
import importlib.util
import json
import os
from pprint import pprint

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader

import asteroid
from asteroid.engine.system import System
from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr
from asteroid.utils import parse_args_as_dict, prepare_parser_from_dict

from model import load_best_model, make_model_and_optimizer, serialize_model


def _wsj0mix_dataset():
    """asteroid's ``Wsj0mixDataset``, also where ``asteroid.data`` itself does not import.

    ``asteroid/data/__init__.py`` imports every dataset module, some with optional
    dependencies (librosa for AVSpeech); ``wsj0_mix.py`` needs none of them.
    """
    try:
        from asteroid.data.wsj0_mix import Wsj0mixDataset
    except ImportError:
        path = os.path.join(os.path.dirname(asteroid.__file__), "data", "wsj0_mix.py")
        spec = importlib.util.spec_from_file_location("asteroid_wsj0_mix", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        Wsj0mixDataset = module.Wsj0mixDataset
    return Wsj0mixDataset


Wsj0mixDataset = _wsj0mix_dataset()

HERE = os.path.dirname(os.path.abspath(__file__))

# Keys which are not in the conf.yml file can be added here.
# In the hierarchical dictionary created when parsing, the key `key` can be
# found at dic['main_args'][key]

# By default train.py will use all available GPUs. The `id` option in run.sh
# will limit the number of available GPUs for train.py .
parser = argparse.ArgumentParser()
parser.add_argument("--exp_dir", default="exp/tmp", help="Full path to save best validation model")


def main(conf):
    pl.seed_everything(conf["training"]["seed"], workers=True)
    data = conf["data"]
    train_set = Wsj0mixDataset(
        data["train_dir"], n_src=data["n_src"], sample_rate=data["sample_rate"], segment=data["segment"]
    )
    val_set = Wsj0mixDataset(
        data["valid_dir"], n_src=data["n_src"], sample_rate=data["sample_rate"], segment=data["segment"]
    )
    train_loader = DataLoader(
        train_set,
        shuffle=True,
        batch_size=conf["training"]["batch_size"],
        num_workers=conf["training"]["num_workers"],
        drop_last=True,
    )
    val_loader = DataLoader(
        val_set,
        shuffle=False,
        batch_size=conf["training"]["batch_size"],
        num_workers=conf["training"]["num_workers"],
        drop_last=True,
    )

    model, optimizer = make_model_and_optimizer(conf)
    scheduler = None
    if conf["training"]["half_lr"]:
        scheduler = ReduceLROnPlateau(
            optimizer=optimizer,
            factor=conf["training"]["lr_factor"],
            patience=conf["training"]["lr_patience"],
        )
    # Just after instantiating, save the args. Easy loading in the future.
    exp_dir = conf["main_args"]["exp_dir"]
    os.makedirs(exp_dir, exist_ok=True)
    conf_path = os.path.join(exp_dir, "conf.yml")
    with open(conf_path, "w") as outfile:
        yaml.safe_dump(conf, outfile)

    # Define Loss function.
    loss_func = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
    system = System(
        model=model,
        loss_func=loss_func,
        optimizer=optimizer,
        train_loader=train_loader,
        val_loader=val_loader,
        scheduler=scheduler,
        config=conf,
    )

    # Define callbacks
    callbacks = []
    checkpoint_dir = os.path.join(exp_dir, "checkpoints/")
    checkpoint = ModelCheckpoint(
        checkpoint_dir,
        monitor="val_loss",
        mode="min",
        save_top_k=conf["training"]["save_top_k"],
        verbose=True,
    )
    callbacks.append(checkpoint)
    if conf["training"]["early_stop"]:
        callbacks.append(
            EarlyStopping(
                monitor="val_loss",
                mode="min",
                patience=conf["training"]["early_stop_patience"],
                verbose=True,
            )
        )

    n_gpus = torch.cuda.device_count()
    trainer = pl.Trainer(
        max_epochs=conf["training"]["epochs"],
        callbacks=callbacks,
        default_root_dir=exp_dir,
        accelerator="gpu" if n_gpus else "cpu",
        strategy="ddp" if n_gpus > 1 else "auto",
        devices="auto",
        gradient_clip_val=conf["training"]["gradient_clip_val"],
    )
    trainer.fit(system)
    if trainer.global_rank != 0:
        return

    best_k = {k: v.item() for k, v in checkpoint.best_k_models.items()}
    with open(os.path.join(exp_dir, "best_k_models.json"), "w") as f:
        json.dump(best_k, f, indent=0)

    best_model = load_best_model(conf, exp_dir)
    to_save = serialize_model(best_model)
    to_save.update(train_set.get_infos())
    torch.save(to_save, os.path.join(exp_dir, "best_model.pth"))


if __name__ == "__main__":
    # We start with opening the config file conf.yml as a dictionary from
    # which we can create parsers. Each top level key in the dictionary defined
    # by the YAML file creates a group in the parser.
    with open(os.path.join(HERE, "local", "conf.yml")) as f:
        def_conf = yaml.safe_load(f)
    parser = prepare_parser_from_dict(def_conf, parser=parser)
    # Arguments are then parsed into a hierarchical dictionary (instead of
    # flat, as returned by argparse) to facilitate calls to the different
    # asteroid methods (see in main).
    arg_dic, plain_args = parse_args_as_dict(parser, return_plain_args=True)
    pprint(arg_dic)
    main(arg_dic)
