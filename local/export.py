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
    model.ts           TorchScript: ``torch.jit.load("model.ts", map_location=device)(wav)``,
                       ``wav`` of shape (batch, time) at the model's rate -> (batch, n_src, time);
                       runs without Python model code (C++ / other runtimes). It is the scripted
                       fast inference graph (:class:`local.inference.FastConvTasNet`, not a trace of
                       asteroid's model, whose ``torch.tensor(..., device=output.device)`` a trace
                       freezes as a CPU constant), so it runs on any device; the model's geometry
                       is its extra file ``geometry.json``
    model.onnx         ONNX (opset 17), dynamic batch and length: onnxruntime runs it with no torch
                       (:mod:`local.onnx_export`; ``local.separate --model export/model.onnx``)
    model_stream.onnx  causal models only: one streaming step with the state as inputs and outputs
                       (``local.streaming.StreamingSeparator(path, engine="onnx")``)
    conf.yml           the training config
    metrics.json       test metrics from the evaluation stage
    README.md          model card in asteroid's template (local.model_card): tags, dataset,
                       variant, size, training config, results, data licence notice
    training_curves.png training and validation SI-SNR per epoch (when training wrote one)

``local.separate.load_separator("exp/demo/export")`` reads model.safetensors +
model.json (and falls back to model.pth with ``weights_only=True``).

The export refuses ``eval/metrics.json`` unless the evaluation's marker
(``eval/.done``, :mod:`local.stage_state`) records the current
``best_model.pth``: a card must not show another model's results. Every file
is serialised in memory and written with Python's own file calls, so a full
disk is an ``OSError`` (torch's C++ writers abort the process instead when
their write fails) and every file gets the same mode (``0666`` less the
umask, like any new file; safetensors' writer would make its file ``0600``).
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import logging
import os
import shutil
import sys
from pathlib import Path

log = logging.getLogger("local.export")
EXPORT_FILES = ("model.safetensors", "model.json", "model.pth", "model.ts", "model.onnx", "conf.yml", "metrics.json",
                "README.md")
#: written in addition for a causal model (masknet.causal: true)
STREAMING_FILES = ("model_stream.onnx",)


def export_files(causal: bool) -> tuple:
    """The files an export folder holds (the streaming step only for a causal model; the ONNX files
    only where ``onnx`` is installed, as the recipe's requirements have it)."""
    from local.onnx_export import onnx_available

    if not onnx_available():
        return tuple(name for name in EXPORT_FILES if not name.endswith(".onnx"))
    return EXPORT_FILES + (STREAMING_FILES if causal else ())


class ExportError(RuntimeError):
    """A model that one export format cannot represent (not a write error)."""


def write_safetensors_package(package: dict, weights_path: Path) -> None:
    """asteroid's ``serialize`` package as ``model.safetensors`` (weights) + ``model.json`` (the rest).

    Tensors that share storage (the Pinv variants' common basis) are stored
    once per name, as copies: safetensors refuses aliased tensors.
    """
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in package["state_dict"].items()}
    # save() to bytes, not save_file(): see the module docstring (write errors, file mode)
    weights_path.write_bytes(save(tensors, metadata={"format": "pt", "model_name": package["model_name"]}))
    config = {"model_name": package["model_name"], "model_args": package["model_args"],
              "infos": package.get("infos", {})}
    weights_path.with_suffix(".json").write_text(json.dumps(config, indent=2, default=str))


def training_infos(package: dict) -> dict:
    """What ``model.ts`` and ``model.onnx`` carry of the package's ``infos``: the training corpus,
    so that a file used on its own still tells ``local.separate`` it is a demo model."""
    return {"dataset": package.get("infos", {}).get("dataset")}


def write_torchscript(package: dict, path: Path) -> None:
    """``torch.jit.script`` of the fast inference graph; lengths, batch sizes and devices stay free.

    TorchScript is deprecated in recent PyTorch but still the one format that
    ``torch`` alone (or libtorch in C++) runs without the model's Python code;
    ``tests/test_export.py`` checks the parity on other lengths and batch sizes and that
    the graph holds no device constant.
    """
    import torch

    from local.inference import FastConvTasNet, model_geometry
    from local.model import load_model

    model = load_model(package).eval()
    scripted = torch.jit.script(FastConvTasNet(model))
    extra = {"geometry.json": json.dumps(model_geometry(model)), "infos.json": json.dumps(training_infos(package))}
    path.write_bytes(_serialised(lambda obj, f: torch.jit.save(obj, f, _extra_files=extra), scripted))


def write_onnx(package: dict, folder: Path) -> None:
    """``model.onnx`` and, for a causal model, ``model_stream.onnx`` (see :mod:`local.onnx_export`)."""
    from local.model import load_model
    from local.onnx_export import offline_onnx_bytes, onnx_available, stream_onnx_bytes

    if not onnx_available():  # e.g. the asteroid-layout copy of this recipe in an environment without it
        log.warning("onnx is not installed: the export has no model.onnx (pip install onnx onnxruntime)")
        return
    model = load_model(package).eval()
    try:
        offline = offline_onnx_bytes(model, infos=training_infos(package))
        stream = stream_onnx_bytes(model, infos=training_infos(package)) if model.masker.causal else None
    except Exception as err:  # noqa: BLE001 - the exporter raises many types for an unsupported graph
        first = (str(err).strip().splitlines() or [""])[0]
        raise ExportError(f"the ONNX export failed ({type(err).__name__}: {first})") from None
    (folder / "model.onnx").write_bytes(offline)
    if stream is not None:
        (folder / "model_stream.onnx").write_bytes(stream)


def _serialised(save, obj) -> bytes:
    """``save(obj, file)`` into memory: a failing disk write then raises ``OSError`` in Python.

    torch's C++ stream writer aborts the whole process (``terminate called after
    throwing c10::Error``) when it cannot write to a full disk.
    """
    buffer = io.BytesIO()
    save(obj, buffer)
    return buffer.getvalue()


def write_package(folder: Path, exp_dir: Path, conf: dict, package: dict, metrics: dict) -> None:
    """Every file of the export into ``folder`` (see the module docstring)."""
    import torch

    conf_path = exp_dir / "conf.yml"
    (folder / "model.pth").write_bytes(_serialised(torch.save, package))
    write_safetensors_package(package, folder / "model.safetensors")
    write_torchscript(package, folder / "model.ts")
    write_onnx(package, folder)
    shutil.copyfile(conf_path, folder / "conf.yml")
    for optional in ("training_curves.png", "training_curves.csv"):  # from local.curves, if training made it
        if (exp_dir / optional).is_file():
            shutil.copyfile(exp_dir / optional, folder / optional)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (folder / "README.md").write_text(model_card(conf, package, metrics, exp_dir.name, conf_text=conf_path.read_text(),
                                                 dataset=package["infos"].get("dataset")))


def write_failure(err: BaseException) -> str:
    """A write error in a few words: "no space left on device" for a full disk."""
    if isinstance(err, OSError):
        if err.errno == errno.ENOSPC:
            return "no space left on device"
        return f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"{first}; is the disk full?"


def check_metrics_are_of(model_path: Path, metrics_path: Path) -> None:
    """``SystemExit`` unless the evaluation's marker records ``model_path`` as it is now.

    ``local.evaluate`` writes ``eval/.done`` last, with the size and mtime of the
    ``best_model.pth`` it scored (:func:`local.stage_state.mark_done`); any other
    state means ``metrics.json`` is not this model's, or not complete.
    """
    from local.stage_state import made_from

    marker = metrics_path.parent / ".done"
    current = made_from(marker, model_path)
    if current is None:
        raise SystemExit(f"error: {metrics_path} is not from a finished evaluation ({marker} is missing or "
                         "damaged): re-run stage 2 (./run.sh --stage 2 --stop-stage 2)")
    if not current:
        raise SystemExit(f"error: {metrics_path} is from an older best_model.pth: re-run stage 2 "
                         "(./run.sh --stage 2 --stop-stage 2)")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, help="experiment folder (trained and evaluated)")
    p.add_argument("--out-dir", default=None, help="export folder (default: <exp-dir>/export)")
    p.add_argument("--dataset", default=None,
                   help="corpus the model was trained on (demo, wsj0-2mix, librimix ...), recorded in the package "
                        "and named in the model card [the <corpus> of exp/<corpus>/<tag>]")
    p.add_argument("--force", action="store_true", help="export again even if up to date")
    return p


def model_card(conf: dict, package: dict, metrics: dict, exp_name: str, conf_text: str | None = None,
               dataset: str | None = None) -> str:
    """The export's README.md, in asteroid's model card template (see ``local.model_card``)."""
    from local.model_card import model_card as asteroid_model_card

    return asteroid_model_card(conf, package, metrics, exp_name, conf_text=conf_text, dataset=dataset)


def corpus_of(exp_dir: Path) -> str | None:
    """The corpus of run.sh's layouts, ``exp/<corpus>/<tag>`` and ``exp/<corpus>/<row>/seed<k>``, else None."""
    parts = exp_dir.resolve().parts
    for depth in (3, 4):
        if len(parts) > depth and parts[-depth] == "exp":
            return parts[-depth + 1]
    return None


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from local.stage_state import is_done, mark_done, same_settings

    exp_dir = Path(args.exp_dir)
    out_dir = Path(args.out_dir) if args.out_dir else exp_dir / "export"
    model_path, conf_path, metrics_path = exp_dir / "best_model.pth", exp_dir / "conf.yml", exp_dir / "eval" / "metrics.json"
    for path, stage in ((model_path, 1), (conf_path, 1), (metrics_path, 2)):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found: run stage {stage} first (./run.sh --stage {stage})")
    check_metrics_are_of(model_path, metrics_path)
    marker = out_dir / ".done"
    inputs = [model_path, conf_path, metrics_path]
    from local.config import ConfigError, load_raw
    from local.evaluate import one_line

    try:  # parsed, not validated again: the card shows the config the model was trained with
        conf = load_raw(conf_path)
    except ConfigError as err:
        raise SystemExit(f"error: {one_line(err)}") from None
    causal = bool(((conf if isinstance(conf, dict) else {}).get("masknet") or {}).get("causal", False))
    complete = all((out_dir / name).is_file() for name in export_files(causal))
    dataset = args.dataset or corpus_of(exp_dir)
    settings = {"dataset": dataset}  # another --dataset is another card and package: export again
    if not args.force and complete and is_done(marker, inputs) and same_settings(marker, settings):
        log.info("export is up to date in %s", out_dir)
        return 0
    from local.separate import ModelFileError, read_package

    try:
        package = read_package(model_path, remedy="train again (./run.sh --stage 1 --stop-stage 1 --force)")
    except ModelFileError as err:
        raise SystemExit(f"error: {err}") from None
    metrics = json.loads(metrics_path.read_text())
    package["infos"]["final_metrics"] = metrics
    package["infos"]["dataset"] = dataset

    # Build in a sibling temp folder, then swap it in: a killed export leaves
    # either the previous export or none, never half of one.
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    try:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir(parents=True)
        write_package(tmp_dir, exp_dir, conf, package, metrics)
    except ExportError as err:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise SystemExit(f"error: {err}: removed {tmp_dir}, {out_dir} is untouched") from None
    except (OSError, RuntimeError) as err:  # a full disk: OSError from Python's writes, RuntimeError from torch
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise SystemExit(f"error: could not write the export in {tmp_dir} ({write_failure(err)}): removed it, "
                         f"{out_dir} is untouched") from None
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp_dir, out_dir)
    try:
        mark_done(marker, inputs, settings=settings)
    except OSError as err:  # the export is complete; without its marker the next run just redoes it
        raise SystemExit(f"error: exported {out_dir} but could not write {marker} ({write_failure(err)})") from None
    log.info("exported %s", out_dir)
    print(f"model package: {out_dir}  (python -m local.separate --model {out_dir} your.wav --out-dir out/)")
    if causal:  # which streaming engine suits it is a property of its weights: say how to measure it
        print(f"streaming engines on your audio: python -m local.stream_check --model {out_dir} your.wav")
    return 0


if __name__ == "__main__":
    sys.exit(main())
