"""The exported README.md follows asteroid's model card template."""

import json

import torch
import yaml

from local.config import load_config
from local.export import export_files
from local.export import main as export_main
from local.model import make_model, serialize_model
from local.model_card import dataset_key, license_notice, model_card

METRICS = {"test_set": "tt", "n_utterances": 2, "si_sdr": 5.0, "input_si_sdr": 0.0, "si_sdr_imp": 5.0}


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def make_card(dataset="wsj0-2mix", who_is_pinv=None):
    conf = load_config("tests/conf/micro.yml")
    conf["filterbank"]["who_is_pinv"] = who_is_pinv
    package = serialize_model(make_model(conf))
    return model_card(conf, package, METRICS, "micro", conf_text="# my config\nfilterbank:\n  n_filters: 16\n",
                      dataset=dataset), package


def test_front_matter_has_asteroid_template_fields():
    card, _ = make_card()
    meta = front_matter(card)
    assert {"asteroid", "audio", "ConvTasNet"} <= set(meta["tags"])
    assert "ConvTasNetVariant" in meta["tags"]  # the model's own name too
    assert meta["datasets"] == ["wsj0-2mix", "sep_clean"]
    assert meta["license"] == "cc-by-sa-3.0"
    assert meta["inference"] is False


def test_template_sections_in_order_with_config_and_metrics():
    card, _ = make_card()
    positions = [card.index(h) for h in ("## Description", "## Data and results", "## Results",
                                         "## Training config", "## License notice")]
    assert positions == sorted(positions)
    assert "# my config\nfilterbank:\n  n_filters: 16" in card  # the config file as written
    assert "si_sdr_imp: 5.0000" in card
    assert "`sep_clean` task of the `wsj0-2mix` dataset" in card
    for part in ("Intended use", "model.safetensors", "model.ts", "ConvTasNet.from_pretrained"):
        assert part in card


def test_licence_notice_names_the_data():
    card, _ = make_card("wsj0-2mix")
    notice = card[card.index("## License notice"):]
    assert "LDC93S6A" in notice and "LDC User Agreement for Non-Members" in notice
    assert "non-commercial" in notice and "Attribution-ShareAlike 3.0" in notice
    demo = license_notice("m", "demo")
    assert "eSpeak NG" in demo and "LDC" not in demo
    assert "LibriSpeech" in license_notice("m", "librimix") and "CC BY 4.0" in license_notice("m", "Libri2Mix")
    other = license_notice("m", "my-corpus", uploader="Ada")
    assert "`my-corpus`" in other and "by Ada" in other
    assert dataset_key("wsj0-3mix") == "wsj0-mix" and dataset_key(None) is None


def test_pinv_variant_is_described():
    card, package = make_card(who_is_pinv="encoder")
    assert "(pseudo-inverse of the decoder)" in card
    shared = package["state_dict"]["encoder.filterbank._filters"].numel()
    total = sum(v.numel() for v in package["state_dict"].values())
    assert f"| parameters | {total - shared:,} |" in card  # the shared basis counts once


def test_export_writes_the_card_with_the_corpus_from_the_exp_layout(tmp_path):
    conf = load_config("tests/conf/micro.yml")
    exp = tmp_path / "exp" / "wsj0-2mix" / "micro"  # run.sh's exp/<corpus>/<tag>
    (exp / "eval").mkdir(parents=True)
    torch.save(serialize_model(make_model(conf)), exp / "best_model.pth")
    (exp / "conf.yml").write_text(yaml.safe_dump(conf))
    (exp / "eval" / "metrics.json").write_text(json.dumps(METRICS))
    from tests.test_export import mark_evaluated

    mark_evaluated(exp)
    assert export_main(["--exp-dir", str(exp)]) == 0
    card = (exp / "export" / "README.md").read_text()
    assert front_matter(card)["datasets"] == ["wsj0-2mix", "sep_clean"]
    assert "LDC93S6A" in card
    assert sorted(p.name for p in (exp / "export").iterdir() if not p.name.startswith(".")) == sorted(
        export_files(causal=False))


def test_a_demo_model_says_what_it_is_for():
    """The demo model makes recorded speech worse (-0.8 dB): its card says so, other cards do not."""
    from local.model_card import DEMO_MODEL_NOTICE, is_demo_model

    card, _ = make_card(dataset="demo")
    assert "**What it is for.** " + DEMO_MODEL_NOTICE in card
    assert "not a separator for real recordings" in card and "-0.8 dB" in card
    assert "What it is for" not in make_card(dataset="wsj0-2mix")[0]
    assert is_demo_model({"dataset": "demo"}) and not is_demo_model({"dataset": "wsj0-2mix"})
    assert not is_demo_model({})
