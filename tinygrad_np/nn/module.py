"""Module: parameters and buffers found by walking attributes, state dicts, train/eval; and Sequential."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from tinygrad_np.hooks import RemovableHandle
from tinygrad_np.tensor import ArrayLike, Tensor


class Parameter(Tensor):
    """A Tensor that is a model's learnable state: requires grad, and Modules collect it automatically."""

    __slots__ = ()

    def __init__(self, data: ArrayLike, requires_grad: bool = True, dtype: Any = None) -> None:
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Buffer(Tensor):
    """A Tensor that is part of a model's state but not learned (BatchNorm's running statistics), as PyTorch's
    `nn.Buffer`: it never requires grad, and Modules find it like a Parameter and keep it in `state_dict`."""

    __slots__ = ()

    def __init__(self, data: ArrayLike, dtype: Any = None) -> None:
        super().__init__(data, dtype=dtype)

    def __repr__(self) -> str:
        return "Buffer containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models. Assign Parameters and sub-Modules as attributes; they are found."""

    training: bool = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output = self.forward(*args, **kwargs)
        hooks = self.__dict__.get("_forward_hooks")
        if hooks:
            for hook in list(hooks.values()):
                replaced = hook(self, args, output)
                if replaced is not None:
                    output = replaced
        return output

    def register_forward_hook(self, hook: Callable[[Module, tuple[Any, ...], Any], Any]) -> RemovableHandle:
        """Call `hook(module, inputs, output)` after every forward (inputs: the positional arguments); a returned
        value replaces the output. Returns a handle with `.remove()`."""
        return RemovableHandle(self.__dict__.setdefault("_forward_hooks", {}), hook)

    # ---- walking the tree --------------------------------------------------------------------------------

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules in attribute order (also those kept in lists or tuples, named `attr.i`)."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every Parameter with its dotted path ("0.weight"), each once, in definition order."""
        return (item for item in self._named_state(prefix) if isinstance(item[1], Parameter))  # type: ignore[misc]

    def parameters(self) -> Iterator[Parameter]:
        for _, parameter in self.named_parameters():
            yield parameter

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Buffer]]:
        """Every Buffer with its dotted path ("1.running_mean"), each once, in definition order."""
        return (item for item in self._named_state(prefix) if isinstance(item[1], Buffer))  # type: ignore[misc]

    def buffers(self) -> Iterator[Buffer]:
        for _, buffer in self.named_buffers():
            yield buffer

    def _named_state(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """Parameters and buffers, module by module, each module's in the order it set them (PyTorch's order
        whenever a layer sets its parameters before its buffers, as every layer here does)."""
        seen: set[int] = set()
        for module_name, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, (Parameter, Buffer)) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ---- state --------------------------------------------------------------------------------------------

    def zero_grad(self) -> None:
        for parameter in self.parameters():
            parameter.grad = None

    def train(self, mode: bool = True) -> Module:
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter's and buffer's data, by dotted name."""
        return OrderedDict((name, t.data.copy()) for name, t in self._named_state())

    def load_state_dict(self, state_dict: Mapping[str, ArrayLike], strict: bool = True) -> None:
        """Copy values into the parameters and buffers; names and shapes must match (all of them, if strict)."""
        own = dict(self._named_state())
        missing = [name for name in own if name not in state_dict]
        unexpected = [name for name in state_dict if name not in own]
        if strict and (missing or unexpected):
            problems = []
            if missing:
                problems.append(f"missing {', '.join(missing)}")
            if unexpected:
                problems.append(f"unexpected {', '.join(unexpected)}")
            raise KeyError(
                f"state dict doesn't match {type(self).__name__}: {'; '.join(problems)} "
                "(was it saved from another architecture?)"
            )
        # Check every entry before copying any, so a bad state dict leaves the model as it was.
        arrays = {}
        for name, value in state_dict.items():
            if name not in own:
                continue
            array = np.asarray(value.data if isinstance(value, Tensor) else value)
            if array.shape != own[name].shape:
                raise ValueError(
                    f"state dict entry {name!r} has shape {array.shape}, but the model's parameter has shape "
                    f"{own[name].shape} (was it saved from another architecture?)"
                )
            wanted = own[name].dtype.kind
            if array.dtype.kind != wanted and not (wanted == "i" and array.dtype.kind == "u"):
                kind = "floating point" if wanted == "f" else "integers"
                raise TypeError(f"state dict entry {name!r} has dtype {array.dtype}; the model's holds {kind}")
            arrays[name] = array
        for name, array in arrays.items():
            target = own[name]
            target.data = np.array(array, dtype=target.dtype, copy=True)
            target.grad = None

    def astype(self, dtype: Any) -> Module:
        """Cast every parameter and floating-point buffer in place (`model.astype(np.float64)` before a gradient
        check); integer buffers (BatchNorm's batch count) stay integers, as in PyTorch."""
        for parameter in self.parameters():
            parameter.data = parameter.data.astype(dtype)
            parameter.grad = None
        for buffer in self.buffers():
            if buffer.dtype.kind == "f":
                buffer.data = buffer.data.astype(dtype)
        return self

    def double(self) -> Module:
        return self.astype(np.float64)

    def float(self) -> Module:
        return self.astype(np.float32)

    # ---- printing -----------------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


class Sequential(Module):
    """Layers applied in order: y = layer_n(... layer_1(x)). Children are named "0", "1", ..."""

    def __init__(self, *layers: Module) -> None:
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes Modules, argument {i} is a {type(layer).__name__}")
            setattr(self, str(i), layer)

    def __len__(self) -> int:
        return sum(1 for _ in self.named_children())

    def __iter__(self) -> Iterator[Module]:
        return self.children()

    def __getitem__(self, index: int | slice) -> Module:
        layers = list(self.children())
        if isinstance(index, slice):
            return Sequential(*layers[index])
        try:
            return layers[index]
        except IndexError:
            raise IndexError(f"Sequential has {len(layers)} layers, no index {index}") from None

    def forward(self, x: Any) -> Any:
        for layer in self.children():
            x = layer(x)
        return x
