"""Hypothesis strategies for testing ops and models built on tinygrad_tf, and torch.testing's
`assert_close` (testing_close.py) to compare values or gradients with a reference.

    from hypothesis import given
    from tinygrad_tf import gradcheck, testing as tt

    @given(tt.tensors(shape=tt.shapes(max_dims=3)))
    def test_tanh(x):
        assert gradcheck(lambda t: t.tanh(), x)

Importing this module imports Hypothesis (assert_close works without it); nothing else in
tinygrad_tf does.
"""
import numpy as np

from .tensor import Tensor
from .testing_close import assert_close  # noqa: F401 (torch.testing's; needs no Hypothesis)

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:  # assert_close still works; the strategies say what is missing

    class _Missing:
        def __getattr__(self, name):
            raise ImportError("tinygrad_tf.testing's strategies need Hypothesis: pip install "
                              "hypothesis (or tinygrad_tf's [test] extra)")

        def composite(self, function):  # defined now, fails when called
            return lambda *args, **kwargs: self.composite_strategy

    st = hnp = _Missing()


def shapes(min_dims=0, max_dims=4, min_side=1, max_side=5):
    """Array shapes; shrinks towards fewer, smaller dims."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=1, max_side=5):
    """A tuple of `num_shapes` shapes that broadcast together (size-1 dims and missing leading
    dims included), e.g. ((3, 1, 4), (5, 4))."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side,
        max_side=max_side).map(lambda result: result.input_shapes)


def _away_from(values, kinks, margin):
    # Push every value at least `margin` away from each kink, keeping its side of the kink.
    for kink in kinks:
        near = np.abs(values - kink) < margin
        side = np.where(values >= kink, 1.0, -1.0)
        values = np.where(near, kink + side * margin, values)
    return values


def _spread(values, margin, low, high):
    # Replace values by ones in the same order, evenly spaced over [low, high] (at least `margin`
    # apart even if that overruns the bounds), so max/argmax have no ties: ties are kinks.
    order = np.argsort(values, axis=None, kind="stable")
    gap = max(margin, (high - low) / max(values.size - 1, 1))
    spread = np.empty(values.size)
    spread[order] = np.arange(values.size) * gap
    return (spread - spread.mean() + (low + high) / 2).reshape(values.shape)


def _on_lattice(values, margin, odd):
    # Snap to even (or odd) multiples of `margin`: an even-snapped and an odd-snapped tensor
    # differ by at least `margin` everywhere, so maximum(a, b) never meets a tie.
    step = 2 * margin
    offset = margin if odd else 0.0
    return np.round((values - offset) / step) * step + offset


@st.composite
def tensors(draw, shape=None, dtype=np.float64, min_value=-3.0, max_value=3.0,
            avoid=(), margin=1e-2, distinct=False, lattice=None, noncontiguous=True,
            requires_grad=True):
    """Float tensors with bounded elements.

    shape: a shape, or a strategy of shapes (default: `shapes()`).
    avoid: points where the op under test has a kink (e.g. (0.0,) for relu/abs); every element
        stays at least `margin` away from each.
    distinct: elements pairwise at least `margin` apart, spread over [min_value, max_value]
        (for max and argmax, where ties are kinks); applied after `avoid`, which it may undo.
    lattice: "even" or "odd" snaps elements to even or odd multiples of `margin`, so an "even"
        and an "odd" tensor never come closer than `margin` (for maximum(a, b)).
    noncontiguous: store the data in a permuted layout (mostly not C order), so ops meet
        non-contiguous arrays the way they do after `transpose`/`permute`.
    """
    if shape is None:
        shape = shapes()
    if not isinstance(shape, (tuple, list)):
        shape = draw(shape)
    shape = tuple(shape)
    elements = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False, width=64)
    values = draw(hnp.arrays(np.float64, shape, elements=elements))
    if avoid:
        values = _away_from(values, avoid, margin)
    if distinct and values.size > 1:
        values = _spread(values, margin, min_value, max_value)
    if lattice is not None:
        if lattice not in ("even", "odd"):
            raise ValueError(f"tensors: lattice must be 'even' or 'odd', not {lattice!r}")
        values = _on_lattice(values, margin, lattice == "odd")
    values = values.astype(dtype)
    if noncontiguous and len(shape) >= 2:
        # Store the data in a permuted memory layout and view it back in `shape`: same values,
        # strides that are not C order. The drawn permutation is reversed, so the simplest draw
        # (and a shrunk failure) is the fully transposed layout: non-contiguous is the norm, and
        # C order comes up when the draw happens to be the reversal.
        perm = draw(st.permutations(range(len(shape))))[::-1]
        values = np.ascontiguousarray(values.transpose(perm)).transpose(np.argsort(perm))
    return Tensor.from_numpy(np.asarray(values)).requires_grad_(requires_grad)  # keeps the layout


@st.composite
def tensor_pairs(draw, max_dims=3, max_side=4, apart=False, **kwargs):
    """Two tensors whose shapes broadcast together. apart=True keeps every pair of elements that
    meet under broadcasting at least `margin` apart (no ties for maximum/comparisons)."""
    shape_a, shape_b = draw(broadcastable_shapes(max_dims=max_dims, max_side=max_side))
    if apart:
        return (draw(tensors(shape=shape_a, lattice="even", **kwargs)),
                draw(tensors(shape=shape_b, lattice="odd", **kwargs)))
    return draw(tensors(shape=shape_a, **kwargs)), draw(tensors(shape=shape_b, **kwargs))


@st.composite
def reduction_dims(draw, ndim):
    """A valid `dim` argument for a tensor of `ndim` dims: None, an int (maybe negative), or a
    tuple of distinct dims."""
    if ndim == 0:
        return None
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    dims = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(d - ndim if draw(st.booleans()) else d for d in dims)


def index_arrays(size, shape=None, max_len=6):
    """Integer index arrays into a dim of `size`, repeats and negative indices included."""
    if shape is None:
        shape = hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=max_len)
    return hnp.arrays(np.int64, shape, elements=st.integers(-size, size - 1))


@st.composite
def attention_masks(draw, batch, q_len, k_len, kind=None):
    """A boolean mask of shape (batch, q_len, k_len), True where a query must NOT attend.

    kind: "none", "padding" (some trailing keys of each sequence masked, at least one open),
    "causal" (needs q_len == k_len), "fully_masked" (some query rows see no key at all), or
    "single_key" (each query row sees exactly one key). Default: any of them.
    """
    kinds = ["none", "padding", "fully_masked", "single_key"] + (["causal"] if q_len == k_len else [])
    if kind is not None and kind not in kinds + ["causal"]:
        raise ValueError(f"attention_masks: unknown kind {kind!r}; expected one of "
                         f"{', '.join(kinds + ['causal'] * (q_len != k_len))}")
    kind = kind or draw(st.sampled_from(kinds))
    mask = np.zeros((batch, q_len, k_len), dtype=bool)
    if kind == "padding":
        for b in range(batch):
            length = draw(st.integers(1, k_len))
            mask[b, :, length:] = True
    elif kind == "causal":
        if q_len != k_len:
            raise ValueError(f"attention_masks: a causal mask needs q_len == k_len, got {q_len} "
                             f"and {k_len}")
        mask[:] = np.triu(np.ones((q_len, k_len), dtype=bool), k=1)
    elif kind == "fully_masked":
        rows = draw(hnp.arrays(bool, (batch, q_len)))
        rows[draw(st.integers(0, batch - 1)), draw(st.integers(0, q_len - 1))] = True  # >= 1 row
        mask[rows] = True
    elif kind == "single_key":
        keys = draw(hnp.arrays(np.int64, (batch, q_len), elements=st.integers(0, k_len - 1)))
        mask[:] = True
        np.put_along_axis(mask, keys[..., None], False, axis=-1)
    return mask


@st.composite
def grad_outputs(draw, outputs, min_value=-2.0, max_value=2.0):
    """Upstream gradients for `gradgradcheck` (its grad_outputs), or for any vector-Jacobian
    product: one float tensor per output, of its shape and dtype. `outputs` is a Tensor, a
    shape, or a sequence of them; a tuple comes back, to pass as grad_outputs.

        @given(x=tt.tensors(), data=st.data())
        def test_my_op_second_derivative(x, data):
            v = data.draw(tt.grad_outputs(my_op(x)))
            assert gradgradcheck(my_op, x, grad_outputs=v)
    """
    if isinstance(outputs, Tensor) or (isinstance(outputs, tuple) and
                                       all(isinstance(n, (int, np.integer)) for n in outputs)):
        outputs = [outputs]
    result = []
    for out in outputs:
        shape, dtype = (out.shape, out.dtype) if isinstance(out, Tensor) else (tuple(out),
                                                                               np.float64)
        result.append(draw(tensors(shape=shape, dtype=dtype, min_value=min_value,
                                   max_value=max_value, requires_grad=False)))
    return tuple(result)
