"""Model card (the exported README.md) in asteroid's template.

asteroid's ``model_card_template.md`` (repository root) asks for: front matter with
the tags ``asteroid`` and ``audio``, the model name, the dataset and task names, a
licence and ``inference: false``; then a description naming the recipe and the
dataset, the training config, the results (``final_metrics.json``) and a licence
notice that credits the data the model derives from. ``model_card()`` fills every
field from the experiment, and adds what this recipe knows beyond the template
(variant, size, receptive field, files and how to load them, intended use).

    from local.model_card import model_card
    text = model_card(conf, package, metrics, exp_name="paper_best", dataset="wsj0-2mix")

Pure text: no torch, no file I/O (``local.export`` writes the result).
"""

from __future__ import annotations

from typing import Optional

RECIPE_NAME = "wsj0-2mix/ConvTasNet"  # the recipe, as asteroid's publish_dir/recipe_name.txt names it
TASK_NAME = "sep_clean"  # asteroid's name for clean two-speaker separation (WHAM / wsj0-mix)
MODEL_LICENSE = "cc-by-sa-3.0"  # what asteroid's template (and its model hub) uses for shared models
MODEL_LICENSE_TEXT = ("[Attribution-ShareAlike 3.0 Unported]"
                      "(https://creativecommons.org/licenses/by-sa/3.0/)")

# The data each corpus derives from, with its licence (the same fields as asteroid's
# ``asteroid.data.wsj0_mix.wsj0_license``).
DATA_LICENSES = {
    "wsj0-mix": dict(
        title="CSR-I (WSJ0) Complete",
        title_link="https://catalog.ldc.upenn.edu/LDC93S6A",
        author="LDC",
        author_link="https://www.ldc.upenn.edu/",
        license="LDC User Agreement for Non-Members",
        license_link="https://catalog.ldc.upenn.edu/license/ldc-non-members-agreement.pdf",
        non_commercial=True,
    ),
    "librimix": dict(  # as asteroid.data.librimix_dataset.librispeech_license (clean LibriMix)
        title="LibriSpeech ASR corpus",
        title_link="http://www.openslr.org/12",
        author="Vassil Panayotov",
        author_link="https://github.com/vdp",
        license="CC BY 4.0",
        license_link="https://creativecommons.org/licenses/by/4.0/",
        non_commercial=False,
    ),
    "demo": dict(
        title="the built-in demo corpus (speech synthesised with eSpeak NG)",
        title_link="https://github.com/espeak-ng/espeak-ng",
        author="the eSpeak NG contributors",
        author_link="https://github.com/espeak-ng/espeak-ng/graphs/contributors",
        license="GPL-3.0 (eSpeak NG and its voice data)",
        license_link="https://github.com/espeak-ng/espeak-ng/blob/master/COPYING",
        non_commercial=False,
    ),
}


def dataset_key(dataset: Optional[str]) -> Optional[str]:
    """Licence key of a corpus name: wsj0-2mix, wsj0-3mix -> wsj0-mix; libri2mix... -> librimix; demo."""
    if not dataset:
        return None
    name = dataset.lower()
    if name.startswith("wsj0"):
        return "wsj0-mix"
    if "librimix" in name or name.startswith(("libri2mix", "libri3mix")):
        return "librimix"
    return name if name in DATA_LICENSES else None


def license_notice(model_title: str, dataset: Optional[str], uploader: Optional[str] = None) -> str:
    """asteroid's licence notice: the model is a derivative of the data, under the data's licence."""
    who = uploader or "its authors"
    info = DATA_LICENSES.get(dataset_key(dataset) or "")
    if info is None:
        data_part = (f"the `{dataset}` corpus, used under that corpus's licence (see its documentation)"
                     if dataset else "its training corpus, used under that corpus's licence")
    else:
        data_part = (f"[{info['title']}]({info['title_link']}) by [{info['author']}]({info['author_link']}), "
                     f"used under [{info['license']}]({info['license_link']})")
        if info["non_commercial"]:
            data_part += " (non-commercial use)"
    return (f'This work "{model_title}" is a derivative of {data_part}. "{model_title}" is licensed under '
            f"{MODEL_LICENSE_TEXT} by {who}.")


def _metrics_yaml(metrics: dict) -> str:
    lines = []
    for key, value in metrics.items():
        if isinstance(value, float):
            lines.append(f"{key}: {value:.4f}")
        elif isinstance(value, (int, str, bool)) or value is None:
            lines.append(f"{key}: {value}")
    return "\n".join(lines) if lines else "# not evaluated"


# What a model trained on the demo corpus is, said where its users look: the card, the README,
# and local.separate's output (issue 20: on 100 mixtures of recorded human voices, 8 kHz and
# wsj0-2mix mixing rules, where the ideal binary mask reaches 11.5 dB, the demo model scored
# -0.8 dB SI-SNRi, STOI 0.72 -> 0.66, while reaching 8.3 dB on eSpeak test voices; the
# 14-minute budget reached 7.1 dB on a machine at 4.3 steps/s, and that model 3.0 dB on the
# held-out Flite test set, README).
DEMO_MODEL_NOTICE = (
    "This model was trained on the built-in demo corpus: speech synthesised with eSpeak NG, not "
    "recorded voices. It shows the pipeline working; it is not a separator for real recordings: "
    "on 100 two-speaker mixtures of recorded human voices (8 kHz, wsj0-2mix mixing rules) it scored "
    "-0.8 dB SI-SNRi, i.e. it made them worse, against 7-8 dB on eSpeak voices it never heard and "
    "about 3 dB on Flite voices (built from recordings of real speakers) it never heard. "
    "For real speech, train on wsj0-2mix or LibriMix (./run.sh --corpus wsj0-2mix | librimix)."
)


def is_demo_model(infos: dict) -> bool:
    """Whether a model package's ``infos`` say it was trained on the demo corpus."""
    return dataset_key(infos.get("dataset")) == "demo"


def model_card(conf: dict, package: dict, metrics: dict, exp_name: str, conf_text: Optional[str] = None,
               dataset: Optional[str] = None, uploader: Optional[str] = None) -> str:
    """The exported README.md: asteroid's template, filled in, plus this recipe's details.

    Args:
        conf: the resolved training config (``exp/<tag>/conf.yml``).
        package: asteroid ``serialize`` dictionary of the model (``model_args``, ``state_dict``).
        metrics: summary of the evaluation stage (``eval/metrics.json``).
        exp_name: experiment name, used as the card's title.
        conf_text: the config file's text as written (comments kept); default: ``conf`` dumped.
        dataset: corpus name (``wsj0-2mix``, ``demo``...); picks the data licence notice.
        uploader: who shares the model (the template's "[your name]").
    """
    from local.evaluate import format_table
    from local.model import receptive_field_seconds

    fb, mn, data = conf["filterbank"], conf["masknet"], conf["data"]
    args = package["model_args"]
    n_params = sum(v.numel() for k, v in package["state_dict"].items()
                   if not k.startswith("encoder.filterbank") or args.get("who_is_pinv") != "encoder")
    rf = receptive_field_seconds(fb["kernel_size"], fb["stride"], mn["conv_kernel_size"],
                                 mn["n_blocks"], mn["n_repeats"], data["sample_rate"])
    metrics_list = [m for m in ("si_sdr", "sdr", "stoi") if m in metrics]
    table = format_table(metrics, metrics_list) if metrics_list else "(not evaluated)"
    if conf_text is None:
        import yaml

        conf_text = yaml.safe_dump(conf, sort_keys=False)
    dataset_name = dataset or "unknown"
    model_title = f"ConvTasNet_{dataset_name}_{exp_name}"
    model_name = package.get("model_name", "ConvTasNet")
    tags = ["asteroid", "audio", "ConvTasNet", "audio-to-audio"]
    if model_name != "ConvTasNet":
        tags.insert(3, model_name)
    front = "\n".join(["---", "tags:", *[f"- {t}" for t in tags], "datasets:", f"- {dataset_name}",
                       f"- {TASK_NAME}", f"license: {MODEL_LICENSE}", "inference: false", "---"])
    by = f"by {uploader} " if uploader else ""
    return f"""{front}

# Conv-TasNet ({exp_name})

## Description

This model was trained {by}using the `{RECIPE_NAME}` recipe (Conv-TasNet recipe, an asteroid
plugin; Luo & Mesgarani, 2019, time-domain two-speaker separation).
It was trained on the `{TASK_NAME}` task of the `{dataset_name}` dataset.
{chr(10) + "**What it is for.** " + DEMO_MODEL_NOTICE + chr(10) if dataset_key(dataset) == "demo" else ""}
## Variant

| | |
|---|---|
| encoder | {fb['encoder_activation']}{' (pseudo-inverse of the decoder)' if fb['who_is_pinv'] == 'encoder' else ''} |
| decoder | {'pseudo-inverse of the encoder' if fb['who_is_pinv'] == 'decoder' else 'learned'} |
| mask | {mn['mask_act']} |
| N, L, stride | {fb['n_filters']}, {fb['kernel_size']}, {fb['stride']} |
| B, H, Sc, P, X, R | {mn['bn_chan']}, {mn['hid_chan']}, {mn['skip_chan']}, {mn['conv_kernel_size']}, {mn['n_blocks']}, {mn['n_repeats']} |
| norm, causal | {mn['norm_type']}, {mn['causal']} |
| parameters | {n_params:,} |
| receptive field | {rf:.2f} s |
| sample rate, sources | {data['sample_rate']} Hz, {data['n_src']} |

## Data and results

Test set: `{metrics.get('test_set', '?')}` ({metrics.get('n_utterances', 0)} utterances).

{table}

## Results

```yaml
{_metrics_yaml(metrics)}
```

## Training config

```yaml
{conf_text.strip()}
```

## Files and use

| file | what | loads with |
|---|---|---|
| `model.safetensors` + `model.json` | weights + model arguments (no pickle) | `local.separate.load_separator(<this folder>)` |
| `model.pth` | asteroid `serialize` package | `ConvTasNet.from_pretrained("model.pth")` |
| `model.ts` | TorchScript, (batch, time) -> (batch, n_src, time) | `torch.jit.load("model.ts")` |

```python
from asteroid.models import ConvTasNet
model = ConvTasNet.from_pretrained("model.pth")  # plain asteroid, no recipe code needed
```

or, with the recipe: `python -m local.separate --model <this folder> input.wav --out-dir out/`
(any sample rate, `--channels downmix|each`, long files in chunks).

Intended use: research on speech separation. The model was trained on the
corpus named above only; expect lower quality on real recordings, noise or
reverberation it never heard.

## License notice

{license_notice(model_title, dataset, uploader)}
"""
