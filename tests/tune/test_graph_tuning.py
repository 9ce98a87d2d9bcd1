"""Graph tuning: tasks from a graph's products, one shared budget, per-task records that
compile_graph (and any other graph with the same product) then uses."""

import numpy as np
import pytest

import tpc
from tpc.cli import main
from tpc.graph import Graph, Linear
from tpc.ops import Fused, Product
from tpc.records import read_records
from tpc.tune.graph import Task, TaskProgress, _next_task, graph_tasks
from tpc.tune.tuner import TuneResult
from tpc.verify import relative_error, tolerance

NODE = "2x0e+2x1o"
SMALL = tpc.ChannelwiseTensorProduct(NODE, "0e+1o", 1)
OTHER = tpc.ChannelwiseTensorProduct("3x0e", "0e+1o", 1)


def two_layer_graph() -> Graph:
    """Two message-passing layers with the same product, and a different product on the edges."""
    g = Graph()
    h = g.input("h", ("nodes", NODE), "float32")
    senders, receivers = g.input("senders", ("edges",), "int64"), g.input("receivers", ("edges",), "int64")
    sh = g.input("sh", ("edges", "0e+1o"), "float32")
    w = g.input("w", ("edges", SMALL.weight_numel), "float32")
    for layer in range(2):
        messages = g.tensor_product(g.gather(h, senders), sh, w, SMALL, name=f"messages{layer}")
        summed = g.scatter_sum(messages, receivers, "nodes", name=f"summed{layer}")
        mix = g.input(f"w_mix{layer}", (Linear(SMALL.irreps_out, NODE).weight_numel,), "float32")
        h = g.linear(summed, NODE, mix, name=f"mix{layer}")
    w_other = g.input("w_other", ("edges", OTHER.weight_numel), "float32")
    g.output("h", h)
    g.output("edge_out", g.tensor_product(g.input("s", ("edges", "3x0e"), "float32"), sh, w_other, OTHER,
                                          name="edge_product"))
    return g


def test_tasks_merge_identical_products_and_need_sizes():
    g = two_layer_graph()
    fused, product = graph_tasks(g, {"edges": 500, "nodes": 40})
    assert (fused.fusion, fused.count, fused.nodes, fused.batch) == ("gather+scatter", 2, ("messages0", "messages1"),
                                                                      500)
    assert (product.fusion, product.count, product.nodes) == (None, 1, ("edge_product",))
    assert fused.op == Fused(SMALL, "gather+scatter") and product.op == Product(OTHER)
    assert fused.op.fingerprint != SMALL.fingerprint
    unfused = graph_tasks(g, {"edges": 500}, "none")
    assert [(task.fusion, task.count) for task in unfused] == [(None, 2), (None, 1)]
    with pytest.raises(ValueError, match="give the size of dim 'edges'"):
        graph_tasks(g, {"nodes": 40})
    with pytest.raises(ValueError, match="fusion must be one of"):
        graph_tasks(g, {"edges": 500}, "all")


def _progress(task: Task, bests: list[float], trials: int) -> TaskProgress:
    """A task's progress as the scheduler sees it, from real records of its op."""
    from tpc.records import Record

    spec = tpc.resolve_target("host")
    records = [Record(task.op.fingerprint, task.batch, "float32", spec.tvm_dict, spec.fingerprint, 1, "cg", {},
                      bests[-1], None, "default" if i == 0 else "xgb", i) for i in range(trials)]
    return TaskProgress(task, TuneResult(records, None), history=list(bests))


def test_scheduler_gives_rounds_to_untuned_then_to_the_largest_expected_saving():
    heavy = Task(Fused(SMALL, "gather+scatter"), 500, 2, ("messages0", "messages1"))
    light = Task(Product(OTHER), 500, 1, ("edge_product",))
    assert _next_task([TaskProgress(heavy), TaskProgress(light)]).task is heavy
    assert _next_task([_progress(heavy, [1.0], 8), TaskProgress(light)]).task is light
    # the heavy task runs twice per call and still improves; the light one has stalled
    assert _next_task([_progress(heavy, [2.0, 1.5], 16), _progress(light, [1.0, 1.0], 16)]).task is heavy
    # a fast task gets nothing while a slow one remains
    assert _next_task([_progress(heavy, [0.01, 0.01], 16), _progress(light, [1.0, 1.0], 16)]).task is light
    exhausted = _progress(light, [1.0], 4)
    exhausted.exhausted = True
    assert _next_task([exhausted]) is None


def test_tune_graph_shares_the_budget_and_compile_graph_uses_the_records(isolated, rng):
    g = two_layer_graph()
    sizes = {"edges": 300, "nodes": 30}
    result = tpc.tune_graph(g, sizes, trials=5, round_size=2, log_dir=isolated / "logs", progress=False)
    trials = [progress.trials for progress in result.tasks]
    assert sum(trials) == 5 and all(count >= 2 for count in trials)
    assert result.total("best") <= result.total("default")
    for progress in result.tasks:
        logged = read_records(progress.result.log)
        assert len(logged) == progress.trials and {record.op for record in logged} == {progress.task.op.fingerprint}
    compiled = tpc.compile_graph(g, sizes=sizes)
    sources = {step.node: step.schedule.source for step in compiled.steps if step.schedule is not None}
    assert sources == {"summed0": "user cache", "summed1": "user cache", "edge_product": "user cache"}
    default = tpc.compile_graph(g, tuned=False)
    assert {step.schedule.source for step in default.steps if step.schedule is not None} == {"default"}
    inputs = {"h": rng.standard_normal((30, 8)), "senders": rng.integers(0, 30, 300),
              "receivers": rng.integers(0, 30, 300), "sh": rng.standard_normal((300, 4)),
              "w": rng.standard_normal((300, SMALL.weight_numel)), "s": rng.standard_normal((300, 3)),
              "w_other": rng.standard_normal((300, OTHER.weight_numel)),
              **{f"w_mix{i}": rng.standard_normal(Linear(SMALL.irreps_out, NODE).weight_numel) for i in range(2)}}
    expected = g.reference(**inputs)
    got = compiled(**{name: value.astype(np.float32) if value.dtype == np.float64 else value
                      for name, value in inputs.items()})
    for name in expected:
        assert relative_error(got[name], expected[name]) < tolerance("float32"), name
    again = tpc.tune_graph(g, sizes, trials=5, round_size=2, log_dir=isolated / "logs", progress=False)
    assert [progress.trials for progress in again.tasks] == trials  # resumed: nothing measured twice


def test_tune_command_takes_a_graph(isolated, capsys, monkeypatch):
    monkeypatch.chdir(isolated)  # the command writes its logs under ./tuning_logs
    path = isolated / "graph.json"
    path.write_text(two_layer_graph().to_json())
    assert main(["tune", "--graph", str(path), "--size", "edges=200", "--size", "nodes=20", "--trials", "2",
                 "--fusion", "none"]) == 0
    out = capsys.readouterr().out
    assert "messages0+messages1 (product, 200 rows)" in out and "products per graph call" in out
    assert main(["tune", "--graph", str(path), "--preset", "fc-small"]) == 2
    assert "tunes one product" in capsys.readouterr().err
    assert main(["tune", "--graph", str(path), "--size", "edges=0"]) == 2
    assert "DIM=N with N a positive integer" in capsys.readouterr().err
    assert main(["tune", "--graph", str(path), "--trials", "2"]) == 2
    assert "give the size of dim 'edges'" in capsys.readouterr().err
