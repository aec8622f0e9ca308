"""Evaluate the best model on the test set; save examples and the publishable model.

    python eval.py --exp_dir exp/my_exp --test_dir data/2speakers/wav8k/min/tt [--use_gpu 1]

Writes into ``exp_dir``: ``all_metrics.csv`` (one row per utterance),
``final_metrics.json`` (means and improvements over the mixture), ``examples/ex_<i>/``
and ``publish_dir/`` (``model.pth`` from asteroid's ``save_publishable`` and a
``README.md`` model card in asteroid's template).
"""
import argparse
import importlib.util
import json
import os
import random
from pprint import pprint

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import yaml
from tqdm import tqdm

import asteroid
from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr
from asteroid.metrics import get_metrics
from asteroid.models import ConvTasNet, save_publishable
from asteroid.utils import tensors_to_device

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


RECIPE = "wsj0-2mix/ConvTasNetVariants"

parser = argparse.ArgumentParser()
parser.add_argument(
    "--test_dir", type=str, required=True, help="Test directory including the json files"
)
parser.add_argument(
    "--use_gpu", type=int, default=0, help="Whether to use the GPU for model execution"
)
parser.add_argument("--exp_dir", default="exp/tmp", help="Experiment root")
parser.add_argument(
    "--n_save_ex", type=int, default=10, help="Number of audio examples to save, -1 means all"
)

compute_metrics = ["si_sdr", "sdr", "sir", "sar", "stoi"]


def main(conf, train_conf):
    model_path = os.path.join(conf["exp_dir"], "best_model.pth")
    model = ConvTasNet.from_pretrained(model_path)
    # Handle device placement
    if conf["use_gpu"] and torch.cuda.is_available():
        model.cuda()
    model.eval()
    model_device = next(model.parameters()).device
    sample_rate = train_conf["data"]["sample_rate"]
    test_set = Wsj0mixDataset(
        conf["test_dir"], n_src=train_conf["data"]["n_src"], sample_rate=sample_rate, segment=None
    )  # Uses all segment length
    # Used to reorder sources only
    loss_func = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")

    # Choose the indexes of sentences to save (the same ones on every run).
    ex_save_dir = os.path.join(conf["exp_dir"], "examples/")
    n_save = len(test_set) if conf["n_save_ex"] == -1 else min(conf["n_save_ex"], len(test_set))
    save_idx = set(random.Random(0).sample(range(len(test_set)), n_save))
    series_list = []
    with torch.no_grad():
        for idx in tqdm(range(len(test_set))):
            # Forward the network on the mixture.
            mix, sources = tensors_to_device(test_set[idx], device=model_device)
            est_sources = model(mix[None])
            loss, reordered_sources = loss_func(est_sources, sources[None], return_est=True)
            mix_np = mix[None].cpu().data.numpy()
            sources_np = sources.cpu().data.numpy()
            est_sources_np = reordered_sources.squeeze(0).cpu().data.numpy()
            utt_metrics = get_metrics(
                mix_np,
                sources_np,
                est_sources_np,
                sample_rate=sample_rate,
                metrics_list=compute_metrics,
            )
            utt_metrics = {k: float(v) for k, v in utt_metrics.items()}
            utt_metrics["mix_path"] = test_set.mix[idx][0]
            series_list.append(pd.Series(utt_metrics))

            # Save some examples in a folder. Wav files and metrics as text.
            if idx in save_idx:
                local_save_dir = os.path.join(ex_save_dir, "ex_{}/".format(idx))
                os.makedirs(local_save_dir, exist_ok=True)
                sf.write(local_save_dir + "mixture.wav", mix_np[0], sample_rate)
                # Loop over the sources and estimates
                for src_idx, src in enumerate(sources_np):
                    sf.write(local_save_dir + "s{}.wav".format(src_idx + 1), src, sample_rate)
                for src_idx, est_src in enumerate(est_sources_np):
                    est_src *= np.max(np.abs(mix_np)) / max(np.max(np.abs(est_src)), 1e-8)
                    sf.write(
                        local_save_dir + "s{}_estimate.wav".format(src_idx + 1),
                        est_src,
                        sample_rate,
                    )
                # Write local metrics to the example folder.
                with open(local_save_dir + "metrics.json", "w") as f:
                    json.dump(utt_metrics, f, indent=0)

    # Save all metrics to the experiment folder.
    all_metrics_df = pd.DataFrame(series_list)
    all_metrics_df.to_csv(os.path.join(conf["exp_dir"], "all_metrics.csv"))

    # Print and save summary metrics
    final_results = {}
    for metric_name in compute_metrics:
        input_metric_name = "input_" + metric_name
        ldf = all_metrics_df[metric_name] - all_metrics_df[input_metric_name]
        final_results[metric_name] = float(all_metrics_df[metric_name].mean())
        final_results[metric_name + "_imp"] = float(ldf.mean())
    print("Overall metrics :")
    pprint(final_results)
    with open(os.path.join(conf["exp_dir"], "final_metrics.json"), "w") as f:
        json.dump(final_results, f, indent=0)

    model_dict = torch.load(model_path, map_location="cpu", weights_only=True)
    publish_dir = os.path.join(conf["exp_dir"], "publish_dir")
    os.makedirs(publish_dir, exist_ok=True)
    publishable = save_publishable(
        publish_dir, model_dict, metrics=final_results, train_conf=train_conf, recipe=RECIPE
    )
    with open(os.path.join(publish_dir, "README.md"), "w") as f:
        f.write(model_card(publishable, train_conf, final_results))


def model_card(model_dict, train_conf, metrics):
    """asteroid's model_card_template.md, filled in."""
    dataset = model_dict.get("dataset", "wsj0-mix")
    task = model_dict.get("task", "sep_clean")
    name = f"ConvTasNet_{dataset}_{task}"
    data_notes = [
        f"[{lic['title']}]({lic['title_link']}) by [{lic['author']}]({lic['author_link']}), "
        f"used under [{lic['license']}]({lic['license_link']})"
        + (" (non-commercial use)" if lic.get("non_commercial") else "")
        for lic in model_dict.get("licenses", [])
    ]
    conf = {k: v for k, v in train_conf.items() if k not in ("main_args", "positional arguments")}
    return f"""---
tags:
- asteroid
- audio
- ConvTasNet
- audio-to-audio
datasets:
- {dataset}
- {task}
license: cc-by-sa-3.0
inference: false
---

## Description:
This model was trained using the {RECIPE} recipe in Asteroid.
It was trained on the `{task}` task of the {dataset} dataset.

## Training config:
```yaml
{yaml.safe_dump(conf, sort_keys=False).strip()}
```

## Results:
```yaml
{yaml.safe_dump(metrics, sort_keys=False).strip()}
```

## License notice:
This work "{name}" is a derivative of {" and ".join(data_notes) or "its training data"}.
"{name}" is licensed under
[Attribution-ShareAlike 3.0 Unported](https://creativecommons.org/licenses/by-sa/3.0/)
by its uploader.
"""


if __name__ == "__main__":
    args = parser.parse_args()
    arg_dic = dict(vars(args))

    # Load training config
    conf_path = os.path.join(args.exp_dir, "conf.yml")
    with open(conf_path) as f:
        train_conf = yaml.safe_load(f)
    main(arg_dic, train_conf)
