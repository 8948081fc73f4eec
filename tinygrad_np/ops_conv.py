"""The ops convolutional networks are made of: 2-D convolution, max and average pooling, batch normalization.

Each is one Function, forward above backward, on NCHW arrays (batch, channels, height, width), with PyTorch's
definitions. `nn.functional` checks the arguments and calls them; here the geometry is already valid.

Memory layout: a convolution's matrix product gives its output with the channels innermost in memory (NHWC), and
it is returned as that array seen as NCHW (a transposed view, no copy). Elementwise ops and the pooling ops here
keep whatever layout they are given, so the next convolution reads its windows as runs of channels: the im2col copy
that feeds its matrix product then moves whole cache lines. Shapes and values are NCHW everywhere; only the strides
differ, and every op here reads any strides.

Padding is given as ((top, bottom), (left, right)), so that PyTorch's padding="same" with an even kernel (one
more on the bottom and right) and ceil_mode's extra windows (padding on the bottom and right only) are the same case.

Twice differentiable (tinygrad_np/ops.py says how): each op's `graph_backward` writes its gradient with Tensor ops
and two linear ops of its own, `Im2Col` and `Col2Im`, each the other's gradient (as GetItem and ScatterAdd are):
the convolution's dx = Col2Im(g W) and dW = g^T Im2Col(x), average pooling's dx = Col2Im(g / divisor), max
pooling's dx = g scattered to the winners (ScatterAdd), batch norm as a composite over its statistics. The first
order `backward`s stay the fast NumPy ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import as_strided

from tinygrad_np.ops import ScatterAdd, broadcast_to
from tinygrad_np.parallel import matmul as _matmul  # large 2-D products split between threads, same bits
from tinygrad_np.tensor import Function, Tensor, accurate_sum

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]
Geometry = tuple[Pair, Pair, Pair, Pair]  # kernel, output size, stride, dilation


# ---- layout and geometry ------------------------------------------------------------------------------------


def channels_last(a: np.ndarray) -> bool:
    """Whether a 4-D array (N, C, H, W) holds its channels innermost in memory (NHWC)."""
    return a.transpose(0, 2, 3, 1).flags.c_contiguous


def _empty(shape: tuple[int, ...], dtype: Any, nhwc: bool) -> np.ndarray:
    """An uninitialised (N, C, H, W) array, its channels innermost in memory if `nhwc`."""
    if not nhwc:
        return np.empty(shape, dtype)
    n, c, h, w = shape
    return np.empty((n, h, w, c), dtype).transpose(0, 3, 1, 2)


def _padded(x: np.ndarray, padding: Padding, value: float, nhwc: bool = True) -> np.ndarray:
    """x surrounded by `value` (x itself when there is nothing to add and the layout is already right)."""
    (top, bottom), (left, right) = padding
    if not (top or bottom or left or right) and (not nhwc or channels_last(x)):
        return x
    n, c, h, w = x.shape
    out = _empty((n, c, h + top + bottom, w + left + right), x.dtype, nhwc)
    out.fill(value)
    out[:, :, top : top + h, left : left + w] = x
    return out


def output_size(size: int, kernel: int, stride: int, padding: Pair, dilation: int) -> int:
    """Windows along one axis: (size + padding - dilation (kernel - 1) - 1) // stride + 1."""
    return (size + padding[0] + padding[1] - dilation * (kernel - 1) - 1) // stride + 1


def _offset(array: np.ndarray, i: int, j: int, out_hw: Pair, stride: Pair, dilation: Pair) -> np.ndarray:
    """The (N, C, OH, OW) view of the elements at kernel offset (i, j) of every window."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return array[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]


def _columns(xp: np.ndarray, kernel: Pair, out_hw: Pair, stride: Pair, dilation: Pair) -> np.ndarray:
    """im2col: one row per output pixel (N OH OW rows), holding its window as (KH, KW, C) (KH KW C columns).

    A strided view picks the windows without copying; the reshape copies them out, reading runs of channels when
    the input is NHWC in memory."""
    n, c = xp.shape[:2]
    (kh, kw), (oh, ow), (sh, sw), (dh, dw) = kernel, out_hw, stride, dilation
    s_n, s_c, s_h, s_w = xp.strides
    windows = as_strided(xp, (n, oh, ow, kh, kw, c), (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c),
                         writeable=False)
    return windows.reshape(n * oh * ow, kh * kw * c)


def _rows(g: np.ndarray) -> np.ndarray:
    """(N, O, OH, OW) -> (N OH OW, O): one row per output pixel (a view when g is NHWC in memory)."""
    n, o, oh, ow = g.shape
    return g.transpose(0, 2, 3, 1).reshape(n * oh * ow, o)


def _crop(padded: np.ndarray, padding: Padding, shape: tuple[int, ...]) -> np.ndarray:
    (top, _), (left, _) = padding
    return padded[:, :, top : top + shape[2], left : left + shape[3]]


def _im2col(x: np.ndarray, padding: Padding, geometry: Geometry) -> np.ndarray:
    """The columns of x padded with zeros, as an array of their own (`_columns` can be a read-only view)."""
    columns = _columns(_padded(x, padding, 0), *geometry)
    return columns if columns.flags.writeable else columns.copy()


def _col2im(shape: tuple[int, ...], padding: Padding, geometry: Geometry, dtype: Any,
            piece: Callable[[int, int], np.ndarray], nhwc: bool = True) -> np.ndarray:
    """col2im: an image of `shape`, each kernel offset's values `piece(i, j)` (N, C, OH, OW) added where that offset
    of every window reads the padded input, the padding then cut off."""
    kernel, out_hw, stride, dilation = geometry
    (top, bottom), (left, right) = padding
    n, c, h, w = shape
    dxp = _empty((n, c, h + top + bottom, w + left + right), dtype, nhwc)
    dxp.fill(0)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            target = _offset(dxp, i, j, out_hw, stride, dilation)
            target += piece(i, j)
    return _crop(dxp, padding, shape)


def _offset_columns(columns: np.ndarray, channels: int, geometry: Geometry) -> Callable[[int, int], np.ndarray]:
    """piece(i, j) for `_col2im` from im2col's columns: the C columns of kernel offset (i, j), as (N, C, OH, OW)."""
    (_, kw), out_hw = geometry[:2]

    def piece(i: int, j: int) -> np.ndarray:
        k = (i * kw + j) * channels
        return columns[:, k : k + channels].reshape(-1, *out_hw, channels).transpose(0, 3, 1, 2)

    return piece


class Im2Col(Function):
    """y = cols(x): one row per window (N OH OW rows), holding it as (KH, KW, C), zero padding included;
    dx = Col2Im(g): each row added back where its window read x (a linear map and its transpose)"""

    def forward(self, x: np.ndarray, *, geometry: Geometry, padding: Padding) -> np.ndarray:
        self.shape, self.geometry, self.padding = x.shape, geometry, padding
        return _im2col(x, padding, geometry)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return _col2im(self.shape, self.padding, self.geometry, g.dtype,
                       _offset_columns(g, self.shape[1], self.geometry))

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return Col2Im.apply(g, shape=self.shape, geometry=self.geometry, padding=self.padding)


class Col2Im(Function):
    """y = col2im(a): an image of `shape` with each row of a (a window, as (KH, KW, C)) added back where the window
    lies, the padding cut off (Im2Col's gradient);  da = Im2Col(g)"""

    def forward(self, columns: np.ndarray, *, shape: tuple[int, ...], geometry: Geometry, padding: Padding
                ) -> np.ndarray:
        self.geometry, self.padding = geometry, padding
        return _col2im(shape, padding, geometry, columns.dtype, _offset_columns(columns, shape[1], geometry))

    def backward(self, g: np.ndarray) -> np.ndarray:
        return _im2col(g, self.padding, self.geometry)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return Im2Col.apply(g, geometry=self.geometry, padding=self.padding)


# ---- convolution --------------------------------------------------------------------------------------------


class Conv2d(Function):
    """y[n, o] = sum_c W[o, c] * x[n, c] + b[o] (cross-correlation, as PyTorch), by im2col: Y = cols(x) W^T;
    dx = col2im(g W) (each window's share added back), dW = g^T cols(x), db = sum(g)"""

    saved_for: ClassVar[dict[str, int]] = {"x": 1, "xp": 1, "weight": 0}

    def forward(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        stride: Pair,
        padding: Padding,
        dilation: Pair,
    ) -> np.ndarray:
        n, _, h, w = x.shape
        out_channels, _, kh, kw = weight.shape
        out_hw = (output_size(h, kh, stride[0], padding[0], dilation[0]),
                  output_size(w, kw, stride[1], padding[1], dilation[1]))
        xp = _padded(x, padding, 0)
        self.xp, self.weight, self.shape = xp, weight, x.shape
        self.x = x  # graph_backward reads x, and the version check (inplace.py) guards it; no memory of its own
        self.geometry = ((kh, kw), out_hw, stride, dilation)
        self.padding = padding
        # W as (O, KH KW C), the order of the columns
        out = _matmul(_columns(xp, *self.geometry), weight.transpose(0, 2, 3, 1).reshape(out_channels, -1).T)
        if bias is not None:
            if np.result_type(out, bias) == out.dtype:
                out += bias  # fresh from the product: adding in place saves an array
            else:
                out = out + bias
        return out.reshape(n, *out_hw, out_channels).transpose(0, 3, 1, 2)

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        need_x, need_w, *need_b = self.needs_input_grad
        g_rows = _rows(g)
        dx = dw = None
        if need_x:
            dx = self._input_grad(g_rows)
        if need_w:
            # The columns again, not kept from forward: a copy costs less than holding KH KW inputs per layer.
            kernel, out_channels = self.geometry[0], self.weight.shape[0]
            product = _matmul(g_rows.T, _columns(self.xp, *self.geometry))
            dw = np.ascontiguousarray(product.reshape(out_channels, *kernel, -1).transpose(0, 3, 1, 2))
        if not need_b:
            return dx, dw
        return dx, dw, (accurate_sum(g_rows, 0) if need_b[0] else None)

    def _input_grad(self, g_rows: np.ndarray) -> np.ndarray:
        """col2im, one kernel offset at a time: dcols for offset (i, j) is g W[:, :, i, j], (N OH OW, C), added
        back where that offset read x. Measured faster than one product for all offsets followed by the same
        additions (2.2x on the LeNet CNN's second convolution, 1.1x on 32 -> 64 channels 3x3, batch 128, shared
        2-core machine, 2026-11-30): each offset's piece is contiguous, and the (N OH OW, KH KW C) array is never
        made."""
        out_hw = self.geometry[1]
        n, c = self.shape[:2]
        per_offset = self.weight.transpose(2, 3, 1, 0)  # (KH, KW, C, O)

        def piece(i: int, j: int) -> np.ndarray:
            return _matmul(g_rows, per_offset[i, j].T).reshape(n, *out_hw, c).transpose(0, 3, 1, 2)

        return _col2im(self.shape, self.padding, self.geometry, np.result_type(g_rows, self.weight), piece)

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor | None, ...]:
        """The same formulas in Tensor ops: dx = Col2Im(g W), dW = g^T Im2Col(x), db = sum(g) (g as one row per
        output pixel, W as (O, KH KW C))."""
        x, weight = self.inputs[:2]
        need_x, need_w, *need_b = self.needs_input_grad
        n, out_channels, oh, ow = g.shape
        g_rows = g.transpose(0, 2, 3, 1).reshape(n * oh * ow, out_channels)
        dx = dw = None
        if need_x:
            w_rows = weight.transpose(0, 2, 3, 1).reshape(out_channels, -1)
            dx = Col2Im.apply(g_rows @ w_rows, shape=self.shape, geometry=self.geometry, padding=self.padding)
        if need_w:
            product = g_rows.transpose() @ Im2Col.apply(x, geometry=self.geometry, padding=self.padding)
            dw = product.reshape(out_channels, *self.geometry[0], -1).transpose(0, 3, 1, 2)
        if not need_b:
            return dx, dw
        return dx, dw, (g_rows.sum(0) if need_b[0] else None)


# ---- pooling ------------------------------------------------------------------------------------------------


class MaxPool2d(Function):
    """y = the maximum of each window (padding counts as -inf);  dx = g routed to each window's maximum, summed where
    windows overlap; on ties the first in row-major order, and the last NaN if there is one (PyTorch's choice)"""

    def forward(self, x: np.ndarray, *, kernel: Pair, stride: Pair, padding: Padding, dilation: Pair) -> np.ndarray:
        h, w = x.shape[2:]
        out_hw = (output_size(h, kernel[0], stride[0], padding[0], dilation[0]),
                  output_size(w, kernel[1], stride[1], padding[1], dilation[1]))
        nhwc = channels_last(x)
        xp = _padded(x, padding, -np.inf, nhwc)
        out = _empty((*x.shape[:2], *out_hw), x.dtype, nhwc)
        out.fill(-np.inf)
        # The winning offset i * KW + j of each window, starting (like PyTorch) at the first offset inside the input:
        # a window of -infs routes its gradient there, never into the padding.
        index = np.empty(out.shape, np.min_scalar_type(kernel[0] * kernel[1]))
        index.transpose(0, 2, 3, 1)[...] = _first_inside((h, w), out_hw, kernel, stride, padding, dilation)
        offsets = [(i, j) for i in range(kernel[0]) for j in range(kernel[1])]
        for k, (i, j) in enumerate(offsets):
            values = _offset(xp, i, j, out_hw, stride, dilation)
            np.copyto(index, k, where=values > out)
            np.maximum(out, values, out=out)
        if np.isnan(out).any():  # the last NaN in its window wins
            for k, (i, j) in enumerate(offsets):
                np.copyto(index, k, where=np.isnan(_offset(xp, i, j, out_hw, stride, dilation)))
        self.index, self.kernel, self.shape, self.nhwc = index, kernel, x.shape, nhwc
        self.geometry = (out_hw, stride, dilation)
        self.padding, self.padded_hw = padding, xp.shape[2:]
        return out

    def backward(self, g: np.ndarray) -> np.ndarray:
        """Each window's g added at its winner's place in memory, all at once (np.bincount, accumulating in float64):
        only the winners, so an inf or NaN in g stays in its window. On the CNN's two poolings (batch 128) this took
        0.9x and 0.03x the time of one masked add per kernel offset (shared 2-core machine, 2026-11-30)."""
        (n, c), (hp, wp) = self.shape[:2], self.padded_hw
        (out_h, out_w), (sh, sw), (dh, dw) = self.geometry
        i, j = np.divmod(self.index.astype(np.intp), self.kernel[1])
        s_n, s_c, s_h, s_w = (hp * wp * c, 1, wp * c, c) if self.nhwc else (c * hp * wp, hp * wp, wp, 1)
        position = ((np.arange(n) * s_n)[:, None, None, None] + (np.arange(c) * s_c)[:, None, None]
                    + (np.arange(out_h) * (sh * s_h))[:, None] + np.arange(out_w) * (sw * s_w)
                    + i * (dh * s_h) + j * (dw * s_w))
        weights = g
        inside = self.index < self.kernel[0] * self.kernel[1]  # not a window wholly in the padding
        if not inside.all():
            position, weights = position[inside], g[inside]
        total = np.bincount(position.ravel(), weights.ravel(), minlength=n * c * hp * wp).astype(g.dtype, copy=False)
        dxp = total.reshape(n, hp, wp, c).transpose(0, 3, 1, 2) if self.nhwc else total.reshape(n, c, hp, wp)
        return _crop(dxp, self.padding, self.shape)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        """dx = g scattered to each window's winner (ScatterAdd: its gradient gathers from the same places, so the
        routing, ties included, is the first order's)."""
        (out_h, out_w), (sh, sw), (dh, dw) = self.geometry
        (top, _), (left, _) = self.padding
        n, c = self.shape[:2]
        i, j = np.divmod(self.index.astype(np.intp), self.kernel[1])
        rows = (np.arange(out_h) * sh - top)[:, None] + i * dh  # the winners' places in x
        columns = np.arange(out_w) * sw - left + j * dw
        index = np.broadcast_arrays(np.arange(n)[:, None, None, None], np.arange(c)[:, None, None], rows, columns)
        inside = self.index < self.kernel[0] * self.kernel[1]  # not a window wholly in the padding
        if inside.all():
            return ScatterAdd.apply(g, shape=self.shape, index=tuple(index))
        return ScatterAdd.apply(g[inside], shape=self.shape, index=tuple(part[inside] for part in index))


def _first_inside(in_hw: Pair, out_hw: Pair, kernel: Pair, stride: Pair, padding: Padding, dilation: Pair
                  ) -> np.ndarray:
    """(OH, OW, 1): the first kernel offset i * KW + j of each window that lies inside the input, not the padding;
    KH KW (no offset: its gradient goes nowhere) for a window that a dilation places wholly in the padding."""
    firsts = []
    for n, size, step, k, pad, dil in zip(in_hw, out_hw, stride, kernel, padding, dilation, strict=True):
        start = np.arange(size) * step - pad[0]  # where each window starts, in input coordinates
        first = np.maximum(0, -(start // dil))  # ceil(-start / dil), at least 0
        firsts.append((first, (first >= k) | (start + first * dil >= n)))
    (first_h, outside_h), (first_w, outside_w) = firsts
    index = first_h[:, None] * kernel[1] + first_w[None, :]
    index[outside_h[:, None] | outside_w[None, :]] = kernel[0] * kernel[1]
    return index[:, :, None]


class AvgPool2d(Function):
    """y = sum of each window / divisor;  dx = g / divisor added to every element of the window

    divisor: `divisor_override` if given, else the window's size clipped to the padded input (count_include_pad)
    or to the input itself, as PyTorch counts it."""

    def forward(
        self, x: np.ndarray, *, kernel: Pair, stride: Pair, padding: Padding, count_include_pad: bool,
        divisor_override: int | None,
    ) -> np.ndarray:
        h, w = x.shape[2:]
        out_hw = (output_size(h, kernel[0], stride[0], padding[0], 1),
                  output_size(w, kernel[1], stride[1], padding[1], 1))
        nhwc = channels_last(x)
        xp = _padded(x, padding, 0, nhwc)
        out = _empty((*x.shape[:2], *out_hw), x.dtype, nhwc)
        out.fill(0)
        self.geometry = (kernel, out_hw, stride, (1, 1))
        for i in range(kernel[0]):
            for j in range(kernel[1]):
                out += _offset(xp, i, j, *self.geometry[1:])
        if divisor_override is not None:
            self.divisor: Any = x.dtype.type(divisor_override)
        else:
            counts = [_window_counts(size, out_size, k, s, pad, count_include_pad)
                      for size, out_size, k, s, pad in zip((h, w), out_hw, kernel, stride, padding, strict=True)]
            self.divisor = np.outer(*counts).astype(x.dtype)
        out /= self.divisor
        self.shape, self.nhwc, self.padding = x.shape, nhwc, padding
        return out

    def backward(self, g: np.ndarray) -> np.ndarray:
        share = g / self.divisor
        return _col2im(self.shape, self.padding, self.geometry, share.dtype, lambda i, j: share, self.nhwc)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        """dx = Col2Im(g / divisor, the same in each of a window's columns)"""
        (n, c), (kh, kw), (oh, ow) = self.shape[:2], *self.geometry[:2]
        share = (g / self.divisor).transpose(0, 2, 3, 1).reshape(n * oh * ow, 1, c)
        columns = broadcast_to(share, (n * oh * ow, kh * kw, c)).reshape(n * oh * ow, kh * kw * c)
        return Col2Im.apply(columns, shape=self.shape, geometry=self.geometry, padding=self.padding)


def _window_counts(size: int, out_size: int, kernel: int, stride: int, padding: Pair, include_pad: bool) -> np.ndarray:
    """Elements of each window along one axis: inside [-pad_before, size + pad_before) with count_include_pad,
    else inside [0, size) (PyTorch's rule: ceil_mode's extra padding is never counted)."""
    start = np.arange(out_size) * stride - padding[0]
    end = np.minimum(start + kernel, size + padding[0])
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return end - start


# ---- normalization ------------------------------------------------------------------------------------------


class BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * w + b per channel (axis 1), statistics over the other axes;
    dx = w / sqrt(var + eps) * (g - mean(g) - x^ mean(g x^)) (with fixed running statistics: g w / sqrt(var + eps)),
    dw = sum(g x^), db = sum(g); where x^ = (x - mean) / sqrt(var + eps) and means and sums are per channel"""

    def forward(
        self, x: np.ndarray, *affine: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float,
        batch_stats: bool, has_weight: bool,
    ) -> np.ndarray:
        self.axes = (0, *range(2, x.ndim))
        per_channel = (1, -1) + (1,) * (x.ndim - 2)
        weight = affine[0] if has_weight else None
        bias = affine[-1] if len(affine) > has_weight else None
        dtype = np.result_type(x, *affine)
        inv_std = (1 / np.sqrt(var.astype(dtype) + eps)).reshape(per_channel)
        # for graph_backward (x kept as in Conv2d, so the version check guards it)
        self.x, self.mean, self.eps = x, mean.astype(dtype).reshape(per_channel), eps
        x_hat = x - self.mean
        x_hat *= inv_std
        self.x_hat, self.inv_std, self.batch_stats, self.has_weight = x_hat, inv_std, batch_stats, has_weight
        self.weight = None if weight is None else weight.reshape(per_channel)
        out = x_hat.copy() if self.weight is None else x_hat * self.weight  # x_hat is kept for backward
        if bias is not None:
            out += bias.reshape(per_channel)  # out has the dtype of x, w and b together
        return out

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        need_x, *need_affine = self.needs_input_grad
        g_sum = g_x_hat_sum = None
        if self.batch_stats or any(need_affine):
            g_sum = accurate_sum(g, self.axes, keepdims=True)
            g_x_hat_sum = accurate_sum(g * self.x_hat, self.axes, keepdims=True)
        dx = None
        if need_x:
            scale = self.inv_std if self.weight is None else self.inv_std * self.weight
            if self.batch_stats:
                count = g.size // max(g.shape[1], 1)
                dx = scale * (g - g_sum / count - self.x_hat * (g_x_hat_sum / count))
            else:
                dx = g * scale
        grads: list[np.ndarray | None] = [dx]
        if self.has_weight:
            grads.append(g_x_hat_sum.reshape(-1) if need_affine[0] else None)
        if len(need_affine) > self.has_weight:
            grads.append(g_sum.reshape(-1) if need_affine[-1] else None)
        return tuple(grads)

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor | None, ...]:
        """The same formulas in Tensor ops, x^ computed again from x (and in training the batch's mean and variance
        too), so that their slopes in x reach the second derivative; fixed statistics are constants."""
        x, *affine = self.inputs
        need_x, *need_affine = self.needs_input_grad
        axes = self.axes
        if self.batch_stats and x.size:
            centered = x - x.mean(axes, keepdims=True)
            inv_std = 1 / ((centered * centered).mean(axes, keepdims=True) + self.eps).sqrt()
        elif self.batch_stats:  # an empty batch: no element depends on its (NaN) statistics, so their slope is 0
            centered, inv_std = x, np.zeros_like(self.inv_std)
        else:
            centered, inv_std = x - self.mean, self.inv_std
        x_hat = centered * inv_std
        dx = None
        if need_x:
            scale = inv_std if self.weight is None else inv_std * affine[0].reshape(self.weight.shape)
            if self.batch_stats:
                dx = scale * (g - g.mean(axes, keepdims=True) - x_hat * (g * x_hat).mean(axes, keepdims=True))
            else:
                dx = g * scale
        grads: list[Tensor | None] = [dx]
        if self.has_weight:
            grads.append((g * x_hat).sum(axes) if need_affine[0] else None)
        if len(need_affine) > self.has_weight:
            grads.append(g.sum(axes) if need_affine[-1] else None)
        return tuple(grads)
