"""ONNX exports of a Conv-TasNet, and their runners through onnxruntime.

Usage:

    from local.onnx_export import export_offline, export_stream, OnnxSeparator
    export_offline(model, "model.onnx")              # (batch, time) -> (batch, n_src, time), both dynamic
    export_stream(causal_model, "model_stream.onnx")  # one streaming step, state in / state out
    sep = OnnxSeparator("model.onnx")                 # a callable like the torch model, no torch model code
    est = sep(torch.randn(1, 8000))

``local.export`` writes both into the export folder (the streaming step only for a
causal model); ``python -m local.separate --model export/model.onnx`` (or
``--backend onnx`` with the folder) separates with onnxruntime, and
``local.streaming.StreamingSeparator(path, engine="onnx")`` streams with
``model_stream.onnx``.

- ``model.onnx`` is :class:`local.inference.FastConvTasNet` with ``portable=True``: the same
  folded computation as the fast torch path, written with standard operators only
  (convolutions, matrix products, reductions; no in-place updates), traced by
  ``torch.onnx.export`` (the TorchScript-based exporter, ``dynamo=False``: the dynamo
  exporter needs ``onnxscript``, which the recipe does not install) at opset 17.
- ``model_stream.onnx`` is :class:`local.streaming.StreamStep`'s ``forward``: inputs
  ``chunk`` (batch, k * stride) for any ``k >= 1``, ``pending``, ``frames_done`` (float64),
  ``cache_<i>`` for every TCN block, ``sums_<j>`` (float64) for every norm and ``tail``;
  outputs ``out`` (batch, n_src, k * stride) and the same state names with ``new_``.
- Both carry the model's geometry (sample rate, window, hop, n_src, ...) as ONNX
  metadata (``metadata_props``), so a runner needs nothing but the file.

``tests/test_onnx.py`` checks both against PyTorch through onnxruntime (1e-4; observed ~1e-7).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

OPSET = 17
GEOMETRY_KEY = "conv_tasnet_geometry"
STREAM_KEY = "conv_tasnet_stream"
INFOS_KEY = "conv_tasnet_infos"  # what the model was trained on (local.export.training_infos)


def onnx_available() -> bool:
    """Whether the ``onnx`` package (needed to write the files; onnxruntime runs them) is installed."""
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


def _export_bytes(module, args: tuple, input_names, output_names, dynamic_axes) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes about shapes used as Python values, deprecation notices
        torch.onnx.export(module, args, buffer, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return buffer.getvalue()


def _with_metadata(data: bytes, metadata: dict) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def offline_onnx_bytes(model, seconds: float = 1.0, infos: Optional[dict] = None) -> bytes:
    """``model.onnx`` as bytes (see the module docstring); ``infos`` go into its metadata."""
    from local.inference import FastConvTasNet, model_geometry

    model = model.eval().cpu()
    module = FastConvTasNet(model, portable=True).eval()
    example = torch.randn(1, int(seconds * model.sample_rate), generator=torch.Generator().manual_seed(0))
    data = _export_bytes(module, (example,), ["wav"], ["sources"],
                         {"wav": {0: "batch", 1: "time"}, "sources": {0: "batch", 2: "time"}})
    return _with_metadata(data, {GEOMETRY_KEY: model_geometry(model), INFOS_KEY: infos or {}})


def stream_onnx_bytes(model, example_hops: int = 4, infos: Optional[dict] = None) -> bytes:
    """``model_stream.onnx`` as bytes (see the module docstring); ``model`` must be causal."""
    from local.inference import model_geometry
    from local.streaming import StreamStep

    model = model.eval().cpu()
    step = StreamStep(model).eval()
    pending, frames_done, caches, sums, tail = step.initial_state(1)
    chunk = torch.randn(1, example_hops * step.stride, generator=torch.Generator().manual_seed(0))
    n_caches, n_sums = len(caches), len(sums)
    names = (["chunk", "pending", "frames_done"] + [f"cache_{i}" for i in range(n_caches)]
             + [f"sums_{j}" for j in range(n_sums)] + ["tail"])
    outputs = ["out"] + ["new_" + n for n in names[1:]]
    dynamic = {"chunk": {0: "batch", 1: "samples"}, "out": {0: "batch", 2: "samples"}}
    for name in names[1:]:
        if name != "frames_done":
            dynamic[name] = {0: "batch"}
            dynamic["new_" + name] = {0: "batch"}
    data = _export_bytes(step, (chunk, pending, frames_done, caches, sums, tail), names, outputs, dynamic)
    stream = {"cache_sizes": step.cache_sizes, "hid_chan": step.hid_chan, "n_sums": n_sums,
              "kernel_size": step.kernel_size, "stride": step.stride, "n_src": step.n_src}
    return _with_metadata(data, {GEOMETRY_KEY: model_geometry(model), STREAM_KEY: stream, INFOS_KEY: infos or {}})


def export_offline(model, path: str | Path) -> None:
    Path(path).write_bytes(offline_onnx_bytes(model))


def export_stream(model, path: str | Path) -> None:
    Path(path).write_bytes(stream_onnx_bytes(model))


# ------------------------------------------------------------------ runners
def _session(path: str | Path, device: str = "cpu", threads: Optional[int] = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = ort.get_available_providers()
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ValueError(f"--device {device}: this onnxruntime has no CUDA provider ({', '.join(available)}); "
                             "install onnxruntime-gpu or run the ONNX model with --device cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), options, providers=providers)
    meta = session.get_modelmeta().custom_metadata_map
    return session, {k: json.loads(v) for k, v in meta.items()}


class OnnxSeparator:
    """``model.onnx`` through onnxruntime, called like the torch model: ``(time,)`` -> ``(n_src, time)``,
    ``(batch, time)`` -> ``(batch, n_src, time)`` (torch tensors in and out, on the CPU)."""

    is_prepared = True

    def __init__(self, path: str | Path, device: str = "cpu", threads: Optional[int] = None):
        self.path = Path(path)
        self.device = torch.device("cuda" if str(device).startswith("cuda") else "cpu")
        self.session, meta = _session(path, str(device), threads)
        if GEOMETRY_KEY not in meta:
            raise ValueError(f"{path}: no {GEOMETRY_KEY} metadata: not an export of this recipe")
        self.geometry = meta[GEOMETRY_KEY]
        self.sample_rate = float(self.geometry["sample_rate"])
        self.trained_on = meta.get(INFOS_KEY, {}).get("dataset")

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        wav = torch.as_tensor(wav, dtype=torch.float32)
        squeeze = wav.dim() == 1
        batch = wav.reshape(1, -1) if squeeze else wav.reshape(wav.shape[0], -1)
        out = self.session.run(None, {"wav": np.ascontiguousarray(batch.detach().cpu().numpy())})[0]
        out = torch.from_numpy(out)
        return out[0] if squeeze else out

    def eval(self):
        return self

    def to(self, device):
        if torch.device(device).type != self.device.type:
            return OnnxSeparator(self.path, str(device))
        return self


class OnnxStreamStep:
    """``model_stream.onnx`` through onnxruntime with :class:`local.streaming.StreamStep`'s interface."""

    def __init__(self, path: str | Path, threads: Optional[int] = None):
        self.session, meta = _session(path, "cpu", threads)
        if STREAM_KEY not in meta:
            raise ValueError(f"{path}: no {STREAM_KEY} metadata: not a streaming export of this recipe")
        info, geometry = meta[STREAM_KEY], meta[GEOMETRY_KEY]
        self.cache_sizes: List[int] = info["cache_sizes"]
        self.hid_chan, self.n_sums = int(info["hid_chan"]), int(info["n_sums"])
        self.kernel_size, self.stride, self.n_src = int(info["kernel_size"]), int(info["stride"]), int(info["n_src"])
        self.sample_rate = float(geometry["sample_rate"])
        self.geometry = geometry
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def initial_state(self, batch: int):
        overlap = self.kernel_size - self.stride
        caches = [torch.zeros(batch, size, self.hid_chan) for size in self.cache_sizes]
        sums = [torch.zeros(batch, 1, 2, dtype=torch.float64) for _ in range(self.n_sums)]
        return (torch.zeros(batch, overlap), torch.zeros(1, dtype=torch.float64), caches, sums,
                torch.zeros(batch, self.n_src, overlap))

    def __call__(self, chunk, pending, frames_done, caches, sums, tail):
        values = [chunk, pending, frames_done, *caches, *sums, tail]
        feed = {name: np.ascontiguousarray(v.cpu().numpy()) for name, v in zip(self.input_names, values)}
        res = [torch.from_numpy(r) for r in self.session.run(self.output_names, feed)]
        n_c = len(self.cache_sizes)
        return res[0], res[1], res[2], res[3:3 + n_c], res[3 + n_c:3 + n_c + self.n_sums], res[-1]
