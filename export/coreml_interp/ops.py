"""The op table: numpy implementations of MIL (Core ML ML Program) operations.

Each entry is ``OPS[op_type] = fn(a) -> value | tuple(values)`` where ``a`` is an :class:`Args`
giving the op's inputs as numpy values (floats already in the run's compute dtype). The interpreter
rounds every result to the storage precision of the run afterwards, so an implementation only has to
compute in ``a.dtype`` (float32 accumulation in fp16/fp32 runs, float64 in fp64 runs).

Adding an op: write ``@op("name")`` over a function, following the MIL spec
(coremltools.converters.mil.mil.ops.defs) for the op's semantics and defaults. Never make an op
"pass through": an op not in this table makes the interpreter raise ``UnsupportedOpError``.

The set covers every op type that coremltools 9.0 produced for the zoo's families (MobileViT v1/v2,
MobileNetV2, ViT) in fp32/fp16, with int8 weights (constexpr_affine_dequantize) and W8A8
(quantize/dequantize), plus their close elementwise relatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

OPS: dict[str, Callable] = {}


def op(*names: str):
    """Register the decorated function as the implementation of the MIL op types ``names``."""

    def deco(fn):
        for n in names:
            OPS[n] = fn
        return fn

    return deco


class Args:
    """Access to one op's inputs: ``a("x")`` (value or ``default`` when absent), ``a.int/ints/bool``."""

    __slots__ = ("op", "_vals", "dtype")

    def __init__(self, op, vals: dict, dtype):
        self.op, self._vals, self.dtype = op, vals, dtype

    def __call__(self, name, default=None):
        v = self._vals.get(name)
        return default if v is None else v

    def has(self, name) -> bool:
        return self._vals.get(name) is not None

    def int(self, name, default=None):
        v = self._vals.get(name)
        return default if v is None else int(np.asarray(v).reshape(-1)[0])

    def ints(self, name, default=None):
        v = self._vals.get(name)
        return default if v is None else [int(i) for i in np.asarray(v).reshape(-1)]

    def bools(self, name, default=None):
        v = self._vals.get(name)
        return default if v is None else [bool(i) for i in np.asarray(v).reshape(-1)]

    def float(self, name, default=None):
        v = self._vals.get(name)
        return default if v is None else float(np.asarray(v).reshape(-1)[0])

    def str(self, name, default=None):
        v = self._vals.get(name)
        return default if v is None else str(v)

    def f(self, name, default=None):
        """Input as a float array in the compute dtype."""
        v = self(name, default)
        return None if v is None else np.asarray(v, dtype=self.dtype)

    @property
    def n_outputs(self) -> int:
        return len(self.op.outputs)


def _axis(ax: int, rank: int) -> int:
    return ax + rank if ax < 0 else ax


# ----------------------------------------------------------------------------------------- elementwise


def _binary(fn):
    def impl(a):
        x, y = a("x"), a("y")
        if np.asarray(x).dtype.kind == "f" or np.asarray(y).dtype.kind == "f":
            x, y = np.asarray(x, a.dtype), np.asarray(y, a.dtype)
        return fn(x, y)

    return impl


for _name, _fn in {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "real_div": np.true_divide,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "floor_div": np.floor_divide,
    "mod": np.mod,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}.items():
    OPS[_name] = _binary(_fn)


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf  # lazy: not a declared dependency (math.erf fallback below)
    except ImportError:  # pragma: no cover - scipy ships with the toolchain, keep a fallback
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    return erf(x).astype(x.dtype)


def _sigmoid(x):
    # exp(-x) overflows to inf for very negative x, giving the correct limit 0 (warnings are off)
    return 1.0 / (1.0 + np.exp(-x))


_UNARY = {
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "sqrt": np.sqrt,
    "square": np.square,
    "exp": np.exp,
    "exp2": np.exp2,
    "abs": np.abs,
    "erf": _erf,
    "floor": np.floor,
    "ceil": np.ceil,
    "round": np.round,
    "sign": np.sign,
    "sin": np.sin,
    "cos": np.cos,
    "logical_not": np.logical_not,
    "softplus": lambda x: np.logaddexp(0, x).astype(x.dtype),
    "softsign": lambda x: x / (1 + np.abs(x)),
}
for _name, _fn in _UNARY.items():
    OPS[_name] = (lambda fn: lambda a: fn(a.f("x") if np.asarray(a("x")).dtype.kind == "f" else a("x")))(_fn)


@op("rsqrt")
def _rsqrt(a):
    return 1.0 / np.sqrt(a.f("x") + a.float("epsilon", 1e-12))


@op("inverse")
def _inverse(a):
    return 1.0 / (a.f("x") + a.float("epsilon", 1e-4))


@op("log")
def _log(a):
    return np.log(a.f("x") + a.float("epsilon", 1e-45))


@op("clip")
def _clip(a):
    return np.clip(a.f("x"), a.float("alpha"), a.float("beta"))


@op("leaky_relu")
def _leaky_relu(a):
    x = a.f("x")
    return np.where(x >= 0, x, x * a.float("alpha", 0.01))


@op("gelu")
def _gelu(a):
    x, mode = a.f("x"), a.str("mode", "EXACT")
    if mode == "EXACT":
        return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0).astype(x.dtype)))
    if mode == "TANH_APPROXIMATION":
        c = np.sqrt(2.0 / np.pi).astype(x.dtype)
        return 0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(1.702 * x)
    raise ValueError(f"gelu mode {mode!r} unknown")


@op("select")
def _select(a):
    return np.where(np.asarray(a("cond"), bool), a("a"), a("b"))


# ------------------------------------------------------------------------------------- linear algebra


def _pads(pad_type: str, pad, in_sizes, kernel, strides, dil):
    """[(before, after)] per spatial dim for MIL's pad_type valid/custom/same/same_lower."""
    n = len(in_sizes)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        out = []
        for size, k, s, d in zip(in_sizes, kernel, strides, dil):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if pad_type == "same" else (big, small))
        return out
    raise ValueError(f"pad_type {pad_type!r} unknown")


def conv2d(x, w, b=None, strides=(1, 1), pads=((0, 0), (0, 0)), dilations=(1, 1), groups=1):
    """NCHW cross-correlation, weight [O, C/groups, KH, KW]; accumulates in x's dtype."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if c != cg * groups or o % groups:
        raise ValueError(f"conv: input channels {c}, weight {w.shape}, groups {groups} do not fit")
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if pt or pb or pl or pr else x
    sh, sw = strides
    dh, dw = dilations
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1

    def tap(i, j):
        return xp[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]

    if cg == 1 and o == c:  # depthwise: accumulate the taps
        out = np.zeros((n, c, ho, wo), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                out += tap(i, j) * w[None, :, 0, i, j, None, None]
    else:
        if kh == kw == 1:
            cols = tap(0, 0).reshape(n, groups, cg, ho * wo)
        else:
            cols = np.empty((n, c, kh * kw, ho, wo), dtype=x.dtype)
            for i in range(kh):
                for j in range(kw):
                    cols[:, :, i * kw + j] = tap(i, j)
            cols = cols.reshape(n, groups, cg * kh * kw, ho * wo)
        wm = w.reshape(groups, o // groups, cg * kh * kw)
        out = np.matmul(wm[None], cols).reshape(n, o, ho, wo)
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return out


@op("conv")
def _conv(a):
    x, w = a.f("x"), a.f("weight")
    if x.ndim == 3:  # conv1d as a 2-D conv with height 1
        r = _conv_nd(a, x[:, :, None, :], w[:, :, None, :], 1)
        return r[:, :, 0, :]
    if x.ndim != 4:
        raise ValueError(f"conv on rank-{x.ndim} input is not implemented")
    return _conv_nd(a, x, w, 2)


def _conv_nd(a, x, w, nd):
    strides = a.ints("strides", [1] * nd)
    dil = a.ints("dilations", [1] * nd)
    pad = a.ints("pad", [0] * 2 * nd)
    if nd == 1:
        strides, dil, pad = [1] + strides, [1] + dil, [0, 0] + pad
    pads = _pads(a.str("pad_type", "valid"), pad, x.shape[2:], w.shape[2:], strides, dil)
    return conv2d(x, w, a.f("bias"), strides, pads, dil, a.int("groups", 1))


@op("avg_pool", "max_pool")
def _pool(a):
    x = a.f("x")
    if x.ndim != 4:
        raise ValueError(f"{a.op.op_type} on rank-{x.ndim} input is not implemented")
    if a("ceil_mode", False):
        raise ValueError(f"{a.op.op_type} with ceil_mode=True is not implemented")
    k, s = a.ints("kernel_sizes"), a.ints("strides", [1, 1])
    pads = _pads(a.str("pad_type", "valid"), a.ints("pad", [0] * 4), x.shape[2:], k, s, (1, 1))
    is_max = a.op.op_type == "max_pool"
    fill = -np.inf if is_max else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), *pads), constant_values=fill)
    ho, wo = (xp.shape[2] - k[0]) // s[0] + 1, (xp.shape[3] - k[1]) // s[1] + 1
    taps = [
        xp[:, :, i : i + s[0] * (ho - 1) + 1 : s[0], j : j + s[1] * (wo - 1) + 1 : s[1]]
        for i in range(k[0])
        for j in range(k[1])
    ]
    if is_max:
        return np.max(np.stack(taps), axis=0)
    total = np.sum(np.stack(taps), axis=0)
    if a("exclude_padding_from_average", False):
        ones = np.pad(np.ones(x.shape[2:], x.dtype), pads)
        count = sum(
            ones[i : i + s[0] * (ho - 1) + 1 : s[0], j : j + s[1] * (wo - 1) + 1 : s[1]]
            for i in range(k[0])
            for j in range(k[1])
        )
        return total / count
    return total / (k[0] * k[1])


@op("linear")
def _linear(a):
    x, w = a.f("x"), a.f("weight")
    # one BLAS call on a contiguous 2-D view (numpy's matmul falls back to a slow loop on strided views)
    y = (np.ascontiguousarray(x).reshape(-1, x.shape[-1]) @ w.T).reshape(*x.shape[:-1], w.shape[0])
    return y if not a.has("bias") else y + a.f("bias")


@op("matmul")
def _matmul(a):
    x, y = a.f("x"), a.f("y")
    if a("transpose_x", False) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if a("transpose_y", False) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(np.ascontiguousarray(x), np.ascontiguousarray(y))


@op("scaled_dot_product_attention")
def _sdpa(a):
    q, k, v = a.f("query"), a.f("key"), a.f("value")
    s = np.matmul(q, np.swapaxes(k, -1, -2)) / np.sqrt(q.shape[-1]).astype(q.dtype)
    if a.has("attn_mask"):
        m = a("attn_mask")
        s = np.where(m, s, -np.inf) if np.asarray(m).dtype == bool else s + np.asarray(m, s.dtype)
    return np.matmul(_softmax(s, -1), v)


# ------------------------------------------------------------------------------------ normalisation


def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@op("softmax")
def _softmax_op(a):
    return _softmax(a.f("x"), a.int("axis", -1))


@op("layer_norm")
def _layer_norm(a):
    x = a.f("x")
    axes = tuple(sorted(_axis(i, x.ndim) for i in a.ints("axes", list(range(x.ndim)))))
    mean = x.mean(axis=axes, keepdims=True)
    var = np.square(x - mean).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + a.float("epsilon", 1e-5))
    bshape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    if a.has("gamma"):
        y = y * a.f("gamma").reshape(bshape)
    if a.has("beta"):
        y = y + a.f("beta").reshape(bshape)
    return y


@op("batch_norm")
def _batch_norm(a):
    x = a.f("x")
    shape = [1, -1] + [1] * (x.ndim - 2)
    y = (x - a.f("mean").reshape(shape)) / np.sqrt(a.f("variance").reshape(shape) + a.float("epsilon", 1e-5))
    if a.has("gamma"):
        y = y * a.f("gamma").reshape(shape)
    if a.has("beta"):
        y = y + a.f("beta").reshape(shape)
    return y


@op("instance_norm")
def _instance_norm(a):
    x = a.f("x")
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(np.square(x - mean).mean(axis=axes, keepdims=True) + a.float("epsilon", 1e-5))
    shape = [1, -1] + [1] * (x.ndim - 2)
    if a.has("gamma"):
        y = y * a.f("gamma").reshape(shape)
    if a.has("beta"):
        y = y + a.f("beta").reshape(shape)
    return y


def _reduce(fn):
    def impl(a):
        x = a("x")
        x = np.asarray(x, a.dtype) if np.asarray(x).dtype.kind == "f" else np.asarray(x)
        axes = a.ints("axes")
        axes = None if axes is None else tuple(_axis(i, x.ndim) for i in axes)
        return fn(x, axes, bool(a("keep_dims", False)))

    return impl


for _name, _fn in {
    "reduce_mean": lambda x, ax, k: np.mean(x, axis=ax, keepdims=k),
    "reduce_sum": lambda x, ax, k: np.sum(x, axis=ax, keepdims=k),
    "reduce_max": lambda x, ax, k: np.max(x, axis=ax, keepdims=k),
    "reduce_min": lambda x, ax, k: np.min(x, axis=ax, keepdims=k),
    "reduce_prod": lambda x, ax, k: np.prod(x, axis=ax, keepdims=k),
    "reduce_sum_square": lambda x, ax, k: np.sum(x * x, axis=ax, keepdims=k),
    "reduce_l1_norm": lambda x, ax, k: np.sum(np.abs(x), axis=ax, keepdims=k),
    "reduce_l2_norm": lambda x, ax, k: np.sqrt(np.sum(x * x, axis=ax, keepdims=k)),
    "reduce_log_sum_exp": lambda x, ax, k: np.log(np.sum(np.exp(x), axis=ax, keepdims=k)),
}.items():
    OPS[_name] = _reduce(_fn)


@op("reduce_argmax", "reduce_argmin")
def _reduce_arg(a):
    x, ax = a("x"), a.int("axis", -1)
    fn = np.argmax if a.op.op_type == "reduce_argmax" else np.argmin
    r = fn(x, axis=ax).astype(np.int32)
    return np.expand_dims(r, ax) if a("keep_dims", False) else r


# ---------------------------------------------------------------------------------- shape and layout


@op("reshape")
def _reshape(a):
    x = np.asarray(a("x"))
    shape = a.ints("shape")
    # MIL: 0 copies the input's dimension at that position (only when ranks agree), -1 is inferred
    if 0 in shape:
        if len(shape) != x.ndim:
            raise ValueError(f"reshape: 0 in shape {shape} needs rank {x.ndim}")
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@op("transpose")
def _transpose(a):
    return np.transpose(a("x"), a.ints("perm"))


@op("expand_dims")
def _expand_dims(a):
    x = np.asarray(a("x"))
    out_rank = x.ndim + len(a.ints("axes"))
    axes = sorted(_axis(i, out_rank) for i in a.ints("axes"))
    for ax in axes:
        x = np.expand_dims(x, ax)
    return x


@op("squeeze")
def _squeeze(a):
    x = np.asarray(a("x"))
    axes = a.ints("axes")
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(_axis(i, x.ndim) for i in axes))


@op("concat")
def _concat(a):
    vals = [np.asarray(v) for v in a("values")]
    ax = _axis(a.int("axis"), vals[0].ndim)
    if a("interleave", False):
        st = np.stack(vals, axis=ax + 1)
        shape = list(vals[0].shape)
        shape[ax] *= len(vals)
        return st.reshape(shape)
    return np.concatenate(vals, axis=ax)


@op("stack")
def _stack(a):
    return np.stack([np.asarray(v) for v in a("values")], axis=a.int("axis", 0))


@op("split")
def _split(a):
    x = np.asarray(a("x"))
    ax = _axis(a.int("axis"), x.ndim)
    if a.has("split_sizes"):
        idx = np.cumsum(a.ints("split_sizes"))[:-1]
    else:
        n = a.int("num_splits", a.n_outputs)
        if x.shape[ax] % n:
            raise ValueError(f"split: axis size {x.shape[ax]} not divisible by {n}")
        idx = [x.shape[ax] // n * i for i in range(1, n)]
    return tuple(np.split(x, idx, axis=ax))


@op("slice_by_index")
def _slice_by_index(a):
    x = np.asarray(a("x"))
    r = x.ndim
    begin, end = a.ints("begin"), a.ints("end")
    stride = a.ints("stride", [1] * r)
    bmask, emask = a.bools("begin_mask", [False] * r), a.bools("end_mask", [False] * r)
    smask = a.bools("squeeze_mask", [False] * r)
    index = []
    for i in range(r):
        if smask[i]:
            index.append(begin[i] + x.shape[i] if begin[i] < 0 else begin[i])
        else:
            index.append(slice(None if bmask[i] else begin[i], None if emask[i] else end[i], stride[i]))
    return x[tuple(index)]


@op("slice_by_size")
def _slice_by_size(a):
    x = np.asarray(a("x"))
    begin, size = a.ints("begin"), a.ints("size")
    idx = []
    for i, (b, s) in enumerate(zip(begin, size)):
        b = b + x.shape[i] if b < 0 else b
        idx.append(slice(b, None if s == -1 else b + s))
    return x[tuple(idx)]


@op("tile")
def _tile(a):
    return np.tile(a("x"), a.ints("reps"))


@op("identity")
def _identity(a):
    return np.asarray(a("x")).copy()


@op("shape")
def _shape(a):
    return np.asarray(np.shape(a("x")), dtype=np.int32)


@op("gather")
def _gather(a):
    x, idx = np.asarray(a("x")), np.asarray(a("indices")).astype(np.int64)
    if a.int("batch_dims", 0):
        raise ValueError("gather with batch_dims > 0 is not implemented")
    ax = _axis(a.int("axis", 0), x.ndim)
    idx = np.where(idx < 0, idx + x.shape[ax], idx)
    return np.take(x, idx, axis=ax)


# ------------------------------------------------------------------------------------ type and quant

# MIL's integer and bool dtypes (the interpreter also casts results declared with them to these)
INT_DTYPES = {
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}
_NP_DTYPES = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, **INT_DTYPES}


@op("cast")
def _cast(a):
    dt = a.str("dtype")
    x = np.asarray(a("x"))
    if dt in ("fp16", "fp32", "fp64"):
        return x.astype(a.dtype)  # rounding to the declared storage is the interpreter's job
    if dt in _NP_DTYPES:
        if x.dtype.kind == "f" and dt != "bool":
            x = np.trunc(x)  # float -> int casts truncate toward zero
        return x.astype(_NP_DTYPES[dt])
    raise ValueError(f"cast to {dt!r} is not implemented")


def _bcast(p, rank, axis, dtype):
    """Broadcast a per-tensor (scalar) or per-axis (vector) quantization parameter to ``rank``."""
    p = np.asarray(p, dtype=dtype)
    if p.ndim == 0 or p.size == 1 and axis is None:
        return p.reshape(())
    if p.ndim == rank:
        return p
    shape = [1] * rank
    shape[_axis(axis if axis is not None else 0, rank)] = p.size
    return p.reshape(shape)


@op("quantize")
def _quantize(a):
    x = a.f("input")
    dt = a.str("output_dtype")
    info = np.iinfo(_NP_DTYPES[dt])
    ax = a.int("axis")
    scale = _bcast(a("scale"), x.ndim, ax, a.dtype)
    zp = _bcast(a("zero_point", 0), x.ndim, ax, a.dtype)
    q = np.rint(x / scale) + zp  # np.rint rounds half to even
    return np.clip(q, info.min, info.max).astype(_NP_DTYPES[dt])


@op("dequantize")
def _dequantize(a):
    q = np.asarray(a("input"))
    ax = a.int("axis")
    scale = _bcast(a("scale"), q.ndim, ax, a.dtype)
    zp = _bcast(a("zero_point", 0), q.ndim, ax, a.dtype)
    return (q.astype(a.dtype) - zp) * scale


@op("constexpr_affine_dequantize")
def _constexpr_affine_dequantize(a):
    q = np.asarray(a("quantized_data"))
    ax = a.int("axis", 0)
    scale = _bcast(a("scale"), q.ndim, ax, a.dtype)
    zp = _bcast(a("zero_point", 0), q.ndim, ax, a.dtype)
    return (q.astype(a.dtype) - zp) * scale


@op("constexpr_blockwise_shift_scale")
def _constexpr_blockwise_shift_scale(a):
    # iOS18: data, scale and offset of the same rank; each scale entry covers a block of data
    d = np.asarray(a("data")).astype(a.dtype)
    scale = a.f("scale")
    off = a.f("offset") if a.has("offset") else None
    reps = [ds // ss for ds, ss in zip(d.shape, scale.shape)]

    def up(p):
        for ax, r in enumerate(reps):
            p = np.repeat(p, r, axis=ax)
        return p

    return ((d - up(off)) if off is not None else d) * up(scale)


@op("classify")
def _classify(a):
    probs = np.asarray(a("probabilities"), dtype=np.float64).reshape(-1)
    classes = list(a("classes"))
    if len(classes) != probs.size:
        raise ValueError(f"classify: {probs.size} scores for {len(classes)} classes")
    return classes[int(np.argmax(probs))], {c: float(p) for c, p in zip(classes, probs)}
