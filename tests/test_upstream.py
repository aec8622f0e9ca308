"""The asteroid-layout recipe written by ``python -m local.upstream``."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from local.config import load_config
from local.upstream import UpstreamError, asteroid_package, main as upstream_main, upstream_conf, write_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPE_FILES = ("run.sh", "local/conf.yml", "local/prepare_data.sh", "local/preprocess_wsj0mix.py", "train.py",
                "eval.py", "model.py", "README.md", "utils/parse_options.sh", "utils/prepare_python_env.sh")
TINY_NET = {"n_filters": 16, "kernel_size": 16, "stride": 8, "bn_chan": 8, "hid_chan": 16, "skip_chan": 8,
            "n_blocks": 2, "n_repeats": 1}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    out = tmp_path_factory.mktemp("up") / "egs" / "wsj0-2mix" / "ConvTasNetVariants"
    assert upstream_main(["--conf", "conf/paper_best.yml", "--out", str(out)]) == 0
    return out


def test_generated_folder_has_asteroid_layout(recipe):
    for rel in RECIPE_FILES:
        assert (recipe / rel).is_file(), rel
    for rel in ("run.sh", "local/prepare_data.sh", "utils/parse_options.sh", "utils/prepare_python_env.sh"):
        assert os.access(recipe / rel, os.X_OK), rel
        subprocess.run(["bash", "-n", str(recipe / rel)], check=True)  # syntax
    run_sh = (recipe / "run.sh").read_text()
    assert ". utils/parse_options.sh" in run_sh
    for stage in ("Stage 0", "Stage 1", "Stage 2"):
        assert stage in run_sh
    assert 'echo "wsj0-2mix/ConvTasNetVariants" > $expdir/publish_dir/recipe_name.txt' in run_sh
    for rel in ("train.py", "eval.py", "model.py", "local/preprocess_wsj0mix.py"):
        text = (recipe / rel).read_text()
        compile(text, rel, "exec")
        # self-contained: asteroid only, never this repository's package
        assert "from local" not in text and "import local" not in text, rel
    model_py = (recipe / "model.py").read_text()
    assert "def make_model_and_optimizer(conf)" in model_py and "def load_best_model(train_conf, exp_dir)" in model_py


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


def test_conf_maps_the_paper_config():
    up = upstream_conf(load_config("conf/paper_best.yml"))
    assert list(up) == ["filterbank", "masknet", "training", "optim", "data"]
    assert up["filterbank"] == {"n_filters": 512, "kernel_size": 16, "stride": 8, "encoder_activation": "linear",
                                "who_is_pinv": None}
    assert (up["masknet"]["n_blocks"], up["masknet"]["n_repeats"], up["masknet"]["hid_chan"]) == (8, 3, 512)
    assert up["training"]["half_lr"] is True and up["training"]["lr_patience"] == 3
    assert up["data"]["train_dir"] == "data/2speakers/wav8k/min/tr"
    keys = [k for section in up.values() for k in section]
    assert len(keys) == len(set(keys)), "second-level keys must be unique to become flags"


def test_configs_without_an_asteroid_equivalent_are_refused():
    with pytest.raises(UpstreamError, match="dynamic_mixing.*cosine"):
        upstream_conf(load_config("conf/demo.yml"))


def test_conf_yml_round_trips_through_asteroid_parser(recipe):
    from asteroid.utils import parse_args_as_dict, prepare_parser_from_dict

    text = (recipe / "local" / "conf.yml").read_text()
    conf = yaml.safe_load(text)
    assert conf == upstream_conf(load_config("conf/paper_best.yml"))

    def parse(args):
        parser = argparse.ArgumentParser()
        parser.add_argument("--exp_dir", default="exp/tmp")
        parser = prepare_parser_from_dict(conf, parser=parser)
        return parse_args_as_dict(parser, args=args)

    parsed = parse([])
    assert {k: parsed[k] for k in conf} == conf
    assert parsed["main_args"]["exp_dir"] == "exp/tmp"
    changed = parse(["--lr", "5e-4", "--who_is_pinv", "encoder", "--causal", "true", "--n_src", "3",
                     "--segment", "2", "--half_lr", "no", "--encoder_activation", "relu"])
    assert changed["optim"]["lr"] == 5e-4
    assert changed["filterbank"]["who_is_pinv"] == "encoder"
    assert changed["filterbank"]["encoder_activation"] == "relu"
    assert changed["masknet"]["causal"] is True
    assert changed["data"]["n_src"] == 3 and changed["data"]["segment"] == 2.0
    assert changed["training"]["half_lr"] is False
    # what train.py writes to exp/<tag>/conf.yml reads back the same
    assert yaml.safe_load(yaml.safe_dump(changed)) == changed


def _load_generated_model_module(recipe):
    spec = importlib.util.spec_from_file_location("generated_recipe_model", recipe / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("who_is_pinv", ["none", "encoder", "decoder"])
def test_generated_model_survives_serialize(recipe, who_is_pinv):
    from asteroid.models import BaseModel, ConvTasNet

    recipe_model = _load_generated_model_module(recipe)
    conf = upstream_conf(load_config("conf/paper_best.yml"))
    conf["filterbank"].update({k: v for k, v in TINY_NET.items() if k in conf["filterbank"]},
                              who_is_pinv=who_is_pinv, encoder_activation="relu")
    conf["masknet"].update({k: v for k, v in TINY_NET.items() if k in conf["masknet"]})
    torch.manual_seed(0)
    model, optimizer = recipe_model.make_model_and_optimizer(conf)
    model.eval()
    assert isinstance(optimizer, torch.optim.Adam)
    package = recipe_model.serialize_model(model)
    expected_pinv = None if who_is_pinv == "none" else who_is_pinv
    assert package["model_args"]["who_is_pinv"] == expected_pinv
    x = torch.randn(2, 1200, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        for loader in (BaseModel.from_pretrained, ConvTasNet.from_pretrained):
            reloaded = loader(_copy(package)).eval()
            assert reloaded.encoder.is_pinv == (expected_pinv == "encoder")
            assert reloaded.decoder.is_pinv == (expected_pinv == "decoder")
            assert torch.allclose(reloaded(x), ref, atol=1e-6)


def _copy(package):
    return {**package, "model_args": dict(package["model_args"])}  # from_pretrained updates model_args


def test_our_export_loads_with_base_model_from_pretrained(tmp_path):
    """Our model.pth (ConvTasNetVariant) with our registered subclass, and converted for plain asteroid."""
    from asteroid.models import BaseModel

    from local.model import ConvTasNetVariant, make_model, serialize_model

    conf = load_config("tests/conf/micro.yml")
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
    assert asteroid_package(package)["model_args"]["who_is_pinv"] == "encoder"


def _fake_wsj0_2mix(root: Path, n_utts=(3, 2, 2), seconds=0.75, rate=8000):
    """MERL's layout: root/2speakers/wav8k/min/{tr,cv,tt}/{mix,s1,s2}/<utt>.wav"""
    rng = np.random.default_rng(0)
    for split, n in zip(("tr", "cv", "tt"), n_utts):
        for i in range(n):
            s1, s2 = (0.1 * rng.standard_normal(int(seconds * rate)).astype("float32") for _ in range(2))
            for name, wav in (("s1", s1), ("s2", s2), ("mix", s1 + s2)):
                path = root / "2speakers" / "wav8k" / "min" / split / name / f"utt{i}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wav, rate)


def test_generated_run_sh_trains_evaluates_and_publishes(recipe, tmp_path):
    """Stages 0-2 of the generated recipe on a tiny fake wsj0-2mix, one epoch of a tiny Pinv model."""
    _fake_wsj0_2mix(tmp_path / "wsj0-mix")
    work = tmp_path / "recipe"
    write_recipe(load_config("conf/paper_best.yml"), work, recipe_name="wsj0-2mix/ConvTasNetVariants")
    net = " ".join(f"--{k} {v}" for k, v in TINY_NET.items())
    cmd = ["bash", "run.sh", "--wsj0mix_wav_dir", str(tmp_path / "wsj0-mix"), "--python_path", sys.executable,
           "--epochs", "1", "--batch_size", "1", "--num_workers", "0", "--who_is_pinv", "encoder",
           "--n_save_ex", "1", "--eval_use_gpu", "0", "--tag", "smoke",
           "--train_opts", f"{net} --segment 0.5 --save_top_k 1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": ""}
    res = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert json.loads((work / "data/2speakers/wav8k/min/tt/mix.json").read_text())[0][1] == 6000
    exp = work / "exp" / "smoke"
    for rel in ("conf.yml", "best_k_models.json", "best_model.pth", "final_metrics.json", "all_metrics.csv",
                "train.log", "eval.log", "publish_dir/model.pth", "publish_dir/README.md",
                "publish_dir/recipe_name.txt"):
        assert (exp / rel).is_file(), rel
    assert len(list((exp / "examples").iterdir())) == 1
    trained_conf = yaml.safe_load((exp / "conf.yml").read_text())
    assert trained_conf["filterbank"]["who_is_pinv"] == "encoder" and trained_conf["filterbank"]["n_filters"] == 16
    metrics = json.loads((exp / "final_metrics.json").read_text())
    assert {"si_sdr", "si_sdr_imp", "sdr_imp", "stoi"} <= set(metrics)

    from asteroid.models import BaseModel

    package = torch.load(exp / "publish_dir" / "model.pth", map_location="cpu", weights_only=True)
    assert package["model_name"] == "ConvTasNet" and package["model_args"]["who_is_pinv"] == "encoder"
    assert package["infos"]["recipe_name"] == "wsj0-2mix/ConvTasNetVariants"
    assert package["dataset"] == "wsj0-mix" and package["licenses"]
    model = BaseModel.from_pretrained(package)
    assert model.encoder.is_pinv
    card = (exp / "publish_dir" / "README.md").read_text()
    assert card.startswith("---\ntags:\n- asteroid\n- audio\n") and "## License notice:" in card


def test_committed_upstream_folder_is_up_to_date():
    """upstream/egs/wsj0-2mix/ConvTasNetVariants (if checked in) is exactly what the command writes."""
    from local.upstream import DEFAULT_OUT, recipe_files

    committed = REPO / DEFAULT_OUT
    if not committed.is_dir():
        pytest.skip(f"{DEFAULT_OUT} not generated in this checkout")
    expected = recipe_files(load_config(REPO / "conf" / "paper_best.yml"), "conf/paper_best.yml",
                            "wsj0-2mix/ConvTasNetVariants")
    for rel, text in expected.items():
        assert (committed / rel).read_text() == text, (
            f"{DEFAULT_OUT}/{rel} is stale: re-run python -m local.upstream --conf conf/paper_best.yml --force")
