"""Autograd behaviour: accumulation, shared sub-expressions, grad mode, detach, deep graphs,
user-defined Functions, error cases and freeing the graph."""
import gc
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor, gradcheck
from tinygrad_tf.autograd import ArrayFunction


def leaf(*values):
    return Tensor(np.array(values, dtype=np.float64), requires_grad=True)


def test_grad_accumulates_across_backward_calls_until_reset():
    x = leaf(1.0, 2.0)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 3)
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_leaf_grad_owns_its_memory():
    # Add returns one array for both inputs; the two leaves must not share (or alias) it.
    a, b = leaf(1.0, 2.0), leaf(3.0, 4.0)
    (a + b).sum().backward()
    a.grad.array += 1
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 1.0])
    # A broadcast (read-only) gradient is copied too, so a later backward can add into it.
    c = leaf(5.0)
    (c.expand(3) * 1).sum().backward()
    (c.expand(3) * 1).sum().backward()
    np.testing.assert_allclose(c.grad.numpy(), [6.0])


def test_shared_subexpression_gets_both_contributions():
    x = leaf(0.5, -1.5)
    y = x.tanh()
    z = (y * y + y * 3).sum()  # y feeds three uses
    z.backward()
    t = np.tanh(x.numpy())
    np.testing.assert_allclose(x.grad.numpy(), (2 * t + 3) * (1 - t * t))
    assert gradcheck(lambda v: (v * v + v.exp() * v).sum(), leaf(0.3, 0.7))


def test_broadcast_gradient_is_summed_back():
    bias = leaf(1.0, 2.0, 3.0)
    x = Tensor(np.ones((4, 3)))
    (x + bias).sum().backward()
    np.testing.assert_allclose(bias.grad.numpy(), [4.0, 4.0, 4.0])
    assert bias.grad.shape == bias.shape and bias.grad.dtype == bias.dtype


def test_maximum_and_max_ties_follow_torch():
    # Ties are kinks (the test table avoids them); the convention there is torch's.
    a, b = leaf(1.0, 2.0, 5.0), leaf(1.0, 3.0, 4.0)
    a.maximum(b).backward(np.array([2.0, 1.0, 1.0]))
    assert a.grad.tolist() == [1.0, 0.0, 1.0] and b.grad.tolist() == [1.0, 1.0, 0.0]
    x = leaf(3.0, 1.0, 3.0)
    x.max().backward()
    assert x.grad.tolist() == [0.5, 0.0, 0.5]  # a whole max splits it between ties, as torch
    x = leaf(3.0, 1.0, 3.0)
    x.max(0)[0].backward()
    assert x.grad.tolist() == [1.0, 0.0, 0.0]  # max(dim): the first arg-max, as torch


def test_gradient_dtype_follows_the_input():
    x = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    (x.double() * np.array([3.0, 4.0])).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_no_grad_and_enable_grad_as_context_managers():
    x = leaf(1.0)
    with tg.no_grad():
        y = x * 2
        assert not tg.is_grad_enabled()
        with tg.enable_grad():
            z = x * 2
            assert tg.is_grad_enabled()
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    assert z.requires_grad


def test_grad_mode_is_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with tg.no_grad():
            1 / 0
    assert tg.is_grad_enabled()


@pytest.mark.parametrize("parens", [True, False])
def test_no_grad_and_enable_grad_as_decorators(parens):
    no_grad = tg.no_grad() if parens else tg.no_grad
    enable_grad = tg.enable_grad() if parens else tg.enable_grad

    @no_grad
    def infer(x, depth=0):
        inner = infer(x, depth + 1) if depth < 2 else None  # nested / recursive calls
        assert not tg.is_grad_enabled()
        return x * 2, inner, train(x)

    @enable_grad
    def train(x):
        return x * 2

    y, _, z = infer(leaf(1.0))
    assert not y.requires_grad and z.requires_grad
    assert tg.is_grad_enabled()


def test_nothing_is_recorded_under_no_grad():
    x = leaf(1.0, 2.0)
    with tg.no_grad():
        y = (x * 2).exp().sum()
    assert y._ctx is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_detach_cuts_the_graph_and_shares_data():
    x = leaf(1.0, 2.0)
    d = (x * 2).detach()
    assert not d.requires_grad and d._ctx is None
    y = (x * d).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), d.numpy())
    assert np.shares_memory(x.detach().numpy(), x.numpy())


def test_requires_grad_rules():
    # As torch, RuntimeError for an integer tensor (TypeError before)
    with pytest.raises(RuntimeError, match="float"):
        Tensor([1, 2], requires_grad=True)
    x = leaf(1.0)
    assert Tensor([1.0]).requires_grad_().requires_grad
    with pytest.raises(RuntimeError, match="detach"):
        (x * 2).requires_grad_(False)
    assert (x * 2).requires_grad_(True).requires_grad  # no change: allowed, as torch


def test_the_requires_grad_attribute_is_set_as_torch_sets_it():
    # Before, `y.requires_grad = False` on a computed y cut it from the graph silently, an int
    # flag was stored as it came and an integer tensor took True; torch refuses all three
    x = leaf(1.0)
    for flag in (False, True):
        with pytest.raises(RuntimeError, match="leaf"):
            (x * 2).requires_grad = flag
    with pytest.raises(RuntimeError, match="bool"):
        Tensor([1.0]).requires_grad = 1
    with pytest.raises(RuntimeError, match="float"):
        Tensor([1, 2]).requires_grad = True
    with pytest.raises(TypeError, match="bool"):
        Tensor([1.0]).requires_grad_(1)
    frozen = leaf(1.0)
    frozen.requires_grad = False  # a leaf may be frozen and thawed
    assert not (frozen * 2).requires_grad
    frozen.requires_grad = True
    assert (frozen * 2).requires_grad
    assert not (x > 0).requires_grad and not x.long().requires_grad
    assert not x.argmax().requires_grad


def _autograd_backward_story(L):
    def fresh():
        return L.tensor([1.0, 2.0, 3.0], requires_grad=True)
    story = []
    z = fresh()
    L.autograd.backward([(z * 2).sum(), (z * z).sum()])  # several roots, one walk
    story.append(z.grad.tolist())
    z = fresh()
    L.autograd.backward([z * 2, (z ** 2).sum()], [L.tensor([1.0, 0.0, 2.0]), None])
    story.append(z.grad.tolist())
    z, w = fresh(), fresh()
    L.autograd.backward((z * w).sum(), inputs=[w])
    story.append([z.grad is None, w.grad.tolist()])
    backward = L.autograd.backward
    for wrong in (lambda t: backward(t * 2),  # not one element, no grad_tensors
                  lambda t: backward([t * 2], [L.ones(2)]),  # a misshapen grad
                  lambda t: backward([(t * 2).sum(), t.sum()], [L.tensor(1.0)]),  # one short
                  lambda t: backward(t.detach())):  # needs no grad
        with pytest.raises(RuntimeError):
            wrong(fresh())
    return story


def test_autograd_backward_as_torch():
    # before: tg.autograd.backward was the engine's walk, backward(root, grad): a TypeError
    # for torch's autograd.backward(loss), and no checks for grad_tensors
    expected = [[4.0, 6.0, 8.0], [4.0, 4.0, 10.0], [True, [1.0, 2.0, 3.0]]]
    assert _autograd_backward_story(tg) == expected
    torch = pytest.importorskip("torch")
    assert _autograd_backward_story(torch) == expected


def test_retain_grad_keeps_a_non_leaf_gradient():
    x = leaf(1.0, 2.0)
    y = (x * 3).retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * y.numpy())


def test_deep_chain_has_no_recursion_limit():
    x = leaf(0.5)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    assert 10_000 > sys.getrecursionlimit() // 2
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000])


def test_backward_on_non_scalar_needs_a_grad():
    x = leaf(1.0, 2.0)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"shape \(2,\) needs an explicit grad"):
        y.backward()
    with pytest.raises(ValueError, match=r"grad has shape \(3,\)"):
        y.backward(np.ones(3))
    y.backward(np.array([1.0, -1.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, -2.0])


def test_second_backward_needs_retain_graph():
    x = leaf(1.0, 2.0)
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    y.backward()  # allowed: the first kept the graph
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.exp(x.numpy()))
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


class Cube(ArrayFunction):
    """A user-defined op, written the way the built-ins are."""
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x ** 2


class ScaledSub(ArrayFunction):
    """Two inputs, a keyword argument, and `needs_input_grad` to skip unneeded work."""
    @staticmethod
    def forward(ctx, a, b, scale):
        ctx.scale = scale
        return scale * (a - b)

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        return (ctx.scale * grad if need_a else None), (-ctx.scale * grad if need_b else None)


def test_custom_function_is_gradchecked():
    x = leaf(0.5, -1.2, 2.0)
    assert gradcheck(lambda t: Cube.apply(t), x)
    b = Tensor(np.ones((2, 3)), requires_grad=True)  # broadcast: the engine sums the grad back
    assert gradcheck(lambda s, t: ScaledSub.apply(s, t, scale=2.5), x, b)
    y = ScaledSub.apply(x, Tensor(np.ones(3)), scale=2.0)
    assert y._ctx.needs_input_grad == (True, False)


def test_custom_function_errors_are_clear():
    class WrongShape(ArrayFunction):
        @staticmethod
        def forward(ctx, x):
            return x.sum()

        @staticmethod
        def backward(ctx, grad):
            return np.ones(7)

    class TooMany(ArrayFunction):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    class TwoOutputs(ArrayFunction):
        @staticmethod
        def forward(ctx, x):
            return x, x

    x = leaf(1.0, 2.0)
    with pytest.raises(RuntimeError, match=r"WrongShape.backward .* shape \(7,\) .* \(2,\)"):
        WrongShape.apply(x).backward()
    with pytest.raises(RuntimeError, match="TooMany.backward returned 2 gradients for 1 inputs"):
        TooMany.apply(x).sum().backward()
    with pytest.raises(TypeError, match="TwoOutputs.forward must return one numpy array"):
        TwoOutputs.apply(x)
    with pytest.raises(TypeError, match="Cube.apply takes Tensors"):
        Cube.apply(np.ones(2))


@pytest.mark.parametrize("make_error, pattern", [
    (lambda: Tensor.ones(2, 3) @ Tensor.ones(4, 5), r"matmul: shapes \(2, 3\) and \(4, 5\)"),
    (lambda: Tensor.ones(2, 3, 4) @ Tensor.ones(5, 4, 2), r"matmul: batch dims of \(2, 3, 4\)"),
    (lambda: Tensor.ones(()) @ Tensor.ones(3), r"matmul: both operands need at least 1 dim"),
    (lambda: Tensor.ones(2, 3) + Tensor.ones(4), r"add: shapes \(2, 3\) and \(4,\) do not broadcast"),
    (lambda: Tensor.ones(2, 3) * "a", r"mul: unsupported operand of type str"),
    (lambda: Tensor.ones(2, 3).reshape(4, 2), r"reshape: .* shape \(2, 3\) .* as \(4, 2\)"),
    (lambda: Tensor.ones(2, 3).sum(2), r"sum: dim 2 is out of range .* 2 dims"),
    (lambda: Tensor.ones(2, 3).sum((0, -2)), r"sum: dim \(0, -2\) names the same dim twice"),
    (lambda: Tensor.ones(2, 3).permute(0, 0), r"permute: \(0, 0\) is not a permutation"),
    (lambda: Tensor.ones(2, 3).expand(4, 3), r"expand: cannot expand shape \(2, 3\) to \(4, 3\)"),
    (lambda: Tensor.ones(2, 3).expand(-1, 2, 3), r"expand: .* -1 only for existing dims"),
    (lambda: Tensor.ones(2, 3)[5], r"getitem: index 5 does not fit shape \(2, 3\)"),
    (lambda: Tensor.ones(2, 3)[np.array([0.5])], r"getitem: index arrays must be integer or bool"),
    (lambda: Tensor.ones(2, 3).masked_fill(np.ones(2), 0.0), r"masked_fill: the mask must be a bool"),
    (lambda: Tensor.ones(2, 3).masked_fill(np.ones(4, bool), 0.0), r"masked_fill: mask of shape \(4,\)"),
    (lambda: tg.cat([Tensor.ones(2, 3), Tensor.ones(2, 4)], 0), r"cat: shapes \[\(2, 3\), \(2, 4\)\]"),
    (lambda: tg.stack([Tensor.ones(2), Tensor.ones(3)]), r"stack: all tensors need the same shape"),
    (lambda: tg.where(np.ones(2, bool), Tensor.ones(3), 0.0), r"where: condition \(2,\), a \(3,\)"),
    (lambda: Tensor.ones(2, 3).T.T.item(), r"item: only a one-element tensor .* \(2, 3\)"),
    (lambda: Tensor.ones(3) ** Tensor.ones(2), r"pow: shapes \(3,\) and \(2,\) do not broadcast"),
    (lambda: Tensor.ones(3).clip(), r"clip: give at least one of min and max"),
])
def test_errors_name_the_op_and_shapes(make_error, pattern):
    with pytest.raises((ValueError, TypeError, IndexError, RuntimeError), match=pattern):
        make_error()


def test_graph_is_freed_when_the_output_is_dropped():
    x = leaf(1.0, 2.0)
    middle = x * 2
    alive = weakref.ref(middle)
    out = (middle.exp() * 3).sum()
    del middle
    assert alive() is not None  # still held by the graph behind `out`
    del out
    gc.disable()  # freed by reference counting alone: the graph has no cycles
    try:
        assert alive() is None
    finally:
        gc.enable()


def test_backward_releases_saved_arrays():
    x = leaf(1.0, 2.0)
    middle = x * 2
    alive = weakref.ref(middle)
    out = (middle.exp() * 3).sum()
    del middle
    out.backward()  # frees the recorded graph even while `out` lives
    assert alive() is None


def test_backward_frees_each_activation_once_its_consumers_are_done():
    seen = {}

    class Probe(ArrayFunction):  # the first op of the chain: its backward runs last
        @staticmethod
        def forward(ctx, x):
            return x.copy()

        @staticmethod
        def backward(ctx, grad):
            seen["alive"] = [ref() is not None for ref in refs]
            return grad

    x = leaf(1.0, 2.0)
    hidden = Probe.apply(x)
    activations = [hidden * 2]
    for _ in range(3):
        activations.append(activations[-1].tanh() * 0.5)
    refs = [weakref.ref(a) for a in activations]
    out = activations[-1].sum()
    del hidden, activations
    out.backward()
    # By Probe's backward every later activation (and its array) is gone, not kept to the end.
    assert seen["alive"] == [False] * 4


def test_memory_stays_flat_over_a_training_loop():
    w = Tensor(np.random.default_rng(0).standard_normal((64, 64)), requires_grad=True)
    x = Tensor(np.ones((8, 64)))

    def step():
        loss = ((x @ w).tanh().softmax(-1) * 2).mean()
        w.grad = None
        loss.backward()

    tracemalloc.start()
    for _ in range(100):  # warm-up: Python's free lists fill to their caps
        step()
    first, _ = tracemalloc.get_traced_memory()
    for _ in range(100):
        step()
    last, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # A leaked graph (or even one 32 KB array) per step would add megabytes over 100 steps.
    assert last - first < 10 * w.array.nbytes, f"memory grew by {last - first} bytes in 100 steps"


def test_the_custom_op_example_in_the_docs_runs():
    from pathlib import Path
    text = (Path(__file__).parents[1] / "docs" / "autograd.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    example = next(b for b in blocks if "ScaledSoftplus.apply" in b)
    exec(compile(example, "docs/autograd.md", "exec"), {})  # asserts inside


def test_repeated_indices_add_up():
    x = leaf(1.0, 2.0, 3.0)
    x[np.array([0, 0, 2, 0])].sum().backward()
    assert x.grad.tolist() == [3.0, 0.0, 1.0]


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3,), (3,)), ((3,), (2, 3, 4)), ((2, 5, 3), (3,)), ((1, 2, 3), (4, 3, 2)), ((4, 2, 3), (3, 2)),
])
def test_matmul_vector_and_batch_cases(shape_a, shape_b):
    rng = np.random.default_rng(0)
    a = Tensor(rng.standard_normal(shape_a), requires_grad=True)
    b = Tensor(rng.standard_normal(shape_b), requires_grad=True)
    np.testing.assert_allclose((a @ b).numpy(), np.matmul(a.numpy(), b.numpy()))
    assert gradcheck(lambda s, t: s @ t, a, b, atol=1e-7, rtol=1e-6)


def test_post_accumulate_grad_hooks_see_each_new_sum_on_every_path():
    # torch 2.13 gives the same (tests/test_torch_parity.py compares them where it is installed).
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    seen = []
    handle = x.register_post_accumulate_grad_hook(
        lambda p: seen.append((p.grad.numpy().tolist(), p.grad.requires_grad)))
    (x ** 3).sum().backward(create_graph=True)   # the create_graph walk
    (x * 2).sum().backward()                     # the plain walk, out of place onto a graph
    x.grad = None
    (x * x).sum().backward(inputs=[x])           # backward's inputs=
    handle.remove()
    (x * 2).sum().backward()
    assert seen == [([3.0, 12.0], True), ([5.0, 14.0], True), ([2.0, 4.0], False)]
    with pytest.raises(RuntimeError, match="leaf"):
        (x * 2).register_post_accumulate_grad_hook(print)
