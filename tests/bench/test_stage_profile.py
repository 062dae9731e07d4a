"""bench.stage_profile: the parts of a step, and a tiny run of every stage and implementation."""
import re

import pytest
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from bench import stage_profile


def test_a_backward_op_goes_to_the_part_of_its_forward_op():
    layer, x = torch.nn.Linear(64, 64), torch.randn(256, 64)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function(stage_profile.PREFIX + "embedding GEMM"):
            y = layer(x)
        with record_function(stage_profile.PREFIX + "EM"):
            z = y.relu()
        z.square().sum().backward()  # outside every range: each node goes where its forward op ran
    events = prof.events()
    parts = stage_profile.split_by_part(events, wall_us=1e9)
    mm = [e for e in events if e.name == "aten::mm"]  # the weight gradient, under AddmmBackward0
    assert mm and all(stage_profile._backward_node(e).name.endswith("AddmmBackward0") for e in mm)
    gemm = sum(e.self_cpu_time_total for e in events if e.name in ("aten::addmm", "aten::mm")) / 1e6
    assert parts["embedding GEMM"] >= gemm > 0
    assert parts["EM"] > 0  # relu and its backward (threshold_backward)
    # every op counted once (self times): the ops' parts stay within the time the profile spans
    span_s = (max(e.time_range.end for e in events) - min(e.time_range.start for e in events)) / 1e6
    assert sum(v for k, v in parts.items() if k != "Python") <= span_s


@pytest.mark.parametrize("mode", list(stage_profile.MODES))
@pytest.mark.parametrize("stage", list(stage_profile.STAGES))
def test_each_stage_has_the_parts_it_runs(stage, mode):
    cfg, dataset, _ = stage_profile.bench_dataset("thumos14", 0.02, 0, torch.device("cpu"))
    model, run = stage_profile.stage_run(mode, stage, cfg, dataset, torch.device("cpu"), 0)
    plain, wall, parts = stage_profile.profiled(run, model)
    assert plain > 0 and wall > 0 and parts["Python"] >= 0, parts  # the ops' self times fit in the profiled wall
    for part in ("embedding GEMM", "EM", "walk", "heads, losses"):
        assert parts[part] > 0, part
    assert (parts["optimizer"] > 0) == (stage != "test"), parts
    assert (parts["bank"] > 0) == (stage == "inter"), parts
    assert (parts["data movement"] > 0) == (mode != "official" or stage != "test"), parts  # official: no packing
    assert model.embedding.forward.__func__ is torch.nn.Linear.forward  # the wrappers are gone


def test_prints_a_row_per_stage_and_implementation(capsys):
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        args = ["--scale", "0.01", "--modes", "official,reference", "--stages", "warmup,test", "--repeats", "1"]
        assert stage_profile.main(args) == 0
    finally:  # main sets them for the process, as bench.train_speed does
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    rows = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\| (warm-up epoch|test pass) \|", line)]
    assert len(rows) == 4 and all(line.count("|") == 5 + len(stage_profile.PARTS) for line in rows)
