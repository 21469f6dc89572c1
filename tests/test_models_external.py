"""timm and torchvision models by name: the backbone/head split strategies rely on, inputs
from the data, local weights only, clear errors, and 1-round federated runs."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from fedlt.config import load_config
from fedlt.errors import ConfigError, DataError
from fedlt.models import MODELS, FeatureModel, build_model
from fedlt.runner import run_experiment
from fedlt.runs import RunDirectory, read_checkpoint

C = 7  # a class count no feature size equals, so the head is easy to tell apart

# (name, options, feature dim) built on 3×16×16 images.
SPLIT_CASES = [
    ("timm:resnet10t", {}, 512),
    ("timm:test_vit", {"patch_size": 4}, 64),
    ("torchvision:resnet18", {}, 512),
    ("torchvision:mobilenet_v3_small", {}, 1024),  # a hidden Linear stays in the backbone
]


def _build(name: str, shape=(3, 16, 16), options=None, seed: int = 0) -> FeatureModel:
    torch.manual_seed(seed)
    model = build_model(name, C, shape, options)
    assert isinstance(model, FeatureModel)
    return model


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _linears_to_classes(module: nn.Module) -> list[str]:
    return [
        n for n, m in module.named_modules() if isinstance(m, nn.Linear) and m.out_features == C
    ]


@pytest.mark.parametrize(("name", "options", "dim"), SPLIT_CASES)
def test_backbone_head_split(name, options, dim):
    model = _build(name, options=options)
    assert model.feature_dim == dim
    assert isinstance(model.head, nn.Linear)
    assert (model.head.in_features, model.head.out_features) == (dim, C)
    head_params = {n for n, _ in model.named_parameters() if not n.startswith("backbone.")}
    assert head_params == {"head.weight", "head.bias"}
    assert _linears_to_classes(model) == ["head"]  # the library's classifier is gone
    assert all(k.startswith(("backbone.", "head.")) for k in model.state_dict())

    model.train()
    x = torch.randn(4, 3, 16, 16)
    h = model.features(x)
    assert h.shape == (4, dim)
    logits = model(x)
    assert logits.shape == (4, C)
    torch.nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    assert all(p.grad is not None for p in model.head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


@pytest.mark.parametrize("name", ["timm:resnet18", "torchvision:resnet18"])
def test_resnet18_trains_on_digits_shaped_inputs(name):
    """8×8 grey images (the digits default): one input channel, and a batch of one sample
    (a client's last batch) trains although the last feature maps are 1×1."""
    model = _build(name, shape=(1, 8, 8))
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1
    assert model.feature_dim == 512
    model.train()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model(torch.randn(1, 1, 8, 8)).sum().backward()
    assert torch.equal(bn.running_mean, before)  # running statistics used, not updated
    assert all(m.training for m in model.modules())  # training mode restored
    model(torch.randn(8, 1, 8, 8))
    assert not torch.equal(bn.running_mean, before)  # a real batch updates them


def test_same_seed_same_weights_and_timm_vit_takes_the_data_size():
    a = _build("timm:test_vit", shape=(3, 24, 24), options={"patch_size": 8}, seed=3)
    b = _build("timm:test_vit", shape=(3, 24, 24), options={"patch_size": 8}, seed=3)
    assert _states_equal(a.state_dict(), b.state_dict())
    assert tuple(a.backbone.patch_embed.img_size) == (24, 24)


# --------------------------------------------------------------------------- names & options


def test_prefixed_names_pass_config_validation():
    assert load_config(None, ["model.name=timm:resnet18"]).model.name == "timm:resnet18"
    assert load_config(None, ["model.name=torchvision:resnet18"]).model.name.endswith("resnet18")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("timm:resnet19", "close matches: 'timm:resnet18'"),
        ("torchvision:resnett18", "close matches: 'torchvision:resnet18'"),
        ("timm:resnet18.no_such_tag", "no pretrained tag"),
    ],
)
def test_unknown_names_list_close_matches(name, expected):
    with pytest.raises(ConfigError, match=r"^model\.name: ") as info:
        load_config(None, [f"model.name={name}"])
    assert expected in str(info.value)
    with pytest.raises(ConfigError, match=r"^model\.name: "):
        build_model(name, C, (3, 16, 16))


def test_bare_library_name_points_to_the_prefix():
    with pytest.raises(ConfigError, match=r"model\.name: unknown model 'resnet50'") as info:
        MODELS.get("resnet50", "model.name")
    assert "'timm:resnet50' or 'torchvision:resnet50'" in str(info.value)


@pytest.mark.parametrize(
    ("name", "options", "key"),
    [
        ("timm:resnet10t", {"widht": 2}, "model.options"),
        ("torchvision:resnet18", {"widht": 2}, "model.options"),
        ("timm:resnet10t", {"pretrained": True}, "model.options.pretrained"),
        ("timm:resnet10t", {"in_chans": 3}, "model.options.in_chans"),
        ("torchvision:resnet18", {"weights": "DEFAULT"}, "model.options.weights"),
        ("torchvision:resnet18", {"num_classes": 3}, "model.options.num_classes"),
    ],
)
def test_bad_options_name_model_options(name, options, key):
    with pytest.raises(ConfigError) as info:
        build_model(name, C, (3, 16, 16), options)
    assert info.value.key == key


def test_options_pass_through_to_the_library():
    model = _build("timm:test_vit", options={"patch_size": 4, "depth": 2})
    assert len(model.backbone.blocks) == 2
    zeroed = _build("torchvision:resnet18", options={"zero_init_residual": True})
    assert torch.count_nonzero(zeroed.backbone.layer1[0].bn2.weight) == 0


def test_too_small_images_are_reported_on_the_model_name():
    with pytest.raises(ConfigError, match=r"model\.name: timm:test_vit cannot process 1×8×8"):
        build_model("timm:test_vit", C, (1, 8, 8))  # patch 16 > 8


# --------------------------------------------------------------------------- local weights


@pytest.mark.parametrize("name", ["timm:resnet10t", "torchvision:resnet18"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_fedlt_checkpoint_loads_through_model_options(tmp_path, name, suffix):
    saved = _build(name, seed=1).state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(saved, path)
    else:
        save_file({k: v.contiguous() for k, v in saved.items()}, str(path))
    assert not _states_equal(_build(name, seed=2).state_dict(), saved)  # seeds differ
    loaded = _build(name, seed=2, options={"checkpoint_path": str(path)})
    assert _states_equal(loaded.state_dict(), saved)


def test_timm_library_checkpoint_drops_classifier_and_adapts_channels(tmp_path):
    torch.manual_seed(5)
    library = timm.create_model("resnet10t", pretrained=False, num_classes=1000)
    path = tmp_path / "resnet10t.pth"
    torch.save(library.state_dict(), path)
    model = _build("timm:resnet10t", shape=(1, 16, 16), options={"checkpoint_path": str(path)})
    theirs, ours = library.state_dict(), model.backbone.state_dict()
    assert "fc.weight" in theirs and "fc.weight" not in ours
    first = "conv1.0.weight"
    assert torch.allclose(ours[first], theirs[first].sum(dim=1, keepdim=True))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if k != first)


def test_torchvision_library_checkpoint_drops_classifier_and_adapts_channels(tmp_path):
    torch.manual_seed(5)
    library = torchvision.models.resnet18(weights=None, num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": library.state_dict()}, path)  # a wrapped checkpoint
    model = _build("torchvision:resnet18", shape=(1, 8, 8), options={"checkpoint_path": str(path)})
    theirs, ours = library.state_dict(), model.backbone.state_dict()
    assert "fc.weight" not in ours
    assert torch.allclose(ours["conv1.weight"], theirs["conv1.weight"].sum(dim=1, keepdim=True))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if k != "conv1.weight")


def test_bad_checkpoints_name_the_option(tmp_path):
    with pytest.raises(DataError, match=r"model\.options\.checkpoint_path: file not found"):
        build_model("timm:resnet10t", C, (3, 16, 16), {"checkpoint_path": str(tmp_path / "x")})
    other = tmp_path / "other.pt"
    torch.save(_build("torchvision:resnet18").state_dict(), other)
    with pytest.raises(DataError, match="does not fit"):
        build_model("torchvision:mobilenet_v3_small", C, (3, 16, 16), {"checkpoint_path": other})
    junk = tmp_path / "junk.pt"
    torch.save({"note": "not weights"}, junk)
    with pytest.raises(DataError, match="not a state dict"):
        build_model("timm:resnet10t", C, (3, 16, 16), {"checkpoint_path": str(junk)})


# --------------------------------------------------------------------------- federated runs

SYNTHETIC = [
    "data.source=synthetic",
    "data.options={num_classes: 4, image_size: 16, channels: 3, train_per_class: 20,"
    " test_per_class: 6}",
    "data.longtail.profile=none",
    "data.partition.num_clients=3",
    "federated.rounds=1",
    "federated.local_epochs=1",
    "federated.batch_size=16",
    "federated.eval_every=1",
    "federated.checkpoint_every=1",
    "logging.progress=false",
    "resources.device=cpu",
]


def _one_round(tmp_path, *overrides: str):
    cfg = load_config(None, [*SYNTHETIC, f"output_dir={tmp_path / 'runs'}", *overrides])
    path = run_experiment(cfg, backend="inprocess", progress=False)
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1]
    assert records[0]["failed"] == {}
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "complete"
    steps = dict(RunDirectory.open(path).checkpoints())
    start, end = (read_checkpoint(steps[s]).state["global_state"] for s in (0, 1))
    return summary["final"], start, end


@pytest.mark.parametrize(
    ("name", "options", "first_conv"),
    [
        ("timm:resnet10t", "{}", "backbone.conv1.0.weight"),
        ("torchvision:resnet18", "{}", "backbone.conv1.weight"),
    ],
)
@pytest.mark.parametrize("strategy", ["fedrep", "fedavg"])
def test_one_round_run(tmp_path, name, options, first_conv, strategy):
    final, start, end = _one_round(
        tmp_path, f"model.name={name}", f"model.options={options}", f"strategy.name={strategy}"
    )
    assert 0.0 <= final["generic.global.top1"] <= 1.0
    mode = "personal" if strategy == "fedrep" else "global"
    assert 0.0 <= final[f"personal.{mode}.top1_mean"] <= 1.0
    assert not torch.equal(start[first_conv], end[first_conv])  # the library body trained
    assert end["head.weight"].shape[0] == 4


def test_one_round_fedloge_with_a_timm_vit(tmp_path):
    final, start, end = _one_round(
        tmp_path,
        "model.name=timm:test_vit",
        "model.options={patch_size: 4}",
        "strategy.name=fedloge",
    )
    assert 0.0 <= final["generic.gla_fr.top1"] <= 1.0
    assert 0.0 <= final["personal.gla_fr.top1_mean"] <= 1.0
    key = "backbone.patch_embed.proj.weight"
    assert not torch.equal(start[key], end[key])
