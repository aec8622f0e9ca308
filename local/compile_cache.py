"""Where ``torch.compile`` keeps its kernels: one cache folder per CPU, thread count and torch build.

Inductor's C++ kernels hard-code the thread count they were generated for
(``#pragma omp parallel num_threads(2)``) and the vector ISA of the CPU that built them,
but its on-disk cache (``$TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``)
is not keyed by either. After a 2-thread ``./run.sh``, a 1-thread run reused the 2-thread
kernels and took 2596 ms per compiled step against 461 ms eager (317 ms with a cache made
at 1 thread), and the same can happen with a cache copied between machines or made under
``ATEN_CPU_CAPABILITY=avx2``. So every compiling process points the cache at a subfolder
named after what the kernels depend on; a run never picks up kernels built for another
thread count or CPU, and a run with the same settings still reuses its own.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

ENV = "TORCHINDUCTOR_CACHE_DIR"
PREFIX = "recipe-"  # marks a folder this module made, so a child process does not nest a second one


def _cpu_description() -> str:
    """The CPU model and feature flags (Linux ``/proc/cpuinfo``), or the platform's processor string."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags", "Features", "CPU part")
    picked = []
    for line in lines:
        name = line.split(":", 1)[0].strip()
        if name in wanted and line not in picked:
            picked.append(line)
        if not line.strip() and picked:  # the first processor's block is enough
            break
    return "\n".join(picked) or platform.machine()


def cpu_model() -> str:
    """``lscpu``'s model name, with family/model/stepping and the vector extensions torch uses."""
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    except (OSError, subprocess.CalledProcessError):
        pass
    name = info.get("Model name") or platform.processor() or "unknown CPU"
    flags = set(info.get("Flags", "").split())
    ext = [f for f in ("avx512f", "avx512_bf16", "amx_tile", "avx2") if f in flags]
    detail = ", ".join(p for p in (f"family {info['CPU family']}" if "CPU family" in info else "",
                                   f"model {info['Model']}" if "Model" in info else "",
                                   "/".join(ext)) if p)
    return f"{name} ({detail})" if detail else name


def cache_key(threads: int) -> str:
    """``recipe-<threads>t-<isa>-<hash>``: the hash covers the CPU, the ISA overrides and torch's build."""
    import torch

    isa = torch.backends.cpu.get_cpu_capability().lower()  # follows ATEN_CPU_CAPABILITY
    parts = [
        _cpu_description(),
        f"torch={torch.__version__}",
        f"cuda={torch.version.cuda}",
        f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '')}",
        f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '')}",
    ]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:10]
    return f"{PREFIX}{int(threads)}t-{isa}-{digest}"


def base_cache_dir() -> Path:
    """The user's cache root: ``$TORCHINDUCTOR_CACHE_DIR`` (less a keyed folder we set) or inductor's default."""
    current = os.environ.get(ENV)
    if current:
        path = Path(current)
        return path.parent if path.name.startswith(PREFIX) else path
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return Path(default_cache_dir())


def use_keyed_cache(threads: int | None = None) -> Path:
    """Point this process's (and its children's) inductor cache at the folder for this CPU and thread count.

    Call before the first compiled call: inductor reads the variable whenever it opens its cache.
    """
    import torch

    folder = base_cache_dir() / cache_key(torch.get_num_threads() if threads is None else threads)
    os.environ[ENV] = str(folder)
    return folder
