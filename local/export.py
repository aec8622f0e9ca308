"""Export a trained experiment as a self-contained model folder.

Usage (what ``./run.sh --stage 3 --stop-stage 3`` runs):

    python -m local.export --exp-dir exp/demo [--out-dir exp/demo/export]

The folder holds:
    model.safetensors  the weights (safetensors: tensors only, loading runs no code)
    model.json         what rebuilds the model around them: asteroid model name,
                       ``model_args``, infos (versions, test metrics); with
                       model.safetensors, the package needs no pickle at all
    model.pth          asteroid ``serialize`` package (weights + model_args + infos); loads with
                       ``asteroid.models.ConvTasNet.from_pretrained("model.pth")``; plain
                       tensors and strings only, so ``torch.load(weights_only=True)`` reads it
    model.ts           TorchScript (traced) model: ``torch.jit.load("model.ts")(wav)``,
                       ``wav`` of shape (batch, time) at the model's rate -> (batch, n_src, time);
                       runs without Python model code (C++ / other runtimes)
    conf.yml           the training config
    metrics.json       test metrics from the evaluation stage
    README.md          model card: variant, size, training config, data, results, intended use

``local.separate.load_separator("exp/demo/export")`` reads model.safetensors +
model.json (and falls back to model.pth with ``weights_only=True``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

log = logging.getLogger("local.export")
EXPORT_FILES = ("model.safetensors", "model.json", "model.pth", "model.ts", "conf.yml", "metrics.json", "README.md")


def write_safetensors_package(package: dict, weights_path: Path) -> None:
    """asteroid's ``serialize`` package as ``model.safetensors`` (weights) + ``model.json`` (the rest).

    Tensors that share storage (the Pinv variants' common basis) are stored
    once per name, as copies: safetensors refuses aliased tensors.
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in package["state_dict"].items()}
    save_file(tensors, str(weights_path), metadata={"format": "pt", "model_name": package["model_name"]})
    config = {"model_name": package["model_name"], "model_args": package["model_args"],
              "infos": package.get("infos", {})}
    weights_path.with_suffix(".json").write_text(json.dumps(config, indent=2, default=str))


def write_torchscript(package: dict, path: Path, seconds: float = 1.0) -> None:
    """Trace the model on a (1, time) input and save it; lengths and batch sizes stay free.

    TorchScript is deprecated in recent PyTorch but still the one format that
    ``torch`` alone (or libtorch in C++) runs without the model's Python code;
    ``tests/test_export.py`` checks the parity on other lengths and batch sizes.
    """
    import warnings

    import torch

    from local.model import load_model

    model = load_model(package).eval()
    example = torch.randn(1, int(seconds * model.sample_rate), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation notices and "tensor registered as constant"
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, help="experiment folder (trained and evaluated)")
    p.add_argument("--out-dir", default=None, help="export folder (default: <exp-dir>/export)")
    p.add_argument("--force", action="store_true", help="export again even if up to date")
    return p


def model_card(conf: dict, package: dict, metrics: dict, exp_name: str, conf_text: str | None = None) -> str:
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
    return f"""# Conv-TasNet ({exp_name})

Time-domain two-speaker separation (Luo & Mesgarani, 2019), trained with the
Conv-TasNet wsj0-2mix recipe on asteroid.

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
reverberation it never heard. If the data is wsj0-2mix, it derives from the
LDC WSJ0 corpus, whose licence applies.
"""


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import torch
    import yaml

    from local.stage_state import atomic_write_text, is_done, mark_done

    exp_dir = Path(args.exp_dir)
    out_dir = Path(args.out_dir) if args.out_dir else exp_dir / "export"
    model_path, conf_path, metrics_path = exp_dir / "best_model.pth", exp_dir / "conf.yml", exp_dir / "eval" / "metrics.json"
    for path, stage in ((model_path, 1), (conf_path, 1), (metrics_path, 2)):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found: run stage {stage} first (./run.sh --stage {stage})")
    marker = out_dir / ".done"
    inputs = [model_path, conf_path, metrics_path]
    complete = all((out_dir / name).is_file() for name in EXPORT_FILES)
    if not args.force and complete and is_done(marker, inputs):
        log.info("export is up to date in %s", out_dir)
        return 0
    with open(conf_path) as f:
        conf = yaml.safe_load(f)
    package = torch.load(model_path, map_location="cpu", weights_only=True)
    metrics = json.loads(metrics_path.read_text())
    package["infos"]["final_metrics"] = metrics

    # Build in a sibling temp folder, then swap it in: a killed export leaves
    # either the previous export or none, never half of one.
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    torch.save(package, tmp_dir / "model.pth")
    write_safetensors_package(package, tmp_dir / "model.safetensors")
    write_torchscript(package, tmp_dir / "model.ts")
    shutil.copyfile(conf_path, tmp_dir / "conf.yml")
    (tmp_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (tmp_dir / "README.md").write_text(model_card(conf, package, metrics, exp_dir.name,
                                                  conf_text=conf_path.read_text()))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp_dir, out_dir)
    mark_done(marker, inputs)
    log.info("exported %s", out_dir)
    print(f"model package: {out_dir}  (python -m local.separate --model {out_dir} your.wav --out-dir out/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
