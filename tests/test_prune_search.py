"""Latency table (per-block timing) and the latency-driven greedy search, on tiny real UNets."""

from __future__ import annotations

import json

import pytest
import torch

from edgediff.slim import latency_table as lt
from edgediff.slim import prune
from edgediff.slim.prune import PruneSpec


pytestmark = pytest.mark.usefixtures("one_thread")


def small_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    ).eval()


def test_removed_modules_are_exactly_what_surgery_drops():
    unet = small_unet()
    config = dict(unet.config)
    sizes = {name: sum(p.numel() for p in module.parameters()) for name, module in unet.named_modules()}
    total = sum(p.numel() for p in unet.parameters())
    for unit in prune.removal_units(config) + [prune.preset_spec(config, "bk-small")]:
        removed = lt.removed_modules(config, unit)
        student = prune.parameter_count(prune.pruned_config(config, unit))
        assert sum(sizes[m] for m in removed) == total - student, unit


def test_pytorch_latency_table_prices_every_block():
    unet = small_unet()
    args = lt.example_unet_args(unet, text_length=7)
    table = lt.measure_table(unet, args, engine="pytorch", runs=2, rounds=2, progress=False, method="blocks")
    assert set(table.blocks) == set(lt.timed_modules(unet)) and all(v > 0 for v in table.blocks.values())
    assert table.unet_ms > 0 and table.runs_per_block == 4
    config = dict(unet.config)
    unit = PruneSpec(drop_mid=True)
    assert table.saving_ms(config, unit) == table.blocks["mid_block"]
    assert table.estimate_ms(config, unit) == pytest.approx(table.unet_ms - table.blocks["mid_block"])


def test_block_inputs_reproduce_the_blocks_inside_the_unet():
    unet = small_unet()
    args = lt.example_unet_args(unet, text_length=7)
    names = lt.timed_modules(unet)
    inputs = lt.capture_block_inputs(unet, args, names)
    assert inputs["mid_block"][0].shape[1] == 32 and len(inputs["mid_block"]) == 3
    assert inputs["down_blocks.0.attentions.1"][1].shape == args[2].shape
    assert inputs["up_blocks.0.resnets.0"][0].shape[1] == 64  # 32 + 32 skip channels


def synthetic(config, units):
    """A hand-made latency table and quality: each module costs and hurts a known amount."""
    names = lt.timed_modules(small_unet())
    blocks = {n: 1.0 + i for i, n in enumerate(names)}
    harm = {n: (7 * i) % 5 + 0.5 for i, n in enumerate(names)}
    table = lt.LatencyTable("t", "b", "fp32", "d", {}, blocks, unet_ms=sum(blocks.values()) + 10.0)

    def quality(spec):
        return -sum(harm[m] for m in lt.removed_modules(config, spec))

    return table, quality, harm


def test_greedy_search_removes_least_harm_per_millisecond_first_and_meets_the_budget():
    config = dict(small_unet().config)
    units = prune.removal_units(config)
    table, quality, harm = synthetic(config, units)
    budget = 0.6 * table.unet_ms
    result = prune.greedy_search(config, units, quality, lambda s: table.estimate_ms(config, s), budget,
                                 progress=False)
    assert result.reached and result.trace[-1].latency_ms <= budget
    assert prune.spec_error(config, result.spec) is None
    ratios = {u: -quality(u) / table.saving_ms(config, u) for u in units}
    first = result.trace[1]
    assert first.action == "remove" and first.unit == min(ratios, key=ratios.get).describe()
    # Nothing removed can be given back without breaking the budget, and no single swap is better.
    assert [s.action for s in result.trace].count("start") == 1
    final_q = quality(result.spec)
    assert result.trace[-1].quality == pytest.approx(final_q)


def test_search_gives_back_what_the_budget_allows():
    """Greedy overshoots when a late unit saves a lot; re-adding an earlier, now unnecessary unit recovers quality."""
    config = dict(small_unet().config)
    units = [PruneSpec(drop_mid=True), PruneSpec(drop_attention_down=(0,)), PruneSpec(drop_attention_up=(1,))]
    cost = {units[0]: 10.0, units[1]: 10.0, units[2]: 60.0}
    harm = {units[0]: 1.0, units[1]: 1.5, units[2]: 7.0}

    def parts(spec):
        return [u for u in units if spec.merged(u) == spec]

    result = prune.greedy_search(
        config, units, lambda s: -sum(harm[u] for u in parts(s)), lambda s: 100.0 - sum(cost[u] for u in parts(s)),
        budget_ms=45.0, progress=False)
    # Harm per ms: mid 0.1, then attention-up 0.117 (< attention-down 0.15) overshoots to 30 ms; the mid
    # block is no longer needed for the 45 ms budget, so it comes back.
    assert [s.action for s in result.trace] == ["start", "remove", "remove", "re-add"]
    assert result.trace[1].unit == ["mid_block"] and result.trace[3].unit == ["mid_block"]
    assert result.spec == units[2] and result.trace[-1].latency_ms == 40.0


def test_prune_command_search_writes_trace_plot_and_a_loadable_unet(tmp_path):
    pytest.importorskip("accelerate")
    from diffusers import UNet2DConditionModel

    from tests.distill_tiny import tokenizer_dir
    from tests.test_prune_training import cli_main, save_prunable_teacher

    if not tokenizer_dir().is_dir():
        pytest.skip("needs the CLIP tokenizer files in shared/architectures")
    teacher = save_prunable_teacher(tmp_path / "teacher")
    out = tmp_path / "searched"
    assert cli_main(["prune", str(teacher), "--latency-budget", "0.7", "--latency-engine", "pytorch",
                     "--quality", "output", "--search-prompts", "4", "--output", str(out)]) == 0
    record = json.loads((out / "search" / "trace.json").read_text())
    assert record["trace"][0]["action"] == "start" and len(record["trace"]) >= 2
    assert (out / "search" / "quality_latency.png").stat().st_size > 10_000
    table = lt.LatencyTable.load(out / "search" / "latency_table.json")
    spec = PruneSpec.from_dict(record["spec"])
    if record["reached"]:
        assert table.estimate_ms(dict(UNet2DConditionModel.load_config(teacher / "unet")), spec) <= 0.7 * table.unet_ms
    student = UNet2DConditionModel.from_pretrained(out)
    assert student.config.layers_per_block is not None
    assert json.loads((out / "edgediff_prune.json").read_text())["spec"] == spec.to_dict()


@pytest.mark.slow
def test_backend_latency_table_lowers_blocks_through_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    unet = small_unet()
    args = lt.example_unet_args(unet, text_length=7)
    table = lt.measure_table(unet, args, target="host-cpu", engine="backend", runs=2, rounds=2, method="blocks",
                             modules=["mid_block", "down_blocks.0.attentions.1"], work_dir=tmp_path, progress=False)
    assert table.backend == "onnxruntime" and set(table.blocks) == {"mid_block", "down_blocks.0.attentions.1"}
    assert (tmp_path / "mid_block.onnx").exists() and table.unet_ms > 0


# ---- ablation pricing (whole UNet minus a unit), CPU clock, text path ------------------------------------------


def default_like_unet(seed: int = 0):
    """The default model's layout at tiny width: one pair per stage, two inner stages of equal width."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    ).eval()


def test_inner_stage_unit_takes_the_mid_block_along_only_when_it_must():
    small = dict(small_unet().config)  # widths 16, 32: the mid block (32) cannot follow stage 0 (16)
    assert PruneSpec(drop_inner_stages=1) not in prune.removal_units(small)
    assert PruneSpec(drop_inner_stages=1, drop_mid=True) not in prune.removal_units(small)  # up block widths differ
    config = dict(default_like_unet().config)
    units = prune.removal_units(config)
    assert PruneSpec(drop_inner_stages=1) in units and PruneSpec(drop_mid=True) in units
    assert PruneSpec(drop_inner_stages=1) not in prune.removal_units(config, inner_stage=False)


def test_ablation_table_prices_every_unit_including_the_inner_stage():
    unet = default_like_unet()
    config = dict(unet.config)
    units = prune.removal_units(config)
    inner = PruneSpec(drop_inner_stages=1)
    args = lt.example_unet_args(unet, text_length=7)
    table = lt.measure_table(unet, args, engine="pytorch", runs=2, rounds=2, progress=False,
                             method="ablation", units=units, clock="cpu", threads=1)
    assert table.method == "ablation" and table.clock == "cpu" and table.threads == 1 and not table.blocks
    assert set(table.units) == {lt.unit_key(u) for u in units}
    # (no sign check: on a loaded 2-core host a ~1 ms difference between two tiny eager UNets is noise)
    assert table.saving_ms(config, inner) == table.units[lt.unit_key(inner)]
    both = PruneSpec(drop_mid=True, drop_attention_down=(0,))
    assert table.saving_ms(config, both) == pytest.approx(
        table.units[lt.unit_key(PruneSpec(drop_mid=True))] + table.units[lt.unit_key(PruneSpec(drop_attention_down=(0,)))])
    assert table.estimate_ms(config, both) == pytest.approx(table.unet_ms - table.saving_ms(config, both))


def test_overlapping_pair_units_count_once_and_unknown_removals_are_refused():
    config = dict(small_unet().config)
    keys = {lt.unit_key(u): 1.0 for u in prune.removal_units(config)}
    pair = PruneSpec(remove_down=((0, 0),), remove_up=((1, 2),))
    assert lt.contained_units(config, pair, keys) == [lt.unit_key(pair)]
    two = pair.merged(PruneSpec(remove_down=((1, 1),), remove_up=((0, 0),)))
    assert len(lt.contained_units(config, two, keys)) == 2
    from edgediff.errors import RecipeError

    with pytest.raises(RecipeError, match="no units that make up"):
        lt.contained_units(config, PruneSpec(drop_mid=True), {lt.unit_key(pair): 1.0})


def test_search_keeps_a_cross_attention_when_told_to():
    """Every unit is free of harm and the budget is out of reach: without the constraint the search removes
    every attention; with it, some cross-attention survives."""
    config = dict(small_unet().config)
    units = prune.removal_units(config, inner_stage=False)
    everything = prune.combine_units(config, PruneSpec(), units)
    assert not prune.keeps_text_path(config, everything) and prune.keeps_text_path(config, PruneSpec())

    def latency(spec):
        return 100.0 - 10.0 * len(spec.describe())

    free = prune.greedy_search(config, units, lambda s: 0.0, latency, 1.0, progress=False)
    assert not prune.keeps_text_path(config, free.spec)
    kept = prune.greedy_search(config, units, lambda s: 0.0, latency, 1.0, progress=False,
                               allowed=lambda s: prune.keeps_text_path(config, s))
    assert prune.keeps_text_path(config, kept.spec) and not kept.reached
