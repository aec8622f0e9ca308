"""Experiment configs: YAML files with inheritance, dotted overrides and validation.

One file fully determines an experiment. A file may start from another with
``base: other.yml`` (path relative to the file) and change only what differs;
overrides from the command line use dotted keys (``optim.lr=5e-4``).
Every key is checked against ``DEFAULTS`` so that a typo is an error naming
the key, not a silently ignored setting.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from local.stage_state import atomic_write_text
from local.variants import check_variant

# The complete schema: every section and key a config may set, with defaults.
# Comments give the paper's symbol where there is one.
DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {
        "sample_rate": 8000,  # fs; selects wav8k or wav16k
        "mode": "min",  # wsj0-2mix "min" (truncate) or "max" (zero-pad) mixtures
        "n_src": 2,  # C
        "segment": 4.0,  # training crop in seconds (paper: 4 s); null = whole utterances
        "min_segment": 1.0,  # shorter training utterances are dropped (seconds)
        "batch_size": 4,
        "num_workers": 2,
        "dynamic_mixing": False,  # remix training sources on the fly (new pairs and gains)
        "dm_snr_range": 2.5,  # dynamic mixing: relative level uniform in [-x, x] dB
        "dm_speed_range": 0.0,  # dynamic mixing: each source's speed (pitch and formants) x U[1-x, 1+x]
        "cache_sources": False,  # dynamic mixing: read every source file into memory before training
        "train_set": "tr",
        "valid_set": "cv",
        "test_set": "tt",
    },
    "filterbank": {
        "n_filters": 512,  # N
        "kernel_size": 16,  # L
        "stride": 8,  # L/2
        "encoder_activation": "linear",  # linear | relu | sigmoid
        "who_is_pinv": None,  # null | encoder (paper's Pinv row) | decoder
    },
    "masknet": {
        "bn_chan": 128,  # B
        "hid_chan": 512,  # H
        "skip_chan": 128,  # Sc
        "conv_kernel_size": 3,  # P
        "n_blocks": 8,  # X
        "n_repeats": 3,  # R
        "norm_type": "gLN",  # gLN (non-causal) | cgLN (causal: the paper's cumulative LN) | cLN (causal, per frame)
        "mask_act": "sigmoid",  # softmax | sigmoid | relu
        "causal": False,
    },
    "optim": {
        "optimizer": "adam",  # adam | adamw
        "lr": 1.0e-3,
        "weight_decay": 0.0,
    },
    "scheduler": {
        "name": "plateau",  # plateau (paper) | cosine | linear (warm-up, then that decay) | none
        "factor": 0.5,  # plateau: multiply lr by this ...
        "patience": 3,  # ... after this many epochs without val_loss improvement
        "warmup_steps": 0,  # cosine, linear: linear warm-up steps
        "min_lr_ratio": 0.01,  # cosine, linear: final lr / initial lr
    },
    "training": {
        "epochs": 100,
        "max_steps": -1,  # stop after this many optimizer steps (-1: no limit)
        "limit_train_batches": 1.0,  # batches per epoch (int) or fraction
        "gradient_clip_val": 5.0,
        "early_stop_patience": 10,  # epochs; 0 disables early stopping
        "save_top_k": 5,
        "average_best_k": 1,  # best_model.pth = mean weights of the k best checkpoints (1: the best one)
        "seed": 0,
        "accelerator": "auto",
        "devices": "auto",
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",
        "accumulate_grad_batches": 1,
        "log_every_n_steps": 50,
        "num_threads": 0,  # torch CPU threads; 0 = torch's default
        "max_nonfinite_batches": 20,  # NaN/inf-loss batches are skipped; stop after more than this many in a row
        "deterministic": False,  # Lightning's deterministic algorithms (needed for bitwise GPU repeats)
        "compile": False,  # torch.compile the training forward/backward (falls back to eager without a C++ compiler)
        "compile_fallback": True,  # a torch.compile failure: true = logged warning + eager training, false = stop
        "time_budget": None,  # wall-clock budget of training ("14m", "1h30m", seconds): fixes max_steps from the measured rate
        "time_budget_scope": "fit",  # what the budget counts: fit (Trainer.fit) or run (the whole ./run.sh command)
        "time_budget_after": None,  # scope run: kept for the stages after training in the same command (null: none)
    },
    "evaluation": {
        "n_examples": 5,  # utterances saved as wav for listening
        "compute_stoi": True,
        "compute_sdr": True,
    },
}


# Trainer arguments whose type carries meaning (int vs float vs str); passed through as written.
LIGHTNING_POLYMORPHIC = {"devices", "precision", "limit_train_batches", "strategy"}


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names it."""


def _suggest(key: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` updated recursively with ``override`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as f:
            loaded = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return loaded


def load_raw(path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """Read a config file and resolve its ``base:`` chain (no defaults, no checks)."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"config inheritance loops: {chain}")
    conf = _read_yaml(path)
    base = conf.pop("base", None)
    if base is None:
        return conf
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base: {base!r} must be the path of another config file "
                          "(relative to this one), e.g. base: paper_best.yml")
    base_conf = load_raw(path.parent / base, _seen=(*_seen, path))
    return deep_merge(base_conf, conf)


def parse_value(text: str) -> Any:
    """Parse an override's value the way YAML would (``1e-3``, ``null``, ``true``...)."""
    value = yaml.safe_load(text)
    # YAML 1.1 reads "1e-3" as a string; accept the float people mean.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(conf: dict, overrides: Iterable[str]) -> dict:
    """Apply ``section.key=value`` overrides; unknown keys are errors."""
    conf = copy.deepcopy(conf)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(f"override {item!r}: key must be section.key (e.g. optim.lr=5e-4)")
        section, key = parts
        conf.setdefault(section, {})[key] = parse_value(text)
    return conf


def validate(conf: dict, source: str = "config") -> dict:
    """Fill defaults and check names and types; returns the complete config."""
    for section, values in conf.items():
        if section not in DEFAULTS:
            raise ConfigError(f"{source}: unknown section {section!r}{_suggest(section, DEFAULTS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping")
        for key in values:
            if key not in DEFAULTS[section]:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}{_suggest(key, DEFAULTS[section])}"
                )
    full = deep_merge(DEFAULTS, conf)
    for section, defaults in DEFAULTS.items():
        for key, default in defaults.items():
            value = full[section][key]
            if default is None or value is None:
                continue
            expected = type(default)
            if key in LIGHTNING_POLYMORPHIC:
                # Lightning gives int and float different meanings here
                # (limit_train_batches=2 is two batches, 2.0 would be a fraction): keep the type.
                if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                    raise ConfigError(f"{source}: {section}.{key}={value!r} should be a number or string")
            elif expected is float and isinstance(value, int) and not isinstance(value, bool):
                full[section][key] = float(value)
            elif expected is float and isinstance(value, str) and _as_float(value) is not None:
                # YAML 1.1 reads "1e-3" (no dot) as a string; --set already accepts it as a float.
                full[section][key] = _as_float(value)
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(
                    f"{source}: {section}.{key}={value!r} should be {expected.__name__}"
                )
    _check_values(full, source)
    return full




_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(value) -> Optional[float]:
    """``"14m"``, ``"1h30m"``, ``"90s"``, ``"2m30s"`` or a number of seconds -> seconds (None: no budget).

    Raises ``ValueError`` naming the accepted forms.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration: write e.g. 14m, 1h30m, 90s or a number of seconds")
        seconds = sum(float(v) * _DURATION_UNITS[u] for v, u in zip(match.groups(), "hms") if v)
    if not seconds > 0:
        raise ValueError(f"{value!r}: a time budget must be positive")
    return seconds


def _as_float(text: str):
    try:
        return float(text)
    except ValueError:
        return None


# Allowed ranges of numeric settings: (section, key) -> (lowest, highest, lowest excluded).
# A value outside fails at config load, before any stage runs, naming the key.
RANGES = {
    ("data", "n_src"): (1, None, False),
    ("data", "segment"): (0, None, True),
    ("data", "min_segment"): (0, None, False),
    ("data", "batch_size"): (1, None, False),
    ("data", "num_workers"): (0, None, False),
    ("data", "dm_snr_range"): (0, None, False),
    ("filterbank", "n_filters"): (1, None, False),
    ("filterbank", "kernel_size"): (1, None, False),
    ("masknet", "bn_chan"): (1, None, False),
    ("masknet", "hid_chan"): (1, None, False),
    ("masknet", "skip_chan"): (0, None, False),
    ("masknet", "conv_kernel_size"): (1, None, False),
    ("masknet", "n_blocks"): (1, None, False),
    ("masknet", "n_repeats"): (1, None, False),
    ("optim", "lr"): (0, None, True),
    ("optim", "weight_decay"): (0, None, False),
    ("scheduler", "factor"): (0, 1, True),
    ("scheduler", "patience"): (0, None, False),
    ("scheduler", "warmup_steps"): (0, None, False),
    ("scheduler", "min_lr_ratio"): (0, 1, False),
    ("training", "epochs"): (1, None, False),
    ("training", "max_steps"): (-1, None, False),
    ("training", "gradient_clip_val"): (0, None, False),
    ("training", "early_stop_patience"): (0, None, False),
    ("training", "save_top_k"): (-1, None, False),
    ("training", "num_nodes"): (1, None, False),
    ("training", "accumulate_grad_batches"): (1, None, False),
    ("training", "log_every_n_steps"): (1, None, False),
    ("training", "num_threads"): (0, None, False),
    ("training", "max_nonfinite_batches"): (0, None, False),
    ("evaluation", "n_examples"): (0, None, False),
}


def _check_ranges(conf: dict, source: str) -> None:
    for (section, key), (low, high, open_low) in RANGES.items():
        value = conf[section][key]
        if value is None:
            continue
        below = value <= low if open_low else value < low
        if below or (high is not None and value > high):
            bound = f"{'>' if open_low else '>='} {low}" + (f" and <= {high}" if high is not None else "")
            raise ConfigError(f"{source}: {section}.{key}={value!r} must be {bound}")
    limit = conf["training"]["limit_train_batches"]
    if isinstance(limit, str) or limit <= 0:
        raise ConfigError(f"{source}: training.limit_train_batches={limit!r} must be a batch count (int >= 1) "
                          "or a fraction (0 < float <= 1)")
    if conf["training"]["max_steps"] == 0:
        raise ConfigError(f"{source}: training.max_steps=0 trains nothing: use -1 (no limit) or a step count")


def _check_values(conf: dict, source: str) -> None:
    _check_ranges(conf, source)
    data, fb = conf["data"], conf["filterbank"]
    if data["sample_rate"] not in (8000, 16000):
        raise ConfigError(f"{source}: data.sample_rate must be 8000 or 16000 (wsj0-2mix rates)")
    if data["mode"] not in ("min", "max"):
        raise ConfigError(f"{source}: data.mode must be 'min' or 'max'")
    if not 0.0 <= data["dm_speed_range"] < 0.5:
        raise ConfigError(f"{source}: data.dm_speed_range={data['dm_speed_range']} must be in [0, 0.5) "
                          "(0.1 plays each training source at 0.9-1.1 of its speed)")
    if data["cache_sources"] and not data["dynamic_mixing"]:
        raise ConfigError(f"{source}: data.cache_sources keeps dynamic mixing's source files in memory; "
                          "with data.dynamic_mixing=false nothing would use it (set one of them)")
    tc = conf["training"]
    try:
        parse_duration(tc["time_budget"])
    except ValueError as err:
        raise ConfigError(f"{source}: training.time_budget={err}") from None
    if tc["time_budget_scope"] not in ("fit", "run"):
        raise ConfigError(f"{source}: training.time_budget_scope={tc['time_budget_scope']!r} must be 'fit' "
                          "(the budget counts Trainer.fit) or 'run' (the whole ./run.sh command)")
    try:
        parse_duration(tc["time_budget_after"])
    except ValueError as err:
        raise ConfigError(f"{source}: training.time_budget_after={err}") from None
    if tc["time_budget_after"] is not None and tc["time_budget_scope"] != "run":
        raise ConfigError(f"{source}: training.time_budget_after keeps time for the stages after training out "
                          "of a whole run's budget: it needs training.time_budget_scope=run")
    if tc["time_budget"] is not None and tc["max_steps"] > 0:
        raise ConfigError(f"{source}: training.time_budget and training.max_steps both fix the number of steps: "
                          "set one (max_steps=N replays a budgeted run that chose N)")
    if tc["time_budget"] is not None and conf["scheduler"]["name"] == "plateau":
        raise ConfigError(f"{source}: training.time_budget fits a step-based schedule to the budget; "
                          "with scheduler.name=plateau there is none to fit (use cosine or linear, or a fixed budget)")
    if tc["average_best_k"] < 1:
        raise ConfigError(f"{source}: training.average_best_k={tc['average_best_k']} must be at least 1 "
                          "(1 keeps the best checkpoint)")
    if 0 <= tc["save_top_k"] < tc["average_best_k"]:
        raise ConfigError(f"{source}: training.average_best_k={tc['average_best_k']} needs at least that many "
                          f"checkpoints kept, but training.save_top_k={tc['save_top_k']}")
    if fb["stride"] <= 0 or fb["stride"] > fb["kernel_size"]:
        raise ConfigError(f"{source}: filterbank.stride must be in 1..kernel_size")
    if fb["who_is_pinv"] is not None and fb["n_filters"] < fb["kernel_size"]:
        raise ConfigError(
            f"{source}: a pseudo-inverse filterbank needs n_filters >= kernel_size "
            "(a complete basis) to reconstruct its input"
        )
    if conf["scheduler"]["name"] not in ("plateau", "cosine", "linear", "none"):
        raise ConfigError(f"{source}: scheduler.name must be plateau, cosine, linear or none")
    if conf["optim"]["optimizer"] not in ("adam", "adamw"):
        raise ConfigError(f"{source}: optim.optimizer must be adam or adamw")
    try:
        check_variant(
            encoder_activation=fb["encoder_activation"],
            mask_act=conf["masknet"]["mask_act"],
            who_is_pinv=fb["who_is_pinv"],
            norm_type=conf["masknet"]["norm_type"],
            causal=conf["masknet"]["causal"],
        )
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> dict:
    """Read, inherit, override, fill defaults and validate: the experiment's config."""
    raw = apply_overrides(load_raw(path), overrides)
    return validate(raw, source=str(path))


# Settings that may change between a run and its resumption or its re-evaluation without
# making it another experiment: where and how fast it runs, and how it is scored.
NOT_IDENTITY_KEYS = {("training", "devices"), ("training", "accelerator"), ("training", "num_nodes"),
                     ("training", "strategy"), ("training", "num_threads"), ("training", "compile_fallback"),
                     ("data", "num_workers")}
NOT_IDENTITY_SECTIONS = {"evaluation"}


def identity(conf: dict) -> dict:
    """The part of a complete config that defines the trained model (what a folder belongs to)."""
    return {s: {k: v for k, v in sec.items() if (s, k) not in NOT_IDENTITY_KEYS}
            for s, sec in conf.items() if s not in NOT_IDENTITY_SECTIONS}


def identity_diffs(saved: dict, conf: dict) -> list[str]:
    """``section.key: old -> new`` for every identity setting in which two complete configs differ."""
    old, new = identity(saved), identity(conf)
    return [f"{s}.{k}: {old.get(s, {}).get(k)!r} -> {v!r}"
            for s, sec in new.items() for k, v in sec.items() if old.get(s, {}).get(k) != v]


def read_experiment_config(path: str | os.PathLike) -> dict:
    """An experiment folder's ``conf.yml`` with the schema's defaults filled in (keys added
    to the schema after the folder was made take their defaults); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: train first (./run.sh --stage 1 --stop-stage 1)")
    try:
        return validate(_read_yaml(path), source=str(path))
    except ConfigError as err:
        raise ConfigError(f"{err} (the experiment's saved config is damaged: re-train with --force, "
                          "or restore the file)") from None


def save_config(conf: dict, path: str | os.PathLike) -> None:
    """Write the resolved config atomically (a killed write leaves the old file)."""
    atomic_write_text(path, yaml.safe_dump(conf, sort_keys=False))
