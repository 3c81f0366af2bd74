"""grad_fn as torch shows it (autograd_graph.py): name(), next_functions with AccumulateGrad
nodes for leaves and (None, 0) for inputs that need no gradient, a multi-output Function's
output index; against torch 2.13 where torch is installed."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor


def _graphs(lib):
    x = lib.tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True)
    w = lib.tensor(np.linspace(0.5, 1.5, 12).reshape(3, 4), requires_grad=True)
    c = lib.tensor(np.ones(4))
    leaves = [x, w]
    return leaves, {
        "matmul times a constant": (x @ w) * c,
        "a leaf used twice": (x * x).exp(),
        "constant on the left": c * (x @ w),
    }


def _walk(node, leaves):
    if node is None:
        return None
    if hasattr(node, "variable"):
        return ("leaf", [i for i, t in enumerate(leaves) if t is node.variable])
    return ("op", [(i, _walk(n, leaves)) for n, i in node.next_functions])


def test_next_functions_as_torch_structure():
    leaves, graphs = _graphs(tg)
    mul = graphs["matmul times a constant"].grad_fn
    assert mul.name() == "MulBackward"
    (matmul, index), (none, none_index) = mul.next_functions
    assert (index, none, none_index) == (0, None, 0)
    assert matmul.name() == "MatMulBackward"
    (acc_x, _), (acc_w, _) = matmul.next_functions
    assert acc_x.variable is leaves[0] and acc_w.variable is leaves[1]
    assert acc_x.name() == "torch::autograd::AccumulateGrad" and acc_x.next_functions == ()
    first, second = graphs["a leaf used twice"].grad_fn.next_functions[0][0].next_functions
    assert first[0] is second[0] is acc_x  # one AccumulateGrad per leaf, as torch


def test_next_functions_after_backward():
    # before: no next_functions or name() at all
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x * 3).sum()
    node = y.grad_fn
    y.backward(retain_graph=True)
    assert node.next_functions[0][0].name() == "MulBackward"
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        node.next_functions


class _Split(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, ga, gb):
        return ga * 2 + gb * 3


def test_a_function_with_two_outputs_names_the_output():
    x = Tensor([1.0, 2.0], requires_grad=True)
    a, b = _Split.apply(x)
    assert a.grad_fn is b.grad_fn and a.grad_fn.name() == "_SplitBackward"
    (node, index), = (b * 1.0).grad_fn.next_functions[:1]
    assert node is b.grad_fn and index == 1
    assert node.next_functions[0][0].variable is x
    # before: the outputs' repr named the engine's per-output node
    assert repr(b).endswith("grad_fn=_SplitBackward)") and str(b.sum()).endswith("<SumBackward>)")


def test_next_functions_against_torch():
    torch = pytest.importorskip("torch")
    ours_leaves, ours = _graphs(tg)
    theirs_leaves, theirs = _graphs(torch)
    for name in ours:
        assert _walk(ours[name].grad_fn, ours_leaves) == \
            _walk(theirs[name].grad_fn, theirs_leaves), name

    class Split(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, ga, gb):
            return ga * 2 + gb * 3
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    a, b = Split.apply(x)
    node, index = (b * 1.0).grad_fn.next_functions[0]
    assert node is b.grad_fn and index == 1 and node.name() == "SplitBackward"
