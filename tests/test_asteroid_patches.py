"""patches/asteroid/: each patch applies to asteroid 0.7.0 and does what it says.

The patches are applied to a copy of the installed asteroid package (and of
asteroid 0.7.0's setup.py) in tmp_path, never to the installed package; the
copy is put first on PYTHONPATH of a fresh interpreter.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PATCHES = REPO / "patches" / "asteroid"
PINV_PATCH = PATCHES / "0001-Keep-who_is_pinv-through-serialize-from_pretrained.patch"
REQUESTS_PATCH = PATCHES / "0002-Declare-requests-in-install_requires.patch"
LIBROSA_PATCH = PATCHES / "0003-Import-librosa-lazily-in-the-AVSpeech-dataset.patch"


def installed_asteroid() -> Path:
    import asteroid

    return Path(asteroid.__file__).resolve().parent


def copy_asteroid(dest: Path) -> Path:
    shutil.copytree(installed_asteroid(), dest / "asteroid", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def apply(patch: Path, root: Path, tool: str) -> None:
    if tool == "patch":
        cmd = ["patch", "-p1", "--forward", "--batch", "-d", str(root), "-i", str(patch)]
    else:
        cmd = ["git", "apply", "--verbose", str(patch)]
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# Run in a fresh interpreter with a given asteroid first on the path: a Pinv ConvTasNet through
# serialize/from_pretrained with asteroid alone, then our ConvTasNetVariant and the converted package.
CHECK = r"""
import json, sys, torch, asteroid
from asteroid.models import BaseModel, ConvTasNet
out = {"asteroid": asteroid.__file__}
torch.manual_seed(0)
m = ConvTasNet(n_src=2, n_filters=32, kernel_size=16, stride=8, n_blocks=2, n_repeats=1, bn_chan=8,
               hid_chan=16, skip_chan=8, encoder_activation="relu", who_is_pinv="encoder").eval()
pkg = m.serialize()
out["args_pinv"] = pkg["model_args"].get("who_is_pinv", "MISSING")
out["args_activation"] = pkg["model_args"].get("encoder_activation")
x = torch.randn(2, 1600)
with torch.no_grad():
    r = ConvTasNet.from_pretrained(pkg).eval()
    out["plain_same_output"] = bool(torch.allclose(r(x), m(x), atol=1e-6))
    out["plain_reloaded_pinv"] = bool(r.encoder.is_pinv)

from local.config import load_config
from local.model import ConvTasNetVariant, make_model, serialize_model
from local.upstream import asteroid_package
conf = load_config("tests/conf/micro.yml")
conf["filterbank"].update(who_is_pinv="encoder", encoder_activation="relu")
ours = make_model(conf).eval()
pkg = serialize_model(ours)
with torch.no_grad():
    ref = ours(x)
    results = []
    for loader, package in ((ConvTasNetVariant.from_pretrained, pkg), (BaseModel.from_pretrained, pkg),
                            (BaseModel.from_pretrained, asteroid_package(pkg))):
        package = {**package, "model_args": dict(package["model_args"])}
        r = loader(package).eval()
        results.append(bool(torch.allclose(r(x), ref, atol=1e-6)) and bool(r.encoder.is_pinv))
out["ours_same_output"] = results
print("RESULT " + json.dumps(out))
"""


def run_check(site: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert Path(out["asteroid"]).resolve().is_relative_to(site.resolve()), out["asteroid"]
    return out


@pytest.mark.parametrize("tool", ["patch", "git"])
def test_patches_apply_to_asteroid_0_7_0(tmp_path, tool):
    site = copy_asteroid(tmp_path)
    apply(PINV_PATCH, site, tool)
    assert "_who_is_pinv" in (site / "asteroid" / "models" / "base_models.py").read_text()
    assert (site / "tests" / "models" / "serialize_pinv_test.py").is_file()
    shutil.copy(PATCHES / "upstream-0.7.0" / "setup.py", tmp_path / "setup.py")
    apply(REQUESTS_PATCH, tmp_path, tool)
    apply(LIBROSA_PATCH, site, tool)
    assert "\nimport librosa\n" not in (site / "asteroid" / "data" / "avspeech_dataset.py").read_text()


def test_pinv_survives_round_trip_only_with_the_patch(tmp_path):
    pristine = run_check(copy_asteroid(tmp_path / "pristine"))
    # the bug: asteroid 0.7.0 forgets who_is_pinv and the reloaded model differs silently
    assert pristine["args_pinv"] == "MISSING"
    assert pristine["plain_same_output"] is False and pristine["plain_reloaded_pinv"] is False
    assert pristine["args_activation"] == "relu"  # the encoder activation already survives

    patched_site = copy_asteroid(tmp_path / "patched")
    apply(PINV_PATCH, patched_site, "patch")
    patched = run_check(patched_site)
    assert patched["args_pinv"] == "encoder"
    assert patched["plain_same_output"] is True and patched["plain_reloaded_pinv"] is True
    assert patched["args_activation"] == "relu"

    # our own code works with either asteroid
    assert pristine["ours_same_output"] == [True, True, True]
    assert patched["ours_same_output"] == [True, True, True]


def test_the_patch_ships_a_passing_upstream_test(tmp_path):
    site = copy_asteroid(tmp_path)
    apply(PINV_PATCH, site, "patch")
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/models/serialize_pinv_test.py"], cwd=site, env=env, capture_output=True,
                         text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "7 passed" in res.stdout


def install_requires(setup_py: Path) -> list:
    for node in ast.walk(ast.parse(setup_py.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            for kw in node.keywords:
                if kw.arg == "install_requires":
                    return ast.literal_eval(kw.value)
    raise AssertionError("no install_requires in setup.py")


def test_requests_patch_declares_what_asteroid_imports(tmp_path):
    # asteroid imports requests at import time of asteroid.models (via utils/hub_utils.py) ...
    hub_utils = (installed_asteroid() / "utils" / "hub_utils.py").read_text()
    assert "\nimport requests\n" in hub_utils
    # ... which asteroid 0.7.0's setup.py does not declare
    shutil.copy(PATCHES / "upstream-0.7.0" / "setup.py", tmp_path / "setup.py")
    before = install_requires(tmp_path / "setup.py")
    assert not any(r.split(">")[0].split("=")[0].strip() == "requests" for r in before)
    apply(REQUESTS_PATCH, tmp_path, "patch")
    after = install_requires(tmp_path / "setup.py")
    assert "requests" in after and len(after) == len(before) + 1


def test_asteroid_data_imports_without_librosa_only_with_the_patch(tmp_path):
    code = ("import sys; sys.modules['librosa'] = None\n"
            "from asteroid.data import Wsj0mixDataset, WhamDataset, LibriMix\n")

    def run(site):
        env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)

    pristine = run(copy_asteroid(tmp_path / "pristine"))
    assert pristine.returncode != 0 and "librosa" in pristine.stderr
    site = copy_asteroid(tmp_path / "patched")
    apply(LIBROSA_PATCH, site, "patch")
    patched = run(site)
    assert patched.returncode == 0, patched.stderr[-2000:]
    # and the upstream test the patch adds passes
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/data/optional_deps_test.py"], cwd=site, env=env, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0 and "1 passed" in res.stdout, res.stdout[-3000:] + res.stderr[-2000:]
