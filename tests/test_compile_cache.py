"""torch.compile's kernel cache is keyed by thread count and CPU (local.compile_cache)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from local import compile_cache
from local.compile_cache import ENV, PREFIX, base_cache_dir, cache_key, use_keyed_cache
from local.system import compile_forward

ROOT = Path(__file__).resolve().parents[1]


def test_the_key_changes_with_threads_isa_overrides_and_cpu_and_repeats_otherwise(monkeypatch):
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    one, two = cache_key(1), cache_key(2)
    assert one.startswith(PREFIX + "1t-") and two.startswith(PREFIX + "2t-")
    assert cache_key(1) == one  # same settings: the same folder, so a run reuses its own kernels
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    avx2 = cache_key(1)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert len({one, avx2, cache_key(1)}) == 3
    monkeypatch.setattr(compile_cache, "_cpu_description", lambda: "model name\t: another CPU")
    assert cache_key(1) not in {one, avx2}


def test_the_cache_goes_under_the_users_folder_and_a_child_process_does_not_nest_it(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path / "mine"))
    folder = use_keyed_cache(threads=3)
    assert folder == tmp_path / "mine" / cache_key(3)
    assert os.environ[ENV] == str(folder)
    assert base_cache_dir() == tmp_path / "mine"  # what an inheriting child process sees
    assert use_keyed_cache(threads=1) == tmp_path / "mine" / cache_key(1)


def test_without_a_users_folder_the_cache_goes_under_inductors_default(monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.delenv(ENV, raising=False)
    assert use_keyed_cache(threads=2) == Path(default_cache_dir()) / cache_key(2)


def test_compiling_points_the_cache_at_this_processs_thread_count(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path))
    monkeypatch.setattr("local.system.has_cxx_compiler", lambda: True)
    compile_forward(torch.nn.Linear(2, 2))  # lazy: nothing is compiled before the first call
    assert os.environ[ENV] == str(tmp_path / cache_key(torch.get_num_threads()))


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "clang++", "c++")), reason="needs a C++ compiler")
def test_kernels_built_at_one_thread_land_in_the_one_thread_folder_only(tmp_path):
    script = (
        "import torch\n"
        "from local.system import compile_forward\n"
        "torch.set_num_threads(1)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.PReLU())\n"
        "forward = compile_forward(model)\n"
        "forward(torch.randn(8, 64)).sum().backward()\n"
    )
    env = {**os.environ, ENV: str(tmp_path), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=ROOT, timeout=600)
    made = [p.name for p in tmp_path.iterdir()]
    assert made == [cache_key(1)], made
    assert any((tmp_path / made[0]).rglob("*.py")), "no compiled kernels were written to the keyed folder"
