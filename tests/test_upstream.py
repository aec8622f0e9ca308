"""The asteroid-layout recipe folder written by ``python -m local.upstream``.

The folder runs this recipe's own modules (verbatim copies) behind thin asteroid glue; the
parity test runs it inside a copy of an asteroid tree and this recipe on the same micro
corpus, and compares what they produce.
"""

import argparse
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from local.config import load_config, read_experiment_config
from local.upstream import (DEFAULT_OUT, GLUE, GLUE_FILES, UpstreamError, check_self_contained, differences,
                            import_closure, main as upstream_main, recipe_files, write_recipe)

REPO = Path(__file__).resolve().parents[1]
MICRO = "tests/conf/micro.yml"
MICRO_PREP = ["--n-speakers", "4", "2", "2", "--utts-per-speaker", "3", "3", "3", "--n-mixtures", "8", "4", "4",
              "--quiet"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    out = tmp_path_factory.mktemp("up") / "egs" / "wsj0-2mix" / "ConvTasNetVariants"
    assert upstream_main(["--conf", "conf/paper_best.yml", "--out", str(out)]) == 0
    return out


def test_folder_has_asteroid_layout_and_verbatim_modules(recipe):
    files = {str(p.relative_to(recipe)) for p in recipe.rglob("*") if p.is_file()}
    assert set(GLUE_FILES.values()) | {"local/conf.yml", "local/__init__.py"} <= files
    assert "model.py" not in files  # the model is local/model.py, the recipe's own
    for rel in ("run.sh", "local/prepare_data.sh", "utils/parse_options.sh", "utils/prepare_python_env.sh"):
        assert os.access(recipe / rel, os.X_OK), rel
        subprocess.run(["bash", "-n", str(recipe / rel)], check=True)  # syntax
    run_sh = (recipe / "run.sh").read_text()
    assert ". utils/parse_options.sh" in run_sh and "@@" not in run_sh
    for stage in ("Stage 0", "Stage 1", "Stage 2"):
        assert stage in run_sh
    assert 'echo "wsj0-2mix/ConvTasNetVariants" > $expdir/publish_dir/recipe_name.txt' in run_sh
    copied = sorted(f for f in files if f.startswith("local/") and f.endswith(".py")
                    and f != "local/preprocess_wsj0mix.py")
    for rel in ("local/train.py", "local/evaluate.py", "local/export.py", "local/model.py", "local/config.py"):
        assert rel in copied, rel
    for rel in copied:  # byte for byte
        assert (recipe / rel).read_bytes() == (REPO / rel).read_bytes(), rel
    for rel in ("train.py", "eval.py"):
        assert (recipe / rel).read_bytes() == (GLUE / rel).read_bytes(), rel


def test_copied_tree_imports_nothing_outside_itself(recipe):
    """The closure computed on the generated folder alone: every local.* it imports is in the folder,
    every module of the folder is needed, and the rest is the standard library or installed packages."""
    modules, external = import_closure([recipe / "train.py", recipe / "eval.py"], root=recipe)
    in_folder = {f"local.{p.stem}" for p in (recipe / "local").glob("*.py")
                 if p.name not in ("__init__.py", "preprocess_wsj0mix.py")} | {"local"}
    assert set(modules) == in_folder
    assert {"asteroid", "pytorch_lightning", "torch", "yaml"} <= set(external)
    for name in external:
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{name} is not installed"
        origin = Path(spec.origin or next(iter(spec.submodule_search_locations))).resolve()
        assert not origin.is_relative_to(REPO) or ".venv" in origin.parts, (name, origin)
    # and the generator refuses a module that reaches into this repository
    with pytest.raises(UpstreamError, match="egs"):
        check_self_contained(["egs", "torch"])


def test_closure_follows_imports_in_functions_and_relative_ones(tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "__init__.py").write_text("")
    (tmp_path / "local" / "a.py").write_text("def f():\n    from .b import g\n    import numpy\n")
    (tmp_path / "local" / "b.py").write_text("import importlib\nimportlib.import_module('pystoi.stoi')\n")
    (tmp_path / "local" / "unused.py").write_text("")
    (tmp_path / "entry.py").write_text("import os\nfrom local import a\n")
    assert import_closure([tmp_path / "entry.py"], root=tmp_path) == (["local", "local.a", "local.b"],
                                                                      ["numpy", "pystoi"])
    (tmp_path / "local" / "b.py").write_text("from local.gone import x\n")
    with pytest.raises(UpstreamError, match="local.gone"):
        import_closure([tmp_path / "entry.py"], root=tmp_path)


def test_conf_yml_is_the_resolved_config_and_asteroid_parses_it(recipe):
    from asteroid.utils import parse_args_as_dict, prepare_parser_from_dict

    conf = yaml.safe_load((recipe / "local" / "conf.yml").read_text())
    assert conf == load_config("conf/paper_best.yml")
    assert load_config(recipe / "local" / "conf.yml") == conf
    parser = prepare_parser_from_dict(conf, parser=argparse.ArgumentParser())  # unique second-level keys
    parsed = parse_args_as_dict(parser, args=[])
    assert {k: parsed[k] for k in conf} == conf


def _glue_train(recipe):
    spec = importlib.util.spec_from_file_location("generated_recipe_train", recipe / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_py_translates_asteroid_flags(recipe):
    from local.train import get_parser, resolve_config

    args = _glue_train(recipe).recipe_args(
        ["--exp_dir", "exp/x", "--corpus_dir", "data/2speakers", "--lr", "5e-4", "--who_is_pinv", "encoder",
         "--causal", "true", "--norm_type", "cgLN", "--limit_train_batches", "2", "--encoder_activation", "None",
         "--devices", "1", "--force"])
    assert args[:6] == ["--conf", str(recipe / "local" / "conf.yml"), "--data-dir", "data/2speakers",
                        "--exp-dir", "exp/x"]
    assert args[-1] == "--force"  # local.train's own options pass through
    parsed = get_parser().parse_args(args)
    assert parsed.force
    conf = resolve_config(parsed)
    assert conf["optim"]["lr"] == 5e-4 and conf["filterbank"]["who_is_pinv"] == "encoder"
    assert conf["masknet"]["causal"] is True and conf["masknet"]["norm_type"] == "cgLN"
    assert conf["training"]["limit_train_batches"] == 2 and isinstance(conf["training"]["limit_train_batches"], int)
    assert conf["filterbank"]["encoder_activation"] is None and conf["training"]["devices"] == 1


def test_link_utils_and_no_clobber(tmp_path):
    conf = load_config("conf/paper_best.yml")
    out = tmp_path / "egs" / "wsj0-2mix" / "X"
    write_recipe(conf, out, link_utils=True)
    assert (out / "utils").is_symlink() and os.readlink(out / "utils") == "../../wham/ConvTasNet/utils"
    write_recipe(conf, out)  # regenerating over generated files is fine
    assert (out / "utils" / "parse_options.sh").is_file()
    (out / "exp").mkdir()
    with pytest.raises(UpstreamError, match="--force"):
        write_recipe(conf, out)
    write_recipe(conf, out, force=True)
    assert not (out / "exp").exists()


def _copy(package):
    return {**package, "model_args": dict(package["model_args"])}  # from_pretrained updates model_args


def test_our_export_loads_with_base_model_from_pretrained(tmp_path):
    """Our model.pth (ConvTasNetVariant) with our registered subclass, and converted for plain asteroid."""
    from asteroid.models import BaseModel

    from local.model import ConvTasNetVariant, make_model, serialize_model
    from local.publish import asteroid_package

    conf = load_config(MICRO)
    conf["filterbank"]["who_is_pinv"] = "encoder"
    conf["filterbank"]["encoder_activation"] = "relu"
    torch.manual_seed(0)
    model = make_model(conf).eval()
    package = serialize_model(model)
    x = torch.randn(2, 2400, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
        ours = BaseModel.from_pretrained(_copy(package)).eval()
        assert isinstance(ours, ConvTasNetVariant)
        assert torch.allclose(ours(x), ref, atol=1e-6)

    # converted package: loads in a fresh interpreter that never imports this repository
    torch.save(package, tmp_path / "ours.pth")
    assert upstream_main(["--convert-model", str(tmp_path / "ours.pth"), str(tmp_path / "model.pth")]) == 0
    torch.save({"x": x, "ref": ref}, tmp_path / "io.pt")
    script = (
        "import sys, torch\n"
        "from asteroid.models import BaseModel\n"
        f"m = BaseModel.from_pretrained({str(tmp_path / 'model.pth')!r}).eval()\n"
        "assert type(m).__name__ == 'ConvTasNet', type(m)\n"
        "assert m.encoder.is_pinv and m.encoder_activation == 'relu'\n"
        f"io = torch.load({str(tmp_path / 'io.pt')!r})\n"
        "with torch.no_grad():\n"
        "    assert torch.allclose(m(io['x']), io['ref'], atol=1e-6)\n"
        "assert not any(k == 'local' or k.startswith('local.') for k in sys.modules)\n"
        "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ""}, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]
    converted = asteroid_package(package)
    assert converted["model_args"]["who_is_pinv"] == "encoder"
    assert asteroid_package(converted) == converted  # converting twice changes nothing


def _asteroid_tree(root: Path, conf: str) -> Path:
    """A copy of an asteroid source tree (the installed package, the shared egs/wham/ConvTasNet/utils)
    with the generated recipe in egs/wsj0-2mix/ConvTasNetVariants, utils/ linked as in asteroid."""
    import asteroid

    shutil.copytree(Path(asteroid.__file__).parent, root / "asteroid", ignore=shutil.ignore_patterns("__pycache__"))
    utils = root / "egs" / "wham" / "ConvTasNet" / "utils"
    utils.mkdir(parents=True)
    for name in ("parse_options.sh", "prepare_python_env.sh"):
        shutil.copy2(GLUE / name, utils / name)
    recipe = root / "egs" / "wsj0-2mix" / "ConvTasNetVariants"
    assert upstream_main(["--conf", conf, "--out", str(recipe), "--link-utils"]) == 0
    return recipe


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_upstream_folder_and_recipe_give_the_same_model_and_metrics(tmp_path):
    """Same micro config, same micro corpus: the asteroid folder (run.sh stages 0-2 inside a copy of an
    asteroid tree, PYTHONPATH on that tree only) and this recipe (local.train, local.evaluate) give
    bit-identical best_model.pth weights and the same per-utterance metrics.

    The one difference asteroid's layout forces: stage 0 indexes the wavs into the recipe's own
    data/2speakers/ (json only), so the corpus folder's side files (our speakers.json: the
    gender_pair column) are not there, and metrics.json names another test_set path.
    """
    start = time.monotonic()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    corpus = tmp_path / "micro"
    subprocess.run([sys.executable, "-m", "egs.demo.prepare", "--out", str(corpus), "--nj", "1", *MICRO_PREP],
                   cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, check=True, capture_output=True, timeout=120)
    recipe = _asteroid_tree(tmp_path / "asteroid", MICRO)

    ours = tmp_path / "ours"
    ours_cmd = ("import sys; from local import evaluate, train; sys.exit("  # run.sh's stages 1 and 2, one process
                f"train.main(['--conf', {MICRO!r}, '--data-dir', {str(corpus)!r}, '--exp-dir', {str(ours)!r}, "
                f"'--no-progress-bar']) or evaluate.main(['--exp-dir', {str(ours)!r}, '--data-dir', {str(corpus)!r}]))")
    procs = [  # side by side, one thread each: the same arithmetic as one after the other
        subprocess.Popen([sys.executable, "-c", ours_cmd], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen(["bash", "run.sh", "--wsj0mix_wav_dir", str(corpus), "--python_path", sys.executable,
                          "--tag", "micro", "--train_opts", "--no-progress-bar"],
                         cwd=recipe, env={**env, "PYTHONPATH": str(tmp_path / "asteroid")},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-4000:]
    theirs = recipe / "exp" / "micro"

    # the folder ran its own copies (the repository was not on its path) and asteroid's layout
    assert list((recipe / "local" / "__pycache__").glob("train.*.pyc"))
    assert json.loads((recipe / "data/2speakers/wav8k/min/tt/mix.json").read_text()) == \
        json.loads((corpus / "wav8k/min/tt/mix.json").read_text())
    for rel in ("conf.yml", "best_k_models.json", "best_model.pth", "train.log", "eval.log", "final_metrics.json",
                "all_metrics.csv", "eval/metrics.csv", "publish_dir/model.pth", "publish_dir/README.md"):
        assert (theirs / rel).is_file(), rel
    assert (theirs / "publish_dir" / "recipe_name.txt").read_text() == "wsj0-2mix/ConvTasNetVariants\n"

    # same config, same weights
    assert read_experiment_config(theirs / "conf.yml") == read_experiment_config(ours / "conf.yml") == \
        load_config(MICRO)
    a, b = (torch.load(d / "best_model.pth", map_location="cpu", weights_only=True) for d in (ours, theirs))
    assert a["model_args"] == b["model_args"] and a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key

    # same per-utterance metrics (computed on the written 16-bit files), in the same order
    rows_ours, rows_theirs = _rows(ours / "eval" / "metrics.csv"), _rows(theirs / "eval" / "metrics.csv")
    assert len(rows_ours) == 4
    assert [{k: v for k, v in r.items() if k != "gender_pair"} for r in rows_ours] == \
        [{k: v for k, v in r.items() if k != "gender_pair"} for r in rows_theirs]
    summary_ours, summary_theirs = (json.loads((d / "eval" / "metrics.json").read_text()) for d in (ours, theirs))
    for key in ("si_sdr", "si_sdr_imp", "sdr_imp", "stoi", "n_utterances", "worst"):
        assert summary_ours[key] == summary_theirs[key], key
    assert json.loads((theirs / "final_metrics.json").read_text()) == summary_theirs
    assert _rows(theirs / "all_metrics.csv") == rows_theirs

    # publish_dir: asteroid's model name, the same weights, an asteroid model card
    from asteroid.models import BaseModel, ConvTasNet

    published = torch.load(theirs / "publish_dir" / "model.pth", map_location="cpu", weights_only=True)
    assert published["model_name"] == "ConvTasNet" and published["infos"]["recipe_model_name"] == "ConvTasNetVariant"
    assert published["dataset"] == "wsj0-2mix" and published["licenses"][0]["author"] == "LDC"
    model = BaseModel.from_pretrained(_copy(published))
    assert type(model) is ConvTasNet
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in model.state_dict().items())
    card = (theirs / "publish_dir" / "README.md").read_text()
    assert card.startswith("---\ntags:\n- asteroid\n") and "- wsj0-2mix\n" in card and "ConvTasNetVariant" not in card
    assert "derivative of [CSR-I (WSJ0) Complete]" in card
    assert time.monotonic() - start < 240  # measured 45-72 s with the 2 cores shared by other jobs
