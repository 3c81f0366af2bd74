"""The same code through tinygrad_tf and PyTorch: every Tensor/autograd item of issue 11.

Each test is a function of `lib` (the `tinygrad_tf` module or `torch`): it builds tensors with
`lib.tensor`, runs torch-style code on them and returns what it computed (arrays, gradients,
or the exception type raised). `same(fn)` runs it through both and compares. Skipped without
torch.
"""
import numpy as np
import pytest

import tinygrad_tf as tg

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 4))           # float64, so values compare tightly
W = RNG.standard_normal(4)
IDX = np.array([[0, 2, 1, 3], [3, 3, 0, 1], [1, 0, 2, 2]])


def plain(value):
    """Tensors (either library), tuples and numbers -> nested numpy values for comparing."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    if isinstance(value, tg.Tensor):
        return value.numpy()
    return value


def same(fn, rtol=1e-7, atol=1e-10):
    ours, theirs = plain(fn(tg)), plain(fn(torch))
    _compare(ours, theirs, rtol, atol)
    return ours


def _compare(ours, theirs, rtol, atol):
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), (ours, theirs)
        for a, b in zip(ours, theirs):
            _compare(a, b, rtol, atol)
    elif isinstance(theirs, np.ndarray):
        assert np.shape(ours) == theirs.shape, (np.shape(ours), theirs.shape)
        if theirs.dtype.kind in "iub":
            np.testing.assert_array_equal(ours, theirs)
        else:
            np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)
    else:
        assert ours == theirs, (ours, theirs)


def raises(fn):
    """The name of the exception's kind fn raised ("error"), or "ok"."""
    try:
        fn()
    except (RuntimeError, ValueError, TypeError, IndexError):
        return "error"
    return "ok"


def leaf(lib, array=X):
    return lib.tensor(array, requires_grad=True)


# ---------------------------------------------------------------------------- in-place ops

def test_inplace_methods_and_operators_give_torch_values():
    def fn(lib):
        x = lib.tensor(X)
        x.add_(lib.tensor(W)).sub_(0.5, alpha=2).mul_(3.0).div_(lib.tensor(W) + 4)
        x += 1
        x -= lib.tensor(W)
        x *= 2
        x /= 3
        y = lib.tensor(X)
        y.clamp_(-0.5, 0.5)
        z = lib.tensor(X)
        z.masked_fill_(z > 0, -1.0)
        w = lib.zeros_like(z).fill_(2.5)
        v = lib.tensor(X).zero_()
        c = lib.tensor(X).copy_(lib.tensor(W))
        return x, y, z, w, v, c
    same(fn)


def test_setitem_writes_in_place_like_torch():
    def fn(lib):
        x = lib.tensor(X)
        alias = x[1]  # a view: it sees the writes below
        x[0] = 7.0
        x[1, 1:3] = lib.tensor([5.0, 6.0], dtype=lib.float64)
        x[x < -1] = 0.0
        x[:, lib.tensor([0, 3])] = -2.0
        return x, alias
    same(fn)


def test_update_under_no_grad_changes_the_parameter_itself():
    """`with no_grad(): w -= lr * w.grad` must train the same object (it used to rebind)."""
    def fn(lib):
        w = leaf(lib)
        same_object = w
        for _ in range(3):
            (w * w).sum().backward()
            with lib.no_grad():
                w -= 0.1 * w.grad
            w.grad = None
        return same_object, w is same_object
    assert same(fn)[1] is True


def test_inplace_rules_match_torch():
    def on_leaf(lib):
        return raises(lambda: leaf(lib).add_(1.0))

    def leaf_under_no_grad(lib):
        w = leaf(lib)
        with lib.no_grad():
            w.mul_(2.0)
        return w

    def read_only_expand(lib):
        return raises(lambda: lib.tensor(W).expand(3, 4).add_(1.0))

    def int_tensor_true_division(lib):
        return raises(lambda: lib.tensor([1, 2]).div_(2))

    assert same(on_leaf) == "error"
    same(leaf_under_no_grad)
    assert same(read_only_expand) == "error"
    assert same(int_tensor_true_division) == "error"


def test_version_counters_are_shared_with_views_like_torch():
    def fn(lib):
        x = lib.tensor(X)
        view, other = x[0], lib.tensor(X)
        before = (x._version, view._version)
        view.add_(1.0)
        x.mul_(2.0)
        x[1] = 0.0
        return before, x._version, view._version, x.detach()._version, other._version
    same(fn)


def test_backward_after_a_saved_input_changed_raises_like_torch():
    def mul_saves_its_input(lib):
        w, b = leaf(lib), lib.tensor(X)
        y = (w * b).sum()
        b.add_(1.0)
        return raises(y.backward)

    def add_saves_nothing(lib):
        w, b = leaf(lib), lib.tensor(X)
        y = (w + b).sum()
        b.add_(1.0)
        y.backward()
        return w.grad

    def exp_saves_its_output(lib):
        w = leaf(lib)
        with lib.no_grad():
            pass
        y = w.exp()
        out = y.detach()
        out.mul_(2.0)  # the detached alias shares y's memory and version
        return raises(lambda: y.sum().backward())

    def optimizer_step_between_backwards(lib):
        w = leaf(lib)
        loss = (w * w).sum()
        loss.backward(retain_graph=True)
        with lib.no_grad():
            w -= 0.1 * w.grad  # what optimizer.step() does
        return raises(loss.backward)

    assert same(mul_saves_its_input) == "error"
    same(add_saves_nothing)
    assert same(exp_saves_its_output) == "error"
    assert same(optimizer_step_between_backwards) == "error"


def test_the_version_error_names_the_op_and_both_versions():
    w, b = tg.tensor(X, requires_grad=True), tg.tensor(X)
    y = (w * b).sum()
    b.add_(1.0)
    b.add_(1.0)
    with pytest.raises(RuntimeError, match=r"Mul: an array of shape \(3, 4\).*version 2; "
                                           r"backward needs version 0"):
        y.backward()


# ---------------------------------------------------------------------------- max / min

def test_max_min_with_dim_return_values_and_indices():
    def fn(lib):
        x = leaf(lib)
        values, indices = x.max(1)
        low = x.min(dim=0, keepdim=True)
        (values.sum() + 2 * low.values.sum()).backward()
        return (values, indices, x.max(1)[1], low.values, low.indices, x.max(), x.min(),
                x.grad)
    same(fn)


def test_arg_and_a_reductions_and_any_all():
    def fn(lib):
        x = lib.tensor(X)
        return (x.argmax(), x.argmax(1), x.argmin(0, keepdim=True), x.amax((0, 1)),
                x.amin(1, keepdim=True), (x > 0).any(1), (x > -2).all(0), (x > 0).any(),
                (x > 0).all(), x.max(lib.tensor(W)), x.min(lib.tensor(W)))
    same(fn)


# ---------------------------------------------------------------------------- construction

def test_tensor_copies_and_from_numpy_shares():
    def fn(lib):
        array = X.copy()
        copied, shared, factory = lib.tensor(array), lib.from_numpy(array), lib.tensor([1, 2])
        array[0, 0] = 100.0
        return copied, shared, factory, factory.dtype == lib.int64
    same(fn)
    array = X.copy()
    assert tg.Tensor(array).numpy() is not array  # the constructor copies too, as torch.tensor


# ---------------------------------------------------------------------------- numeric traps

def test_sigmoid_keeps_precision_far_below_minus_17_in_float32():
    def fn(lib):
        x = lib.tensor([-80.0, -40.0, -20.0, 0.0, 5.0, 10.0], requires_grad=True)
        p = x.sigmoid()
        target = lib.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
        bce = -(target * p.log() + (1 - target) * (1 - p).log())  # hand-written BCE
        bce[:3].sum().backward()
        return p, bce[:3], x.grad
    ours = same(fn, rtol=1e-5, atol=0)
    assert np.isfinite(ours[1]).all()
    # Further out torch's float32 sigmoid underflows to 0 (log gives -inf); ours stays finite
    # until exp(-|x|) itself underflows, near -103.
    assert np.isfinite(tg.tensor([-100.0]).sigmoid().log().numpy()).all()


def test_masked_fill_rejects_a_mask_larger_than_the_tensor():
    """A deliberate difference: torch's out-of-place masked_fill grows the result to the mask's
    shape (its in-place masked_fill_ refuses); ours refuses both, so a mask built with the wrong
    shape fails loudly instead of silently multiplying the data."""
    x, mask = tg.tensor(W), tg.tensor(X) > 0
    with pytest.raises(ValueError, match=r"masked_fill: mask of shape \(3, 4\) does not broadcast "
                                         r"to the tensor's shape \(4,\)"):
        x.masked_fill(mask, 0.0)
    assert tuple(torch.tensor(W).masked_fill(torch.tensor(X) > 0, 0.0).shape) == (3, 4)

    def inplace(lib):
        return raises(lambda: lib.tensor(W).masked_fill_(lib.tensor(X) > 0, 0.0))
    assert same(inplace) == "error"


def test_mean_of_an_empty_tensor_is_nan():
    def fn(lib):
        return lib.zeros(0).mean(), lib.zeros(0, 3).mean(0)
    same(fn)


def test_tensor_to_a_tensor_power_has_both_gradients():
    def fn(lib):
        base = lib.tensor(np.abs(X) + 0.1, requires_grad=True)
        exponent = lib.tensor(X, requires_grad=True)
        zero_base = lib.tensor([0.0, 0.0, 2.0], requires_grad=True)
        exps = lib.tensor([0.0, 2.0, 0.0], requires_grad=True)
        ((base ** exponent).sum() + (zero_base ** exps).sum()).backward()
        ints = lib.tensor([2, 3]) ** lib.tensor([3, 2])
        return base.grad, exponent.grad, zero_base.grad, exps.grad, ints
    same(fn)


# ---------------------------------------------------------------------------- new ops

def _values_and_grads(op, inputs, upstream_seed=1):
    """fn(lib): op on leaves made from `inputs`; the output and each input's gradient under a
    non-uniform upstream gradient."""
    def fn(lib):
        leaves = [lib.tensor(a, requires_grad=True) if a.dtype.kind == "f" else lib.tensor(a)
                  for a in inputs]
        out = op(lib, *leaves)
        up = np.random.default_rng(upstream_seed).standard_normal(tuple(out.shape))
        (out * lib.tensor(up)).sum().backward()
        return [out] + [t.grad for t in leaves if t.requires_grad]
    return fn


SCATTER_SRC = RNG.standard_normal((3, 4))
UNIQUE_IDX = np.array([[2, 0, 1, 3], [0, 1, 3, 2], [3, 2, 1, 0]])
OPS = {
    "gather": (lambda lib, x: x.gather(1, lib.tensor(IDX[:, :3])), [X]),
    # torch's backward needs src of the index's shape (it fails on a larger src; ours slices)
    "scatter": (lambda lib, x, s: x.scatter(1, lib.tensor(UNIQUE_IDX[:, :2]), s),
                [X, SCATTER_SRC[:, :2].copy()]),
    "scatter_add": (lambda lib, x, s: x.scatter_add(0, lib.tensor(IDX[:2] % 3), s),
                    [X, SCATTER_SRC[:2].copy()]),
    "index_select": (lambda lib, x: x.index_select(1, lib.tensor([3, 0, 0])), [X]),
    "cumsum": (lambda lib, x: x.cumsum(1) + x.cumsum(-2), [X]),
    "topk": (lambda lib, x: x.topk(2, dim=1).values + x.topk(1, 0, largest=False)[0].sum(), [X]),
    "sort": (lambda lib, x: x.sort(1, descending=True).values + x.sort(0)[0].sum(), [X]),
    "split": (lambda lib, x: lib.cat([p * (i + 1) for i, p in enumerate(x.split(3, 1))], 1), [X]),
    "split_sections": (lambda lib, x: lib.cat(x.split([1, 3], 1)[::-1], 1), [X]),
    "chunk": (lambda lib, x: lib.cat([p * (i + 2) for i, p in enumerate(x.chunk(3, 1))], 1), [X]),
    "unbind": (lambda lib, x: lib.stack([p * (i + 1) for i, p in enumerate(x.unbind(1))]), [X]),
    "repeat": (lambda lib, x: x.repeat(2, 1, 3), [X]),
    "flip": (lambda lib, x: x.flip((0, 1)) + x.flip(1), [X]),
    "roll": (lambda lib, x: x.roll(1, 1) + x.roll((2, -1), (0, 1)) + x.roll(5), [X]),
    "tril_triu": (lambda lib, x: x.tril() + 2 * x.triu(1) + 3 * x.tril(-1), [X]),
    "std": (lambda lib, x: x.std(1) + x.std(), [X]),
    "prod": (lambda lib, x: x.prod(1) + x.prod(), [np.where(np.abs(X) < 0.3, 0.0, X)]),
    "norm": (lambda lib, x: x.norm() + x.norm(1, dim=1).sum() + x.norm(float("inf"), 0).sum()
             + x.norm(3, dim=0).sum(), [X]),
    "norm_of_zeros": (lambda lib, x: x.norm(dim=1) + x.norm(3, dim=1) + x.norm(), [X * (X > 0)
                                                                            * [[1], [0], [1]]]),
    "logsumexp": (lambda lib, x: x.logsumexp(1) + x.logsumexp((0, 1)), [X]),
    "elementwise": (lambda lib, x: x.log1p() + x.expm1() + x.sin() + x.cos(), [np.abs(X)]),
    "minimum": (lambda lib, x, y: x.minimum(y), [X, X[::-1].copy()]),
    "steps": (lambda lib, x: x.floor() + x.ceil() + x.round() + x.sign() + x, [X * 3]),
    "remainder": (lambda lib, x, y: x % 0.7 + x % y, [X * 3, np.abs(X) + 0.5]),
    "clone": (lambda lib, x: x.clone() * 2, [X]),
    "expand_view_as": (lambda lib, x, w: x.expand_as(lib.zeros(2, 3, 4, dtype=lib.float64)).sum(0)
                       + w.view_as(lib.zeros(1, 4, dtype=lib.float64)), [X, W]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_values_and_gradients_match_torch(name):
    op, inputs = OPS[name]
    same(_values_and_grads(op, inputs), rtol=1e-6, atol=1e-9)


def test_index_and_predicate_ops_match_torch():
    def fn(lib):
        x = lib.tensor([[1.0, float("nan"), float("inf")], [-2.0, 0.5, -float("inf")]])
        y = lib.tensor(X)
        return (x.isnan(), x.isfinite(), y.argsort(1), y.argsort(0, descending=True),
                y.sort(0).indices, y.topk(3, 1).indices, lib.tensor([7, -7]) // 2,
                lib.tensor([7, -7]) % 3, y // 0.7, 3.0 // lib.tensor(W), 2.5 % lib.tensor(W))
    same(fn)


def test_floor_divide_has_a_zero_gradient_where_torch_has_none():
    """A deliberate difference: torch does not differentiate `//` (backward raises); ours
    gives the zero gradient of a piecewise-constant function, like floor."""
    x = tg.tensor(X, requires_grad=True)
    (x // 0.7).sum().backward()
    assert not x.grad.numpy().any()
    t = torch.tensor(X, requires_grad=True)
    with pytest.raises(RuntimeError, match="floor_divide"):
        (t // 0.7).sum().backward()


def test_factories_match_torch():
    def fn(lib):
        lib.manual_seed(0)  # different generators: compare shapes and dtypes, not draws
        r = lib.randint(0, 5, (3, 2))
        n = lib.randn_like(lib.tensor(X))
        return (lib.linspace(-1, 1, 5), lib.full_like(lib.tensor(X), 2.5), tuple(r.shape),
                r.dtype == lib.int64, bool((r >= 0).all() and (r < 5).all()), tuple(n.shape),
                n.dtype == lib.float64)
    same(fn, rtol=1e-6)


# ---------------------------------------------------------------------------- autograd

def test_autograd_grad_returns_gradients_and_touches_no_grad():
    def fn(lib):
        x, w = leaf(lib), lib.tensor(W, requires_grad=True)
        y = (x @ w).tanh()
        unused = lib.tensor(W, requires_grad=True)
        gx, gw, gu = lib.autograd.grad(y, (x, w, unused), grad_outputs=lib.tensor(W[:3]),
                                       allow_unused=True)
        (z,) = lib.autograd.grad((x * x).sum(), x)
        return gx, gw, gu is None, z, x.grad is None, w.grad is None
    same(fn)


def test_autograd_grad_errors_like_torch():
    def unused_input(lib):
        x, w = leaf(lib), lib.tensor(W, requires_grad=True)
        return raises(lambda: lib.autograd.grad(x.sum(), (x, w)))

    def second_call_without_retain_graph(lib):
        x = leaf(lib)
        y = (x * x).sum()
        lib.autograd.grad(y, x)
        return raises(lambda: lib.autograd.grad(y, x))

    assert same(unused_input) == "error"
    assert same(second_call_without_retain_graph) == "error"


def test_post_accumulate_grad_hooks_run_after_each_accumulation():
    def fn(lib):
        x = leaf(lib)
        seen = []
        handle = x.register_post_accumulate_grad_hook(lambda p: seen.append(plain(p.grad).copy()))
        (x * 2).sum().backward()
        (x * x).sum().backward()        # accumulated into the same .grad: the hook sees the sum
        y = leaf(lib)
        (x * y).sum().backward(inputs=[x])
        handle.remove()
        (x * 3).sum().backward()
        return (seen, x.grad, raises(lambda: (x * 2).register_post_accumulate_grad_hook(print)),
                raises(lambda: lib.tensor(X).register_post_accumulate_grad_hook(print)))
    same(fn)


def test_register_hook_sees_and_replaces_gradients():
    def fn(lib):
        x = leaf(lib)
        seen = []
        x.register_hook(lambda g: seen.append(g.numpy().copy() if hasattr(g, "numpy") else g))
        h = x * 3
        handle = h.register_hook(lambda g: g * 2)
        (h * h).sum().backward(retain_graph=True)
        first = x.grad.numpy().copy() if lib is tg else x.grad.detach().numpy().copy()
        handle.remove()
        x.grad = None
        (h * h).sum().backward()
        return first, x.grad, seen[0]
    same(fn)
