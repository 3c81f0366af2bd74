"""A differential fuzz against torch: Hypothesis draws small programs of torch-named ops and runs
each step through both libraries side by side, comparing raised-or-not, values, dtypes, shapes
and requires_grad after every step (and every earlier value after an in-place step), then the
gradients of the inputs. Skipped without torch.

The `ci` profile runs a few examples (seconds); `HYPOTHESIS_PROFILE=thorough` runs hundreds.
Differences kept on purpose are loud (we raise, torch returns) and listed in LOUD below and in
docs/porting.md; any other difference fails.
"""
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygrad_tf as tg

torch = pytest.importorskip("torch")

DTYPES = ["float32", "float64", "int64", "bool"]

# (our error message pattern, why): where we raise and torch returns, by design (porting.md)
LOUD = [
    (r"in[- ]place", "in-place writes into (or of) tensors on a graph raise (no view tracking)"),
    (r"masked_fill.*(broadcast|shape)", "masked_fill never grows the tensor"),
    (r"read-only view", "writes into an expanded tensor raise, fill_/zero_ too (torch allows those)"),
]


# (torch's error message pattern, why): where torch raises and we return, by design (porting.md)
TORCH_ONLY = [
    (r"derivative for aten::floor_divide", "`//` has a zero gradient (piecewise constant)"),
    (r"derivative for aten::remainder", "a number % tensor has a gradient for the tensor"),
    (r"some elements of the input tensor and the written-to tensor refer to a single memory",
     "a write from an overlapping view: numpy copies first (right values); torch refuses"),
    (r"INTERNAL ASSERT FAILED", "a bug in torch (its Scalar of a bool base in pow's backward)"),
    (r"modified by an inplace operation: \[CPU(Bool|Long)Type",
     "an int/bool input written after a mixed-dtype op: torch saved it, we saved its float copy "
     "(so our gradient is the one of the forward's values)"),
]


# the same, only in backward: torch's pow backward subtracts 1 from a bool exponent
BACKWARD_TORCH_ONLY = [(r"Subtraction, the `-` operator, with a bool tensor",
                        "torch's pow backward fails for a bool exponent; ours is right")]


class Dead(Exception):
    """A step where we raise by design (LOUD): the program stops there."""


# ---------------------------------------------------------------------------- the ops

def _unary(name):
    return lambda lib, x: getattr(x, name)()


UNARY = ["neg", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "sin", "cos", "floor",
         "ceil", "round", "sign", "reciprocal", "square", "rsqrt", "log1p", "expm1",
         "logical_not", "isnan", "isfinite", "float", "double", "long", "bool", "clone",
         "contiguous", "detach", "flatten", "t", "erf"]
BINARY_OPERATORS = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "truediv": lambda a, b: a / b, "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b,
    "pow": lambda a, b: a ** b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
    "and": lambda a, b: a & b, "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b,
}
BINARY_FUNCTIONS = ["maximum", "minimum", "logical_and", "logical_or",
                    "remainder", "eq", "lt"]
REDUCTIONS = ["sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin", "std",
              "var", "logsumexp", "all", "any", "cumsum", "softmax", "log_softmax", "norm"]


@st.composite
def scalars(draw):
    return draw(st.one_of(st.integers(-3, 3), st.sampled_from([0.5, -1.5, 2.0, 0.0]),
                          st.booleans()))


@st.composite
def dims(draw, ndim, allow_none=False):
    choices = st.integers(-max(ndim, 1), max(ndim, 1) - 1)
    if allow_none:
        choices = st.one_of(st.none(), choices)
    return draw(choices)


def step_strategy(data, pool):
    """Draw one step: (description, function of (lib, values) -> result)."""
    draw = data.draw
    i = draw(st.integers(0, len(pool) - 1))
    x = pool[i]
    kind = draw(st.sampled_from(["unary", "binary", "scalar", "rscalar", "function", "reduce",
                                 "index", "view", "inplace", "matmul", "where", "masked_fill",
                                 "cat", "to", "more"]))
    j = draw(st.integers(0, len(pool) - 1))
    if kind == "unary":
        name = draw(st.sampled_from(UNARY))
        return f"x{i}.{name}()", lambda lib, v: getattr(v[i], name)()
    if kind in ("binary", "scalar", "rscalar"):
        name = draw(st.sampled_from(sorted(BINARY_OPERATORS)))
        op = BINARY_OPERATORS[name]
        if kind == "binary":
            return f"x{i} {name} x{j}", lambda lib, v: op(v[i], v[j])
        s = draw(scalars())
        if kind == "scalar":
            return f"x{i} {name} {s!r}", lambda lib, v: op(v[i], s)
        return f"{s!r} {name} x{i}", lambda lib, v: op(s, v[i])
    if kind == "function":
        name = draw(st.sampled_from(BINARY_FUNCTIONS))
        return f"{name}(x{i}, x{j})", lambda lib, v: getattr(lib, name)(v[i], v[j])
    if kind == "reduce":
        name = draw(st.sampled_from(REDUCTIONS))
        needs_dim = name in ("cumsum", "softmax", "log_softmax", "logsumexp")
        dim = draw(dims(x.ndim, allow_none=not needs_dim))
        if name in ("cumsum", "softmax", "log_softmax", "count_nonzero") or dim is None:
            kwargs = {} if dim is None else {"dim": dim}
        else:
            kwargs = {"dim": dim, "keepdim": draw(st.booleans())}
        return f"x{i}.{name}(**{kwargs})", lambda lib, v: getattr(v[i], name)(**kwargs)
    if kind == "index":
        return index_step(draw, x, i)
    if kind == "view":
        return view_step(draw, x, i)
    if kind == "inplace":
        return inplace_step(draw, x, i, j)
    if kind == "matmul":
        return f"x{i} @ x{j}", lambda lib, v: v[i] @ v[j]
    if kind == "where":
        k = draw(st.integers(0, len(pool) - 1))
        return f"where(x{k} > 0, x{i}, x{j})", lambda lib, v: lib.where(v[k] > 0, v[i], v[j])
    if kind == "masked_fill":
        s = draw(scalars())
        return (f"x{i}.masked_fill(x{j} > 0, {s!r})",
                lambda lib, v: v[i].masked_fill(v[j] > 0, s))
    if kind == "more":
        return more_step(draw, x, i, j, pool)
    if kind == "cat":
        name = draw(st.sampled_from(["cat", "stack"]))
        dim = draw(dims(x.ndim + (name == "stack")))
        return f"{name}([x{i}, x{j}], {dim})", lambda lib, v: getattr(lib, name)([v[i], v[j]], dim)
    dtype = draw(st.sampled_from(DTYPES))
    return f"x{i}.to({dtype})", lambda lib, v: v[i].to(getattr(lib, dtype))


def more_step(draw, x, i, j, pool):
    """Less common forms: scalar where, dims tuples, gather/index_select, rounding division,
    tensor bounds, splitting, repeating."""
    form = draw(st.sampled_from(["where_scalar", "sum_dims", "mean_dims", "gather",
                                 "index_select", "div_floor", "div_trunc", "clamp_tensor",
                                 "chunk", "split", "repeat", "expand_as", "setitem_mask",
                                 "setitem_tensor", "squeeze_dims", "sum_dtype"]))
    ndim = x.ndim
    s = draw(scalars())
    if form == "where_scalar":
        return f"where(x{i} > 0, x{i}, {s!r})", lambda lib, v: lib.where(v[i] > 0, v[i], s)
    if form in ("sum_dims", "mean_dims", "squeeze_dims"):
        picked = tuple(draw(st.lists(dims(ndim), min_size=1, max_size=2)))
        if form == "squeeze_dims":
            return f"x{i}.squeeze({picked})", lambda lib, v: v[i].squeeze(picked)
        name = form[:-5]
        keep = draw(st.booleans())
        return (f"x{i}.{name}(dim={picked}, keepdim={keep})",
                lambda lib, v: getattr(v[i], name)(dim=picked, keepdim=keep))
    if form == "sum_dtype":
        dtype = draw(st.sampled_from(DTYPES))
        return f"x{i}.sum(dtype={dtype})", lambda lib, v: v[i].sum(dtype=getattr(lib, dtype))
    if form in ("gather", "index_select"):
        d = draw(dims(ndim))
        size = x.shape[d] if ndim else 1
        ids = draw(st.lists(st.integers(-1, size), min_size=1, max_size=3))
        if form == "index_select":
            return (f"x{i}.index_select({d}, tensor({ids}))",
                    lambda lib, v: v[i].index_select(d, lib.tensor(ids, dtype=lib.int64)))
        shape = list(x.shape)
        if shape:
            shape[d] = len(ids)
        index = np.resize(np.array(ids), shape).astype(np.int64)
        return (f"x{i}.gather({d}, tensor({index.tolist()}))",
                lambda lib, v: v[i].gather(d, lib.tensor(index)))
    if form in ("div_floor", "div_trunc"):
        mode = form[4:]
        return (f"div(x{i}, x{j}, rounding_mode={mode!r})",
                lambda lib, v: lib.div(v[i], v[j], rounding_mode=mode))
    if form == "clamp_tensor":
        return f"x{i}.clamp(min=x{j})", lambda lib, v: v[i].clamp(min=v[j])
    if form == "chunk":
        n = draw(st.integers(1, 3))
        d = draw(dims(ndim))
        return f"x{i}.chunk({n}, {d})", lambda lib, v: v[i].chunk(n, d)
    if form == "split":
        n = draw(st.integers(1, 3))
        d = draw(dims(ndim))
        return f"x{i}.split({n}, {d})", lambda lib, v: v[i].split(n, d)
    if form == "repeat":
        reps = tuple(draw(st.lists(st.integers(1, 2), min_size=ndim, max_size=ndim + 1)))
        return f"x{i}.repeat{reps}", lambda lib, v: v[i].repeat(*reps) if reps else v[i]
    if form == "expand_as":
        return f"x{i}.expand_as(x{j})", lambda lib, v: v[i].expand_as(v[j])

    if form == "setitem_mask":
        def setitem_mask(lib, v):
            v[i][v[i] > 0] = s
            return v[i]
        return f"x{i}[x{i} > 0] = {s!r}", setitem_mask

    def setitem_tensor(lib, v):
        v[i][..., 0] = v[j]
        return v[i]
    return f"x{i}[..., 0] = x{j}", setitem_tensor


def index_step(draw, x, i):
    shape = x.shape
    n = shape[0] if shape else 1
    form = draw(st.sampled_from(["int", "slice", "second", "ids", "mask", "none", "ellipsis"]))
    if form == "int":
        k = draw(st.integers(-n - 1, n))
        return f"x{i}[{k}]", lambda lib, v: v[i][k]
    if form == "slice":
        a, b = draw(st.integers(-n, n)), draw(st.integers(-n, n))
        step = draw(st.integers(1, 2))
        return f"x{i}[{a}:{b}:{step}]", lambda lib, v: v[i][a:b:step]
    if form == "second":
        k = draw(st.integers(-2, 2))
        return f"x{i}[:, {k}]", lambda lib, v: v[i][:, k]
    if form == "ids":
        ids = draw(st.lists(st.integers(-n, max(n - 1, 0)), min_size=0, max_size=4 if n else 0))
        return (f"x{i}[tensor({ids})]",
                lambda lib, v: v[i][lib.tensor(ids, dtype=lib.int64)])
    if form == "mask":
        return f"x{i}[x{i} > 0]", lambda lib, v: v[i][v[i] > 0]
    if form == "none":
        return f"x{i}[None]", lambda lib, v: v[i][None]
    return f"x{i}[..., -1]", lambda lib, v: v[i][..., -1]


def view_step(draw, x, i):
    ndim = x.ndim
    form = draw(st.sampled_from(["reshape", "view", "transpose", "permute", "unsqueeze",
                                 "squeeze", "expand", "flip", "T"]))
    if form in ("reshape", "view"):
        shape = draw(st.sampled_from([(-1,), (1, -1), (-1, 1), (x.numel(),), (2, -1)]))
        return f"x{i}.{form}{shape}", lambda lib, v: getattr(v[i], form)(*shape)
    if form == "transpose":
        a, b = draw(dims(ndim)), draw(dims(ndim))
        return f"x{i}.transpose({a}, {b})", lambda lib, v: v[i].transpose(a, b)
    if form == "permute":
        order = draw(st.permutations(range(ndim)))
        order = tuple(order)
        return f"x{i}.permute({order})", lambda lib, v: v[i].permute(order)
    if form == "unsqueeze":
        d = draw(st.integers(-ndim - 1, ndim))
        return f"x{i}.unsqueeze({d})", lambda lib, v: v[i].unsqueeze(d)
    if form == "squeeze":
        d = draw(dims(ndim, allow_none=True))
        return (f"x{i}.squeeze({d})",
                lambda lib, v: v[i].squeeze() if d is None else v[i].squeeze(d))
    if form == "expand":
        shape = (2,) + tuple(x.shape)
        return f"x{i}.expand{shape}", lambda lib, v: v[i].expand(*shape)
    if form == "flip":
        d = draw(dims(ndim))
        return f"x{i}.flip({d})", lambda lib, v: v[i].flip(d)
    return f"x{i}.T", lambda lib, v: v[i].T


def inplace_step(draw, x, i, j):
    form = draw(st.sampled_from(["add_", "mul_", "sub_", "clamp_", "zero_", "fill_", "setitem",
                                 "add_tensor", "masked_fill_", "div_"]))
    s = draw(scalars())
    if form in ("add_", "mul_", "sub_", "div_", "fill_"):
        return f"x{i}.{form}({s!r})", lambda lib, v: getattr(v[i], form)(s)
    if form == "clamp_":
        return f"x{i}.clamp_(min={s!r})", lambda lib, v: v[i].clamp_(min=s)
    if form == "zero_":
        return f"x{i}.zero_()", lambda lib, v: v[i].zero_()
    if form == "add_tensor":
        return f"x{i}.add_(x{j})", lambda lib, v: v[i].add_(v[j])
    if form == "masked_fill_":
        return f"x{i}.masked_fill_(x{j} > 0, {s!r})", \
            lambda lib, v: v[i].masked_fill_(v[j] > 0, s)

    def setitem(lib, v):
        v[i][0] = s
        return v[i]
    return f"x{i}[0] = {s!r}", setitem


# ---------------------------------------------------------------------------- comparing

def _parts(value):
    if isinstance(value, (tuple, list)):
        return list(value)
    return [value]


def _dtype_name(t):
    return str(t.dtype).replace("torch.", "") if isinstance(t, torch.Tensor) else t.dtype.name


# Set per program: once a float32 value took part, float64 results carry float32 rounding.
_PRECISION = {"float32_seen": False}


def compare(ours, theirs, what):
    ours, theirs = _parts(ours), _parts(theirs)
    assert len(ours) == len(theirs), f"{what}: {len(ours)} results, torch {len(theirs)}"
    for a, b in zip(ours, theirs):
        if not isinstance(b, torch.Tensor):
            assert not isinstance(a, tg.Tensor) and a == b, f"{what}: {a!r} vs torch {b!r}"
            continue
        assert isinstance(a, tg.Tensor), f"{what}: {type(a).__name__}, torch a Tensor"
        assert _dtype_name(a) == _dtype_name(b), \
            f"{what}: dtype {_dtype_name(a)}, torch {_dtype_name(b)}"
        assert tuple(a.shape) == tuple(b.shape), f"{what}: shape {a.shape}, torch {b.shape}"
        assert a.requires_grad == b.requires_grad, \
            f"{what}: requires_grad {a.requires_grad}, torch {b.requires_grad}"
        close(a.detach().numpy(), b.detach().numpy(), what)


def close(a, b, what):
    if b.dtype.kind == "f":
        tight = b.dtype == np.float64 and not _PRECISION["float32_seen"]
        np.testing.assert_allclose(a, b, rtol=1e-9 if tight else 2e-5,
                                   atol=1e-12 if tight else 1e-6, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(a, b, err_msg=what)


def run_both(fn, ours, theirs, what, torch_only=TORCH_ONLY):
    """(our result, torch's result); both raised -> None; only one raised -> fail or Dead."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # NaN/inf and torch's deprecations are expected here
        try:
            mine = fn(tg, ours)
            mine_error = None
        except Exception as error:  # noqa: BLE001 (any exception: whether one is raised counts)
            mine, mine_error = None, error
        try:
            their = fn(torch, theirs)
            their_error = None
        except Exception as error:  # noqa: BLE001
            their, their_error = None, error
    if mine_error is not None and their_error is not None:
        return None
    if mine_error is not None:
        if any(re.search(pattern, str(mine_error)) for pattern, _ in LOUD):
            raise Dead(what)
        raise AssertionError(f"{what}: we raise {mine_error!r}; torch returns") from mine_error
    if their_error is not None:
        if any(re.search(pattern, str(their_error)) for pattern, _ in torch_only):
            raise Dead(what)
        raise AssertionError(f"{what}: torch raises {their_error!r}; we return {mine!r}")
    return mine, their


# ---------------------------------------------------------------------------- the program

@st.composite
def inputs(draw):
    base = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))
    made = []
    for _ in range(draw(st.integers(1, 3))):
        cut = draw(st.integers(0, len(base)))
        shape = [n if draw(st.booleans()) else 1 for n in base[cut:]]
        dtype = draw(st.sampled_from(DTYPES))
        size = int(np.prod(shape))
        values = np.array(draw(st.lists(st.sampled_from([-2.0, -1.5, -1.0, -0.5, 0.0, 0.25, 0.5,
                                                          1.0, 2.0, 3.0]),
                                        min_size=size, max_size=size))).reshape(shape)
        grad = dtype.startswith("float") and draw(st.booleans())
        made.append((values.astype(dtype), grad))
    return made


@given(made=inputs(), data=st.data())
def test_random_programs_match_torch(made, data):
    _PRECISION["float32_seen"] = any(a.dtype == np.float32 for a, _ in made)
    ours = [tg.tensor(a, requires_grad=g) for a, g in made]
    theirs = [torch.tensor(a, requires_grad=g) for a, g in made]
    leaves = list(zip(ours, theirs))
    lines = [f"x{k} = tensor({a.tolist()!r}, dtype={a.dtype}, requires_grad={g})"
             for k, (a, g) in enumerate(made)]
    try:
        for _ in range(data.draw(st.integers(1, 6))):
            what, fn = step_strategy(data, ours)
            lines.append(what)
            program = "\n".join(lines)
            both = run_both(fn, ours, theirs, program)
            if both is None:
                lines[-1] += "   # both raise"
                continue
            for mine, their in zip(_parts(both[0]), _parts(both[1])):
                compare(mine, their, program)
                if isinstance(mine, tg.Tensor):
                    _PRECISION["float32_seen"] |= mine.dtype == np.float32
                    ours.append(mine)
                    theirs.append(their)
            if "_(" in what or "] =" in what:  # an in-place step: every earlier value again
                for k, (a, b) in enumerate(zip(ours, theirs)):
                    compare(a, b, f"{program}\n(x{k} after the in-place step)")
    except Dead:
        return
    check_gradients(ours, theirs, leaves, "\n".join(lines))


def check_gradients(ours, theirs, leaves, program):
    terms = [(a, b) for a, b in zip(ours, theirs)
             if a.requires_grad and b.requires_grad and a.dtype.kind == "f" and a.numel()]
    if not terms:
        return

    def backward(lib, values):
        total = 0
        for t in values:
            weight = lib.tensor(np.linspace(0.5, 1.5, t.numel()).reshape(tuple(t.shape)),
                                dtype=t.dtype)
            total = total + (t * weight).sum().double()
        total.backward()
        return total

    what = program + "\n(backward of the weighted sum of every float result)"
    try:
        both = run_both(backward, [a for a, _ in terms], [b for _, b in terms], what,
                        TORCH_ONLY + BACKWARD_TORCH_ONLY)
    except Dead:
        return
    if both is None:
        return
    for k, (a, b) in enumerate(leaves):
        if b.grad is None or a.grad is None:
            assert (a.grad is None) == (b.grad is None), f"{what}: x{k}.grad {a.grad} vs {b.grad}"
            continue
        assert _dtype_name(a.grad) == _dtype_name(b.grad), f"{what}: x{k}.grad dtype"
        close(a.grad.numpy(), b.grad.numpy(), f"{what}: x{k}.grad")
