"""Checkpoint averaging (training.average_best_k): the mean, the choice of checkpoints, the export."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from local.checkpoint_average import average_state_dicts, best_k_paths
from local.config import ConfigError, load_config
from local.model import make_model
from local.train import export_best


def test_average_is_the_elementwise_mean_in_the_original_dtype():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(7)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    c = {"w": torch.tensor([5.0, 1.0]), "n": torch.tensor(11)}
    out = average_state_dicts([a, b, c])
    assert torch.allclose(out["w"], torch.tensor([3.0, 3.0]))
    assert out["w"].dtype == torch.float32
    assert int(out["n"]) == 7  # integer counters come from the first (best) checkpoint
    assert torch.equal(a["w"], torch.tensor([1.0, 2.0]))  # inputs untouched


def test_average_of_one_is_a_copy():
    a = {"w": torch.randn(3, 4)}
    out = average_state_dicts([a])
    assert torch.equal(out["w"], a["w"])


def test_average_refuses_different_models():
    with pytest.raises(ValueError, match="different parameters"):
        average_state_dicts([{"w": torch.zeros(2)}, {"v": torch.zeros(2)}])
    with pytest.raises(ValueError, match="shape"):
        average_state_dicts([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}])
    with pytest.raises(ValueError, match="no state dicts"):
        average_state_dicts([])


def test_best_k_paths_are_the_lowest_losses_best_first():
    scores = {"e1.ckpt": -5.0, "e2.ckpt": -7.5, "e3.ckpt": float("nan"), "e4.ckpt": -7.0}
    assert best_k_paths(scores, 2) == ["e2.ckpt", "e4.ckpt"]
    assert best_k_paths(scores, 10) == ["e2.ckpt", "e4.ckpt", "e1.ckpt"]  # the NaN epoch never
    assert best_k_paths(scores, 1) == ["e2.ckpt"]
    with pytest.raises(ValueError):
        best_k_paths(scores, 0)


def test_config_checks_average_best_k():
    conf = load_config("tests/conf/micro.yml", ["training.average_best_k=1"])
    assert conf["training"]["average_best_k"] == 1
    with pytest.raises(ConfigError, match="average_best_k=0"):
        load_config("tests/conf/micro.yml", ["training.average_best_k=0"])
    with pytest.raises(ConfigError, match="save_top_k=2"):
        load_config("tests/conf/micro.yml", ["training.average_best_k=3", "training.save_top_k=2"])
    # save_top_k=-1 keeps every checkpoint: any k is possible
    load_config("tests/conf/micro.yml", ["training.average_best_k=4", "training.save_top_k=-1"])


def _fake_checkpoints(tmp_path, conf, losses):
    """Lightning-like checkpoints of the micro model with different weights; returns {path: loss}."""
    torch.manual_seed(0)
    scores = {}
    (tmp_path / "checkpoints").mkdir()
    for i, loss in enumerate(losses):
        model = make_model(conf)
        state = {f"model.{k}": v for k, v in model.state_dict().items()}
        path = str(tmp_path / "checkpoints" / f"epoch{i:03d}.ckpt")
        torch.save({"state_dict": state}, path)
        scores[path] = loss
    return scores


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_export_best_writes_the_mean_of_the_k_best(tmp_path, k):
    conf = load_config("tests/conf/micro.yml", [f"training.average_best_k={k}"])
    scores = _fake_checkpoints(tmp_path, conf, [-3.0, -6.0, -5.0, -4.0])
    best_first = sorted(scores, key=scores.get)
    cb = SimpleNamespace(best_k_models=scores, best_model_path=best_first[0], last_model_path="")
    package = _weights(export_best(tmp_path, cb, conf))

    states = [torch.load(p, weights_only=True)["state_dict"] for p in best_first[:k]]
    for key, value in package["state_dict"].items():
        want = sum(s[f"model.{key}"] for s in states) / k
        assert torch.allclose(value, want, atol=1e-6), key
    assert package["infos"]["checkpoint"] == "checkpoints/epoch001.ckpt"
    assert math.isclose(package["infos"]["val_loss"], -6.0)
    if k > 1:
        assert package["infos"]["averaged_checkpoints"] == [
            f"checkpoints/epoch{int(p[-8:-5]):03d}.ckpt" for p in best_first[:k]]
    else:
        assert "averaged_checkpoints" not in package["infos"]


def test_export_best_without_scores_takes_the_callbacks_checkpoint(tmp_path):
    conf = load_config("tests/conf/micro.yml", ["training.average_best_k=3"])
    scores = _fake_checkpoints(tmp_path, conf, [0.0, 0.0])
    last = list(scores)[-1]
    cb = SimpleNamespace(best_k_models={}, best_model_path="", last_model_path=last)
    package = _weights(export_best(tmp_path, cb, conf))
    want = torch.load(last, weights_only=True)["state_dict"]
    for key, value in package["state_dict"].items():
        assert torch.equal(value, want[f"model.{key}"])


def test_training_stage_averages_the_best_checkpoints_lightning_kept(tmp_path):
    """A real run: the paths come from Lightning's ModelCheckpoint (absolute), the package names them."""
    import json

    from local.train import main
    from tests.test_training_scale import MICRO, make_corpus

    corpus = make_corpus(tmp_path / "corpus")
    exp = tmp_path / "exp"
    assert main(["--conf", MICRO, "--data-dir", str(corpus), "--exp-dir", str(exp), "--no-progress-bar",
                 "--set", "training.epochs=3", "--set", "training.limit_train_batches=2",
                 "--set", "training.early_stop_patience=0", "--set", "training.save_top_k=3",
                 "--set", "training.average_best_k=2"]) == 0
    scores = json.loads((exp / "best_k_models.json").read_text())
    assert len(scores) == 3
    two_best = best_k_paths(scores, 2)
    package = _weights(exp / "best_model.pth")
    assert package["infos"]["averaged_checkpoints"] == [str(Path(p).relative_to(exp)) for p in two_best]
    states = [torch.load(p, map_location="cpu", weights_only=False)["state_dict"] for p in two_best]
    assert not torch.equal(states[0]["model.decoder.filterbank._filters"],
                           states[1]["model.decoder.filterbank._filters"])  # two different epochs
    for key, value in package["state_dict"].items():
        want = (states[0][f"model.{key}"] + states[1][f"model.{key}"]) / 2
        assert torch.allclose(value, want, atol=1e-6), key
