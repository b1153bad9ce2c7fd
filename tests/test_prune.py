"""Block surgery, BK-SDM presets and sub-network views on real diffusers UNets (tiny ones built in code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgediff.errors import RecipeError, UnsupportedError
from edgediff.slim import prune
from edgediff.slim.prune import PruneSpec

SHARED = Path(__file__).resolve().parents[2] / "shared" / "architectures"
SD15_UNET = SHARED / "stable-diffusion-v1-5" / "unet" / "config.json"
SD21_UNET = SHARED / "stable-diffusion-2-1-base" / "unet" / "config.json"
BK_SMALL_UNET = SHARED / "bk-sdm-small" / "unet" / "config.json"
needs_shared = pytest.mark.skipif(not SD15_UNET.exists(), reason="shared/architectures is not beside the repo")

# Fields of Nota's published BK-SDM UNet configs (nota-ai/bk-sdm-{base,tiny}, src/unet_config in their repo)
# that differ from SD 1.5's; everything else is SD 1.5's.
PUBLISHED_BK_BASE = {"layers_per_block": 1, "mid_block_type": "UNetMidBlock2DCrossAttn"}
PUBLISHED_BK_TINY = {
    "layers_per_block": 1, "mid_block_type": None, "block_out_channels": [320, 640, 1280],
    "down_block_types": ["CrossAttnDownBlock2D"] * 3, "up_block_types": ["CrossAttnUpBlock2D"] * 3,
}


CROSS_DIM = 8


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**overrides) -> dict:
    """SD 1.5's block layout (4 stages, 2 pairs each, cross-attention in the outer three) at tiny widths."""
    cfg = json.loads(SD15_UNET.read_text()) if SD15_UNET.exists() else {
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, "layers_per_block": 2,
        "in_channels": 4, "out_channels": 4,
    }
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg.update(block_out_channels=[8, 16, 16, 16], norm_num_groups=4, cross_attention_dim=CROSS_DIM,
               attention_head_dim=4, sample_size=8)
    cfg.update(overrides)
    return cfg


def tiny_unet(seed: int = 0, **overrides):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(tiny_config(**overrides)).eval()


def inputs(cfg_dim: int = CROSS_DIM, size: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, size, size, generator=g), torch.tensor([10.0, 700.0]),
            torch.randn(2, 7, cfg_dim, generator=g))


def run(unet, args) -> torch.Tensor:
    with torch.no_grad():
        return unet(args[0], args[1], encoder_hidden_states=args[2]).sample


SPECS = {
    "nothing": PruneSpec(),
    "bk-base": None,  # filled from the preset for the tiny config
    "bk-small": None,
    "bk-tiny": None,
    "mid": PruneSpec(drop_mid=True),
    "attention": PruneSpec(drop_attention_down=(0,), drop_attention_up=(3, 2)),
    "uneven": PruneSpec(remove_down=((0, 1), (2, 0)), remove_up=((3, 1), (1, 2)), drop_mid=True),
}


def spec_for(name: str, config: dict) -> PruneSpec:
    return SPECS[name] if SPECS[name] is not None else prune.preset_spec(config, name)


# ------------------------------------------------------------------------------------------ full-size configs


@needs_shared
def test_bk_small_preset_reproduces_published_bk_sdm_small():
    sd15 = json.loads(SD15_UNET.read_text())
    published = json.loads(BK_SMALL_UNET.read_text())
    ours = prune.pruned_config(sd15, prune.preset_spec(sd15, "bk-small"))
    diff = prune.compare_configs(ours, published)
    assert diff.same, diff.differences
    assert prune.parameter_count(ours) == prune.parameter_count(published) == 482_346_884


@needs_shared
@pytest.mark.parametrize("preset,published", [("bk-base", PUBLISHED_BK_BASE), ("bk-tiny", PUBLISHED_BK_TINY)])
def test_bk_base_and_tiny_presets_match_published_configs(preset, published):
    sd15 = json.loads(SD15_UNET.read_text())
    reference = {**{k: v for k, v in sd15.items() if not k.startswith("_")}, **published}
    ours = prune.pruned_config(sd15, prune.preset_spec(sd15, preset))
    diff = prune.compare_configs(ours, reference)
    assert diff.same, diff.differences
    teacher = prune.parameter_count(sd15)
    assert prune.parameter_count(ours) < teacher


@needs_shared
def test_sd21_presets_keep_per_block_head_dims_in_step():
    sd21 = json.loads(SD21_UNET.read_text())
    tiny = prune.pruned_config(sd21, prune.preset_spec(sd21, "bk-tiny"))
    # Nota's v2-base bk_tiny config: head dims of the three surviving stages, linear projections kept.
    assert tiny["attention_head_dim"] == [5, 10, 20]
    assert tiny["use_linear_projection"] is True and tiny["cross_attention_dim"] == 1024
    counts = [prune.parameter_count(prune.pruned_config(sd21, prune.preset_spec(sd21, p))) for p in prune.PRESETS]
    assert counts == sorted(counts, reverse=True)


# ---------------------------------------------------------------------------------------------- surgery


def test_removing_nothing_is_the_identity():
    teacher = tiny_unet()
    student = prune.prune_unet(teacher, PruneSpec())
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
    assert public(student.config) == public(teacher.config)
    for (k, a), (k2, b) in zip(teacher.state_dict().items(), student.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    args = inputs()
    assert torch.equal(run(teacher, args), run(student, args))


@pytest.mark.parametrize("name", ["bk-base", "bk-small", "bk-tiny", "mid", "attention", "uneven"])
def test_surviving_weights_are_the_teachers_bit_for_bit(name):
    teacher = tiny_unet()
    spec = spec_for(name, tiny_config())
    student = prune.prune_unet(teacher, spec)
    layout = prune.plan_layout(teacher.config, spec)
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    assert len(s_state) < len(t_state)
    for key, tensor in s_state.items():
        assert torch.equal(tensor, t_state[prune.teacher_key(layout, key)]), key
    assert sum(p.numel() for p in student.parameters()) == prune.parameter_count(dict(student.config))


def test_bk_small_on_tiny_unet_follows_bk_sdm_initialisation():
    teacher = tiny_unet()
    spec = prune.preset_spec(tiny_config(), "bk-small")
    layout = prune.plan_layout(teacher.config, spec)
    # BK-SDM: down stages keep pair 0; up blocks keep pairs 0 and 2 (Nota's copy_weight_from_teacher).
    assert [p.resnets for p in layout.down] == [(0,)] * 4
    assert [p.resnets for p in layout.up] == [(0, 2)] * 4
    assert prune.teacher_key(layout, "up_blocks.1.attentions.1.proj_in.weight") == "up_blocks.1.attentions.2.proj_in.weight"
    assert not layout.mid


def test_bk_tiny_shifts_up_blocks_and_drops_the_new_innermost_downsampler():
    teacher = tiny_unet()
    spec = prune.preset_spec(tiny_config(), "bk-tiny")
    student = prune.prune_unet(teacher, spec)
    assert len(student.down_blocks) == 3 and student.down_blocks[-1].downsamplers is None
    layout = prune.plan_layout(teacher.config, spec)
    assert [p.teacher_index for p in layout.up] == [1, 2, 3]
    assert prune.teacher_key(layout, "up_blocks.0.upsamplers.0.conv.weight") == "up_blocks.1.upsamplers.0.conv.weight"
    args = inputs()
    assert run(student, args).shape == args[0].shape


def test_changes_show_only_downstream_of_the_removed_block():
    """Dropping the attention of the last up block leaves every earlier activation bit-identical."""
    teacher = tiny_unet()
    spec = PruneSpec(drop_attention_up=(3,))
    student = prune.prune_unet(teacher, spec)
    captured: dict[str, dict[str, torch.Tensor]] = {"t": {}, "s": {}}

    def hook(store, name):
        def fn(_module, _inp, out):
            store[name] = (out[0] if isinstance(out, tuple) else out).detach()
        return fn

    for tag, model in (("t", teacher), ("s", student)):
        for i, block in enumerate(model.down_blocks):
            block.register_forward_hook(hook(captured[tag], f"down{i}"))
        model.mid_block.register_forward_hook(hook(captured[tag], "mid"))
        for i, block in enumerate(model.up_blocks):
            block.register_forward_hook(hook(captured[tag], f"up{i}"))
    args = inputs()
    out_t, out_s = run(teacher, args), run(student, args)
    for name in ["down0", "down1", "down2", "down3", "mid", "up0", "up1", "up2"]:
        assert torch.equal(captured["t"][name], captured["s"][name]), name
    assert not torch.allclose(captured["t"]["up3"], captured["s"]["up3"])
    assert not torch.allclose(out_t, out_s)


@pytest.mark.parametrize("name", ["bk-base", "bk-small", "bk-tiny", "mid", "attention", "uneven"])
def test_subnet_view_computes_exactly_the_pruned_student(name):
    teacher = tiny_unet()
    spec = spec_for(name, tiny_config())
    args = inputs()
    before = run(teacher, args)
    student = prune.prune_unet(teacher, spec)
    with prune.subnet_view(teacher, spec):
        viewed = run(teacher, args)
    torch.testing.assert_close(viewed, run(student, args), rtol=0, atol=1e-6)
    assert torch.equal(run(teacher, args), before), "the view must restore the teacher"
    assert len(teacher.state_dict()) == len(tiny_unet().state_dict())


def test_view_gradients_reach_only_surviving_teacher_parameters():
    teacher = tiny_unet().train()
    spec = prune.preset_spec(tiny_config(), "bk-small")
    args = inputs()
    with prune.subnet_view(teacher, spec):
        teacher(args[0], args[1], encoder_hidden_states=args[2]).sample.square().mean().backward()
    assert teacher.down_blocks[0].resnets[0].conv1.weight.grad is not None
    assert teacher.down_blocks[0].resnets[1].conv1.weight.grad is None
    assert teacher.up_blocks[1].attentions[1].proj_in.weight.grad is None
    assert teacher.up_blocks[1].attentions[2].proj_in.weight.grad is not None
    assert teacher.mid_block.resnets[0].conv1.weight.grad is None


def test_saved_student_is_an_ordinary_diffusers_folder(tmp_path):
    from diffusers import UNet2DConditionModel

    teacher = tiny_unet()
    spec = prune.preset_spec(tiny_config(), "bk-small")
    student = prune.prune_unet(teacher, spec)
    out = prune.save_student(student, tmp_path / "unet", spec, "tiny", {})
    assert (out / "config.json").exists() and (out / "diffusion_pytorch_model.safetensors").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["_class_name"] == "UNet2DConditionModel" and config["mid_block_type"] is None
    reloaded = UNet2DConditionModel.from_pretrained(out).eval()
    args = inputs()
    # the weights are the same bits; the outputs may differ by an ulp (a reloaded module can take other kernels)
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), student.state_dict().values()))
    torch.testing.assert_close(run(reloaded, args), run(student, args), rtol=1e-5, atol=1e-6)
    record = json.loads((out / "edgediff_prune.json").read_text())
    assert PruneSpec.from_dict(record["spec"]) == spec


# ----------------------------------------------------------------------------------------------- errors


def test_down_and_up_removals_must_stay_expressible_in_a_diffusers_config():
    with pytest.raises(RecipeError, match="mirror up_blocks.3"):
        prune.plan_layout(tiny_config(), PruneSpec(remove_down=((0, 1),)))


def test_removing_a_pair_whose_successor_cannot_take_its_input_is_refused():
    # down_blocks.0 maps 8 -> 8 channels, down_blocks.1 widens 8 -> 16: its pair 0 cannot go.
    teacher = tiny_unet()
    with pytest.raises(UnsupportedError, match="remove a different depth"):
        prune.prune_unet(teacher, PruneSpec(remove_down=((1, 0),), remove_up=((2, 1),)))


def test_bad_specs_teach_the_fix():
    cfg = tiny_config()
    with pytest.raises(RecipeError, match="no depth 5"):
        prune.plan_layout(cfg, PruneSpec(remove_down=((0, 5),), remove_up=((3, 0),)))
    with pytest.raises(RecipeError, match="no attention"):
        prune.plan_layout(cfg, PruneSpec(drop_attention_down=(3,)))
    with pytest.raises(RecipeError, match="no pair left"):
        prune.plan_layout(cfg, PruneSpec(remove_down=((0, 0), (0, 1)), remove_up=((3, 0), (3, 1))))
    with pytest.raises(RecipeError, match="single pair"):
        prune.preset_spec(tiny_config(layers_per_block=1), "bk-base")
    with pytest.raises(RecipeError, match="unknown prune field"):
        PruneSpec.from_dict({"remove_mid": True})


def test_spec_round_trips_and_is_order_independent():
    a = PruneSpec(remove_down=((2, 1), (0, 1)), remove_up=((3, 1), (1, 1)), drop_attention_up=(3, 1))
    b = PruneSpec(remove_down=((0, 1), (2, 1)), remove_up=((1, 1), (3, 1)), drop_attention_up=(1, 3))
    assert a == b and hash(a) == hash(b)
    assert PruneSpec.from_dict(json.loads(json.dumps(a.to_dict()))) == a


# -------------------------------------------------------------------------------------------------- CLI


def cli(argv: list[str]) -> int:
    """Run the prune command through its own argparse registration (the CLI's other commands may not exist)."""
    import argparse

    from edgediff.commands import prune as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_prune_command_writes_a_pruned_unet_folder(tmp_path, capsys):
    from diffusers import UNet2DConditionModel

    teacher = tiny_unet()
    teacher.save_pretrained(tmp_path / "model" / "unet", safe_serialization=True)
    assert cli(["prune", str(tmp_path / "model"), "--preset", "bk-small", "--output", str(tmp_path / "out")]) == 0
    student = UNet2DConditionModel.from_pretrained(tmp_path / "out").eval()
    expected = prune.prune_unet(teacher, prune.preset_spec(tiny_config(), "bk-small"))
    args = inputs()
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), expected.state_dict().values()))
    torch.testing.assert_close(run(student, args), run(expected, args), rtol=1e-5, atol=1e-6)
    assert "removed mid_block" in capsys.readouterr().out


def test_prune_command_random_weights_needs_only_a_config(tmp_path):
    (tmp_path / "unet").mkdir()
    cfg = {"_class_name": "UNet2DConditionModel", **tiny_config()}
    (tmp_path / "unet" / "config.json").write_text(json.dumps(cfg))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"drop_mid": True, "drop_attention_up": [3]}))
    assert cli(["prune", str(tmp_path / "unet"), "--spec", str(spec_file), "--random-weights",
                "--output", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["mid_block_type"] is None and written["up_block_types"][3] == "UpBlock2D"


# ------------------------------------------------------------------------------------------------- ONNX


def test_pruned_unet_with_no_mid_block_and_uneven_layers_exports_to_onnx(tmp_path):
    """The dynamo exporter must handle `mid_block_type: null` and per-stage `layers_per_block`."""
    ort = pytest.importorskip("onnxruntime")
    teacher = tiny_unet()
    student = prune.prune_unet(teacher, SPECS["uneven"]).eval()
    assert isinstance(student.config.layers_per_block, list) and student.mid_block is None

    class Wrapper(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]

    args = inputs()
    path = tmp_path / "unet.onnx"
    torch.onnx.export(Wrapper(student).eval(), args, str(path), dynamo=True, optimize=False,
                      input_names=["sample", "timestep", "encoder_hidden_states"], output_names=["noise_pred"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"sample": args[0].numpy(), "timestep": args[1].numpy(),
                                "encoder_hidden_states": args[2].numpy()})
    expected = run(student, args).numpy()
    assert abs(got - expected).max() < 1e-4


# -------------------------------------------------------------------------------------------- full size


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("preset", prune.PRESETS)
def test_full_size_sd15_presets_build_and_run(preset):
    """Real allocation of each pruned SD 1.5 UNet (random weights) and one small forward pass."""
    from diffusers import UNet2DConditionModel

    sd15 = json.loads(SD15_UNET.read_text())
    cfg = prune.pruned_config(sd15, prune.preset_spec(sd15, preset))
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(cfg).eval()
    assert sum(p.numel() for p in unet.parameters()) == prune.parameter_count(cfg)
    args = (torch.randn(1, 4, 16, 16), torch.tensor([500.0]), torch.randn(1, 77, 768))
    out = run(unet, args)
    assert out.shape == (1, 4, 16, 16) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------- recipe step


def test_prune_recipe_step_swaps_in_the_pruned_unet_and_rebuilds_components():
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import LoadedModel

    model = LoadedModel(source="tiny", kind="unet", unet=tiny_unet())
    components = build_components(model, ["unet"], ComponentShapes(64, 64, text_length=7))
    rebuilt = prune.prune_slim_step(model, components, {"preset": "bk-small"})
    assert model.unet.mid_block is None and rebuilt[0].inputs == components[0].inputs
    expected = prune.prune_unet(tiny_unet(), prune.preset_spec(tiny_config(), "bk-small"))
    args = inputs()
    # the step hands back the pruned UNet from the stage cache (saved and reloaded): the same weights, bit for bit,
    # while a reloaded module's outputs may differ by an ulp
    assert all(torch.equal(a, b) for a, b in zip(model.unet.state_dict().values(), expected.state_dict().values()))
    torch.testing.assert_close(run(model.unet, args), run(expected, args), rtol=1e-5, atol=1e-6)
    with pytest.raises(RecipeError, match="exactly one of"):
        prune.prune_slim_step(model, components, {"preset": "bk-small", "drop_mid": True})
