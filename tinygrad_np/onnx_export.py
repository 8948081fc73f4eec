"""ONNX export of Sequential models, for inference anywhere ONNX runs (onnxruntime, browsers, phones).

Layer by layer: Linear -> Gemm(transB=1) (or MatMul + Add when an example has more than one dimension),
ReLU, Tanh, Sigmoid, Softmax, LogSoftmax -> the ONNX op of the same name (opset 13+ semantics: along one axis,
as here), LeakyReLU -> LeakyRelu(alpha=negative_slope) (or PRelu, where a float32 attribute would round a
float64 slope), Flatten -> Flatten(axis=1) or Reshape, Dropout -> nothing (export is for inference),
Conv2d -> Conv, MaxPool2d -> MaxPool, AvgPool2d -> AveragePool, BatchNorm1d/2d -> BatchNormalization with the
running statistics (eval mode). The batch dimension is symbolic ("batch") unless `batch_size` is given. Needs
the `onnx` extra, imported lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np import __version__, nn
from tinygrad_np.errors import import_extra
from tinygrad_np.files import write_atomic
from tinygrad_np.nn import functional as F
from tinygrad_np.spec import SpecError, spec_from_model
from tinygrad_np.tensor import Tensor, no_grad

# Opset 17 / IR 8 (ONNX 1.12): old enough for any onnxruntime of the last few years, new enough for
# axis-wise Softmax and LogSoftmax.
OPSET = 17
IR_VERSION = 8
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def to_onnx(model: nn.Module, batch_size: int | None = None, input_size: int | list[int] | None = None) -> Any:
    """The `onnx.ModelProto` computing `model` in eval mode (checked with onnx.checker, full_check=True)."""
    onnx = import_extra("onnx", "onnx", "ONNX export")
    from onnx import TensorProto, helper, numpy_helper

    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None (a symbolic batch), got {batch_size!r}")
    try:
        spec = spec_from_model(model, input_size)
    except SpecError as err:
        raise ValueError(f"export_onnx can't export this model: {err}") from None
    elem_type = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[spec["dtype"]]
    example_shape = [spec["input_size"]] if isinstance(spec["input_size"], int) else list(spec["input_size"])

    nodes, initializers = [], []
    current, shape = INPUT_NAME, list(example_shape)  # shape: one example's, without the batch dimension

    def add(op: str, inputs: list[str], **attributes: Any) -> None:
        nonlocal current
        name = f"{len(nodes)}_{op}"
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        current = name

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    for index, layer in enumerate(model):
        if isinstance(layer, nn.Linear):
            bias = [constant(f"{index}.bias", layer.bias.data)] if layer.bias is not None else []
            if len(shape) == 1:
                add("Gemm", [current, constant(f"{index}.weight", layer.weight.data), *bias], transB=1)
            else:  # Gemm is 2-D only; MatMul broadcasts over the leading dimensions as x @ W^T does
                add("MatMul", [current, constant(f"{index}.weight_transposed", layer.weight.data.T)])
                if bias:
                    add("Add", [current, *bias])
        elif isinstance(layer, (nn.ReLU, nn.Tanh, nn.Sigmoid)):
            add({nn.ReLU: "Relu", nn.Tanh: "Tanh", nn.Sigmoid: "Sigmoid"}[type(layer)], [current])
        elif isinstance(layer, nn.LeakyReLU):
            slope = layer.negative_slope
            if spec["dtype"] == "float32" or float(np.float32(slope)) == slope:
                add("LeakyRelu", [current], alpha=float(slope))
            else:  # an attribute is float32, which would round a float64 model's slope: PRelu takes it as a tensor
                add("PRelu", [current, constant(f"{index}.negative_slope", np.array(slope, dtype=spec["dtype"]))])
        elif isinstance(layer, (nn.Softmax, nn.LogSoftmax)):
            add(type(layer).__name__, [current], axis=layer.axis)
        elif isinstance(layer, nn.Flatten):
            if layer.start_dim == 1:
                add("Flatten", [current], axis=1)
            else:  # Reshape's 0 copies a dimension: keep the first start_dim, merge the rest
                target = np.array([0] * layer.start_dim + [-1], dtype=np.int64)
                add("Reshape", [current, constant(f"{index}.shape", target)])
        elif isinstance(layer, nn.Conv2d):
            bias = [constant(f"{index}.bias", layer.bias.data)] if layer.bias is not None else []
            add("Conv", [current, constant(f"{index}.weight", layer.weight.data), *bias],
                kernel_shape=list(layer.kernel_size), strides=list(layer.stride), dilations=list(layer.dilation),
                pads=_conv_pads(layer))
        elif isinstance(layer, nn.MaxPool2d):
            add("MaxPool", [current], **_pool_attributes(layer), dilations=list(layer.dilation))
        elif isinstance(layer, nn.AvgPool2d):
            if layer.divisor_override is not None:
                raise ValueError(f"export_onnx can't export layer {index}: AvgPool2d's divisor_override has no "
                                 "ONNX equivalent")
            add("AveragePool", [current], **_pool_attributes(layer), count_include_pad=int(layer.count_include_pad))
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if layer.running_mean is None or layer.running_var is None:
                raise ValueError(f"export_onnx can't export layer {index}: a {type(layer).__name__} without running "
                                 "statistics (track_running_stats=False) normalizes by each batch's own, even in eval")
            ones, zeros = np.ones(layer.num_features, spec["dtype"]), np.zeros(layer.num_features, spec["dtype"])
            scale = layer.weight.data if layer.weight is not None else ones
            shift = layer.bias.data if layer.bias is not None else zeros
            add("BatchNormalization", [current, constant(f"{index}.weight", scale), constant(f"{index}.bias", shift),
                                       constant(f"{index}.running_mean", layer.running_mean.data),
                                       constant(f"{index}.running_var", layer.running_var.data)],
                epsilon=layer.eps)
        # Dropout is the identity at inference: no node.
        shape = _output_shape(layer, shape, spec["dtype"])
    if not nodes:
        add("Identity", [current])
    nodes[-1].output[0] = OUTPUT_NAME

    batch: int | str = batch_size if batch_size is not None else "batch"
    graph = helper.make_graph(
        nodes,
        "tinygrad_np",
        [helper.make_tensor_value_info(INPUT_NAME, elem_type, [batch, *example_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, elem_type, [batch, *shape])],
        initializer=initializers,
    )
    proto = helper.make_model(
        graph,
        producer_name="tinygrad-np",
        producer_version=__version__,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
    )
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _conv_pads(layer: Any) -> list[int]:
    """ONNX's [top, left, bottom, right] from Conv2d's padding (a pair, "valid" or "same", as conv2d reads it)."""
    (top, bottom), (left, right) = F.conv_padding("Conv2d", layer.padding, layer.kernel_size, layer.stride,
                                                  layer.dilation)
    return [top, left, bottom, right]


def _pool_attributes(layer: Any) -> dict[str, Any]:
    return {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride),
            "pads": [*layer.padding, *layer.padding], "ceil_mode": int(layer.ceil_mode)}


def _output_shape(layer: nn.Module, shape: list[int], dtype: str) -> list[int]:
    """One example's shape after `layer`, from running it in eval mode on one zero example (no formula to repeat
    here, and a training-mode BatchNorm's statistics stay as they are)."""
    was_training = layer.training
    layer.eval()
    try:
        with no_grad():
            return list(layer(Tensor(np.zeros((1, *shape), dtype))).shape[1:])
    finally:
        layer.train(was_training)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    batch_size: int | None = None,
    input_size: int | list[int] | None = None,
) -> Path:
    """Write `model` as an ONNX file at `path` (atomically); input "input" (batch, *example), output "output".

    `input_size` is needed only when a Flatten comes before the first Linear and the model wasn't built
    from a spec (then e.g. [28, 28]).
    """
    proto = to_onnx(model, batch_size, input_size)
    return write_atomic(path, lambda file: file.write(proto.SerializeToString()))


def verify_onnx(model: nn.Module, path: str | os.PathLike, inputs: np.ndarray, tolerance: float = 1e-5) -> float:
    """The largest |onnxruntime - tinygrad_np| over `inputs`; ValueError unless allclose(rtol=atol=tolerance)."""
    onnxruntime = import_extra("onnxruntime", "onnx", "running an ONNX file")

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {INPUT_NAME: inputs})[0]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            ours = model(Tensor(inputs)).data
    finally:
        model.train(was_training)
    difference = float(np.max(np.abs(theirs - ours)))
    if not np.allclose(theirs, ours, rtol=tolerance, atol=tolerance):
        raise ValueError(f"onnxruntime disagrees with tinygrad_np by up to {difference:.3g} (tolerance {tolerance:g})")
    return difference
