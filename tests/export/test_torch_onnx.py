"""ONNX export of torch models that use tpc.torch.TensorProduct: custom nodes, fallback
functions told apart by overload, and the model in stock onnxruntime at another batch size."""

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import tpc
import tpc.torch
from tpc.export import build_ort_library, export_torch_onnx
from tpc.verify import relative_error, tolerance

TOLERANCE = tolerance("float32")
EXPORT_BATCH = 4
RUN_BATCH = 11

# Runs a model in a new interpreter with onnxruntime and numpy only, with a custom-op library
# when one is named, and saves its output.
RUNNER = textwrap.dedent("""
    import sys
    import numpy as np
    import onnxruntime as ort
    model, inputs, output, library = sys.argv[1:]
    options = ort.SessionOptions()
    if library:
        options.register_custom_ops_library(library)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    np.save(output, session.run(None, dict(np.load(inputs)))[0])
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("tpc", "tvm", "tvm_ffi", "torch"))
    assert not loaded, loaded
""")


class Model(torch.nn.Module):
    """Three products of different specs, one of them called twice, and a Linear on scalars."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = tpc.torch.TensorProduct(tpc.FullyConnectedTensorProduct("2x0e+1x1o", "0e+1o", "2x0e+1x1o"))
        self.linear = torch.nn.Linear(2, 2)
        self.channelwise = tpc.torch.TensorProduct(
            tpc.ChannelwiseTensorProduct("2x0e+1x1o", "0e+1o", 1, shared_weights=False))
        self.square = tpc.torch.TensorProduct(tpc.TensorProduct(
            "0e+1o", "0e+1o", "0e+1o+1e", [(0, 0, 0, "uuu", False), (1, 1, 0, "uuu", False),
                                           (0, 1, 1, "uuu", False), (1, 1, 2, "uuu", False)]))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        h = self.mix(x1, x2)
        h = torch.cat([self.linear(h[:, :2]), h[:, 2:]], dim=1)
        h = self.channelwise(self.mix(h, x2), x2, weight)
        return torch.cat([h, self.square(x2, x2)], dim=1)


def _inputs(model: Model, batch: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = {"x1": (batch, 5), "x2": (batch, 4), "weight": (batch, model.channelwise.tp.weight_numel)}
    return {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def _in_fresh_onnxruntime(folder, path, feeds: dict[str, torch.Tensor], library=None) -> np.ndarray:
    inputs, output = folder / "inputs.npz", folder / "output.npy"
    np.savez(inputs, **{name: tensor.numpy() for name, tensor in feeds.items()})
    done = subprocess.run([sys.executable, "-c", RUNNER, str(path), str(inputs), str(output), str(library or "")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return np.load(output)


def _attributes(node: onnx.NodeProto) -> dict[str, str]:
    return {attribute.name: onnx.helper.get_attribute_value(attribute).decode() for attribute in node.attribute}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The model, its export at batch EXPORT_BATCH, and the path it was written to."""
    torch.manual_seed(0)
    model = Model().eval()
    path = tmp_path_factory.mktemp("torch-onnx") / "model.onnx"
    proto = export_torch_onnx(model, tuple(_inputs(model, EXPORT_BATCH, 1).values()), path)
    return model, proto, path


def test_every_product_is_a_custom_node_with_its_own_fallback(exported):
    model, proto, path = exported
    onnx.checker.check_model(proto, full_check=True)
    assert onnx.load(path) == proto
    assert 10 <= proto.ir_version <= 13
    assert {(entry.domain, entry.version) for entry in proto.opset_import} == {("", 21), ("ai.tpc", 1)}

    products = {module.tp.fingerprint: module.tp for module in (model.mix, model.channelwise, model.square)}
    nodes = [node for node in proto.graph.node if node.domain == "ai.tpc"]
    assert [node.op_type for node in nodes] == ["TensorProduct"] * 4
    assert {node.op_type for node in proto.graph.node if node.domain == ""} >= {"Gemm"}
    functions = {(function.domain, function.name, function.overload): function for function in proto.functions}
    assert set(functions) == {("ai.tpc", "TensorProduct", f"{fingerprint}-float32") for fingerprint in products}
    initializers = {tensor.name for tensor in proto.graph.initializer}

    for node in nodes:
        attributes = _attributes(node)
        tp = products[attributes["fingerprint"]]
        assert attributes == {"spec": tp.to_json(), "fingerprint": tp.fingerprint, "algorithm": "cg",
                              "dtype": "float32"}
        assert node.overload == f"{tp.fingerprint}-float32"
        function = functions[("ai.tpc", "TensorProduct", node.overload)]
        operands = 3 if tp.weight_numel else 2
        assert list(function.input[:operands]) == ["x1", "x2", "weight"][:operands]
        assert len(node.input) == len(function.input)
        coefficients = node.input[operands:]
        assert coefficients and set(coefficients) <= initializers
        for name, formal in zip(coefficients, function.input[operands:]):
            assert name.endswith(f"_{formal}")

    batch = {value.name: value.type.tensor_type.shape.dim[0].dim_param for value in proto.graph.input}
    assert batch == {"x1": "batch", "x2": "batch", "weight": "batch"}


def test_the_model_runs_in_stock_onnxruntime_at_another_batch(exported, tmp_path):
    model, _, path = exported
    feeds = _inputs(model, RUN_BATCH, 2)
    with torch.no_grad():
        expected = model(*feeds.values()).numpy()
    actual = _in_fresh_onnxruntime(tmp_path, path, feeds)
    assert actual.dtype == np.float32 and actual.shape == expected.shape == (RUN_BATCH, expected.shape[1])
    assert relative_error(actual, expected) < TOLERANCE


def test_a_static_float64_export_keeps_the_batch_size():
    tp = tpc.ChannelwiseTensorProduct("2x0e+1x1o", "0e+1o", 1, shared_weights=True)
    module = tpc.torch.TensorProduct(tp).double().eval()
    x1, x2 = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    proto = export_torch_onnx(module, (x1, x2), dynamic_batch=False)
    onnx.checker.check_model(proto, full_check=True)
    assert [[dim.dim_value for dim in value.type.tensor_type.shape.dim] for value in proto.graph.input] == \
        [[3, 5], [3, 4]]
    (node,) = [node for node in proto.graph.node if node.domain == "ai.tpc"]
    assert _attributes(node)["dtype"] == "float64" and node.overload == f"{tp.fingerprint}-float64"
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"x1": x1.numpy(), "x2": x2.numpy()})
    with torch.no_grad():
        assert relative_error(actual, module(x1, x2).numpy()) < tolerance("float64")


class Branches(torch.nn.Module):
    """A product in both branches of a ``torch.cond``, which export as subgraphs of an If node."""

    def __init__(self, tp: tpc.TensorProduct) -> None:
        super().__init__()
        self.product = tpc.torch.TensorProduct(tp)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return torch.cond(x1.sum() > 0, lambda a, b: self.product(a, b), lambda a, b: -self.product(a, b), (x1, x2))


def test_products_inside_control_flow_get_their_fallback():
    tp = tpc.ChannelwiseTensorProduct("2x0e+1x1o", "0e+1o", 1, shared_weights=True)
    module = Branches(tp).eval()
    proto = export_torch_onnx(module, (torch.randn(3, 5), torch.randn(3, 4)))
    onnx.checker.check_model(proto, full_check=True)
    (branch,) = [node for node in proto.graph.node if node.op_type == "If"]
    for attribute in branch.attribute:
        (node,) = [node for node in attribute.g.node if node.domain == "ai.tpc"]
        assert node.overload == f"{tp.fingerprint}-float32" and len(node.input) > 3
    assert [function.overload for function in proto.functions] == [f"{tp.fingerprint}-float32"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for sign in (1.0, -1.0):
        x1, x2 = sign * torch.rand(6, 5), torch.randn(6, 4)
        (actual,) = session.run(None, {"x1": x1.numpy(), "x2": x2.numpy()})
        with torch.no_grad():
            assert relative_error(actual, module(x1, x2).numpy()) < TOLERANCE


def test_a_custom_op_library_replaces_the_fallback(tmp_path):
    """With the library registered the node runs the compiled kernel, overload or not: the
    fallback is replaced by an identity that would give x1 back."""
    tp = tpc.ChannelwiseTensorProduct("2x0e+1x1o", "0e+1o", 1, shared_weights=False)
    module = tpc.torch.TensorProduct(tp).eval()
    proto = export_torch_onnx(module, (torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, tp.weight_numel)))
    (function,) = proto.functions
    del function.node[:]
    function.node.append(onnx.helper.make_node("Identity", ["x1"], ["y"]))
    path = tmp_path / "product.onnx"
    onnx.save_model(proto, path)
    library = build_ort_library(tpc.compile(tp, dtype="float32"), tmp_path / "product.so")
    feeds = {"x1": torch.randn(6, 5), "x2": torch.randn(6, 4), "weight": torch.randn(6, tp.weight_numel)}
    actual = _in_fresh_onnxruntime(tmp_path, path, feeds, library)
    with torch.no_grad():
        assert relative_error(actual, module(*feeds.values()).numpy()) < TOLERANCE


def test_arguments_must_be_a_module_and_a_tuple():
    module = tpc.torch.TensorProduct(tpc.ChannelwiseTensorProduct("2x0e", "0e", 1))
    with pytest.raises(TypeError, match="tuple"):
        export_torch_onnx(module, [torch.randn(3, 2), torch.randn(3, 1)])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        export_torch_onnx(lambda x: x, (torch.randn(3, 2),))
