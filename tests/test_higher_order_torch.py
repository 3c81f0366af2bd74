"""Higher-order gradients against torch 2.13 (each test skips without it): second derivatives
of the elementwise ops, reductions, matmul, softmax, layer_norm, cross_entropy, gelu, embedding
and packed attention; dropout with a fixed mask; a WGAN-GP penalty's gradient;
torch.autograd.functional. The engine-only checks are in test_higher_order.py.
"""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor
from tinygrad_tf.autograd import functional as AF, grad
from tinygrad_tf.nn import attention, functional as F


RNG = np.random.default_rng(7)
X = RNG.uniform(0.3, 1.7, (3, 4)) * np.where(RNG.uniform(size=(3, 4)) > 0.5, 1, -1)
POS = RNG.uniform(0.3, 2.0, (3, 4))
W = RNG.standard_normal((4, 5))
V = RNG.standard_normal((3, 4))


def _ours_hvp(fn, values, v):
    xs = [Tensor(a).requires_grad_() for a in values]
    out = fn(*xs)
    firsts = grad(out, xs, grad_outputs=Tensor(np.cos(np.arange(out.array.size)).reshape(
        out.shape)), create_graph=True)
    seconds = grad(sum((g * Tensor(v[: g.array.size].reshape(g.shape))).sum() for g in firsts),
                   xs, allow_unused=True)
    return [f.array for f in firsts], [None if s is None else s.array for s in seconds]


def _torch_hvp(torch, fn, values, v):
    xs = [torch.tensor(a, requires_grad=True) for a in values]
    out = fn(*xs)
    seed = torch.tensor(np.cos(np.arange(out.numel())).reshape(tuple(out.shape)))
    firsts = torch.autograd.grad(out, xs, seed, create_graph=True)
    total = sum((g * torch.tensor(v[: g.numel()].reshape(tuple(g.shape)))).sum() for g in firsts)
    seconds = torch.autograd.grad(total, xs, allow_unused=True)
    return [f.detach().numpy() for f in firsts], [None if s is None else s.numpy()
                                                  for s in seconds]


def _same(ours, theirs):
    for a, b in zip(ours, theirs):
        if b is None:
            assert a is None or np.allclose(a, 0)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


TORCH_CASES = {
    # name: (fn(lib, F, *xs), inputs)
    "exp": (lambda L, F, x: x.exp(), [X]),
    "log": (lambda L, F, x: x.log(), [POS]),
    "sqrt": (lambda L, F, x: x.sqrt(), [POS]),
    "tanh": (lambda L, F, x: x.tanh(), [X]),
    "sigmoid": (lambda L, F, x: x.sigmoid(), [X]),
    "sin_cos": (lambda L, F, x: x.sin() * x.cos(), [X]),
    "pow": (lambda L, F, x: x ** 3 + x.abs() ** 2.5, [X]),
    "div_mul": (lambda L, F, x, y: x / y * x, [X, POS]),
    "maximum_minimum": (lambda L, F, x, y: x.maximum(y) * x.minimum(y), [X, POS]),
    "log1p_expm1": (lambda L, F, x: x.log1p() * x.expm1(), [POS]),
    "relu_abs": (lambda L, F, x: x.relu() * x + x.abs() * x, [X]),
    "erf": (lambda L, F, x: x.erf() * x, [X]),
    "gelu": (lambda L, F, x: F.gelu(x) * x + F.gelu(x, approximate="tanh"), [X]),
    "silu_softplus": (lambda L, F, x: F.silu(x) * F.softplus(x, beta=2.0), [X]),
    "sum_mean": (lambda L, F, x: (x.sum(1) * x.mean(0).sum()).exp(), [X]),
    "var_std": (lambda L, F, x: x.var(1) * x.std(0).sum(), [X]),
    "logsumexp_prod": (lambda L, F, x: x.logsumexp(1) + x.prod(1), [X]),
    "amax_norm": (lambda L, F, x: x.amax(1) * x.norm(dim=1), [X]),
    "matmul": (lambda L, F, x, w: (x @ w).tanh() @ w.T, [X, W]),
    "softmax": (lambda L, F, x: x.softmax(-1) * x, [X]),
    "log_softmax": (lambda L, F, x: x.log_softmax(0) * x.log_softmax(-1), [X]),
    "layer_norm": (lambda L, F, x, w, b: F.layer_norm(x, (4,), w, b) ** 2,
                   [X, RNG.standard_normal(4), RNG.standard_normal(4)]),
    "cross_entropy": (lambda L, F, x: F.cross_entropy(
        x, L.tensor(np.array([0, 3, 2])), label_smoothing=0.2, ignore_index=3), [X]),
    "cross_entropy_weighted": (lambda L, F, x: F.cross_entropy(
        x, L.tensor(np.array([0, 3, 1])), weight=L.tensor(np.array([0.5, 2.0, 1.0, 1.5])),
        label_smoothing=0.1, ignore_index=0), [X]),
    "embedding": (lambda L, F, w: F.embedding(L.tensor(np.array([[0, 2], [2, 1]])), w) ** 3,
                  [X]),
}


@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_second_derivatives_match_torch(name):
    torch = pytest.importorskip("torch")
    fn, values = TORCH_CASES[name]
    v = RNG.standard_normal(64)
    ours = _ours_hvp(lambda *xs: fn(tg, F, *xs), values, v)
    theirs = _torch_hvp(torch, lambda *xs: fn(torch, torch.nn.functional, *xs), values, v)
    _same(ours[0], theirs[0])
    _same(ours[1], theirs[1])


@pytest.mark.parametrize("cross", [False, True])
def test_packed_attention_second_derivatives_match_torch(cross):
    """PackedAttentionGrad's hand-derived backward against torch's sdpa (math backend)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    allowed = np.array([[True, False, True], [True, True, False], [False, True, True]])
    values = ([rng.uniform(-1.5, 1.5, (2, 3, 2, 2)), rng.uniform(-1.5, 1.5, (2, 3, 2, 2, 2))]
              if cross else [rng.uniform(-1.5, 1.5, (2, 3, 3, 2, 2))])

    def theirs(*xs):
        q, k, v = (xs[0], xs[1][:, :, 0], xs[1][:, :, 1]) if cross else xs[0].unbind(2)
        out = torch.nn.functional.scaled_dot_product_attention(
            *(t.transpose(1, 2) for t in (q, k, v)), attn_mask=torch.tensor(allowed))
        return out.transpose(1, 2)

    v = rng.standard_normal(128)
    ours = _ours_hvp(lambda *xs: attention.packed_attention(*xs, mask=Tensor(allowed)), values, v)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.MATH):
        expected = _torch_hvp(torch, theirs, values, v)
    _same(ours[0], expected[0])
    _same(ours[1], expected[1])


def test_grad_create_graph_hessian_vector_product_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w_values, v_values, x_values = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), \
        rng.standard_normal((5, 3))

    def loss(lib, w, x):
        h = (x @ w).tanh()
        return (h.softmax(-1) * h).sum() + (w * w).sum() * 0.1

    w = Tensor(w_values).requires_grad_()
    (g,) = grad(loss(tg, w, Tensor(x_values)), w, create_graph=True)
    (hv,) = grad((g * Tensor(v_values)).sum(), w)
    tw = torch.tensor(w_values, requires_grad=True)
    (tg_,) = torch.autograd.grad(loss(torch, tw, torch.tensor(x_values)), tw, create_graph=True)
    (thv,) = torch.autograd.grad((tg_ * torch.tensor(v_values)).sum(), tw)
    np.testing.assert_allclose(g.array, tg_.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(hv.array, thv.numpy(), rtol=1e-10)


def test_dropout_second_derivative_with_a_fixed_mask_matches_torch():
    torch = pytest.importorskip("torch")
    tg.manual_seed(3)
    x = Tensor(X).requires_grad_()
    dropped = F.dropout(x, 0.4)
    mask = dropped.array != 0
    out = (dropped * x).sin().sum()
    (g,) = grad(out, x, create_graph=True)
    (h,) = grad((g * Tensor(V)).sum(), x)
    tx = torch.tensor(X, requires_grad=True)
    tout = ((tx * torch.tensor(mask) / 0.6) * tx).sin().sum()
    (tg_,) = torch.autograd.grad(tout, tx, create_graph=True)
    (th,) = torch.autograd.grad((tg_ * torch.tensor(V)).sum(), tx)
    np.testing.assert_allclose(g.array, tg_.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(h.array, th.numpy(), rtol=1e-10)


def test_wgan_gp_penalty_gradient_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    alpha = rng.uniform(size=(6, 1))
    ours = tg.nn.Sequential(tg.nn.Linear(3, 8), tg.nn.Tanh(), tg.nn.Linear(8, 1)).double()
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                                 torch.nn.Linear(8, 1)).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})

    def penalty(lib, model, grad_fn):
        mixed = lib.tensor(alpha * real + (1 - alpha) * fake, requires_grad=True)
        (g,) = grad_fn(model(mixed).sum(), mixed, create_graph=True)
        return ((g.norm(2, dim=1) - 1) ** 2).mean()

    penalty(tg, ours, lambda o, i, create_graph: grad(o, i, create_graph=create_graph)).backward()
    penalty(torch, theirs, torch.autograd.grad).backward()
    named = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        if named[name].grad is None:  # the last bias does not move the input gradient
            assert p.grad is None, name
            continue
        np.testing.assert_allclose(p.grad.array, named[name].grad.numpy(), rtol=1e-9, atol=1e-12)


def _pair(x, y):
    return (x * y).sin().sum() + (x ** 2).sum() * y.sum()


@pytest.mark.parametrize("create_graph", [False, True])
def test_autograd_functional_matches_torch(create_graph):
    torch = pytest.importorskip("torch")
    TAF = torch.autograd.functional
    x, y, u = RNG.standard_normal(3), RNG.standard_normal(3), RNG.standard_normal(3)
    ours_in = (Tensor(x).requires_grad_(), Tensor(y).requires_grad_())
    theirs_in = (torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True))
    vec = lambda lib: (lib.tensor(u), lib.tensor(u[::-1].copy()))  # noqa: E731
    vector_fn = lambda a, b: (a * b).tanh() * a.sum()  # noqa: E731

    def compare(a, b):
        if isinstance(b, (tuple, list)):
            assert isinstance(a, tuple) and len(a) == len(b)
            for p, q in zip(a, b):
                compare(p, q)
        else:
            np.testing.assert_allclose(a.array, b.detach().numpy(), rtol=1e-10, atol=1e-12)
            assert a.shape == tuple(b.shape)

    for name in ("vhp", "hvp"):
        compare(getattr(AF, name)(_pair, ours_in, vec(tg), create_graph=create_graph),
                getattr(TAF, name)(_pair, theirs_in, vec(torch), create_graph=create_graph))
    compare(AF.vjp(vector_fn, ours_in, tg.tensor(u), create_graph=create_graph),
            TAF.vjp(vector_fn, theirs_in, torch.tensor(u), create_graph=create_graph))
    compare(AF.jvp(vector_fn, ours_in, vec(tg), create_graph=create_graph),
            TAF.jvp(vector_fn, theirs_in, vec(torch), create_graph=create_graph))
    compare(AF.jacobian(vector_fn, ours_in, create_graph=create_graph, vectorize=True),
            TAF.jacobian(vector_fn, theirs_in, create_graph=create_graph))
    compare(AF.hessian(_pair, ours_in, create_graph=create_graph),
            TAF.hessian(_pair, theirs_in, create_graph=create_graph))
    single = lambda a: (a ** 3).sum()  # noqa: E731 (a single input: results are not tuples)
    compare(AF.hessian(single, ours_in[0]), TAF.hessian(single, theirs_in[0]))
    compare(AF.jacobian(lambda a: a.exp(), ours_in[0]),
            TAF.jacobian(lambda a: a.exp(), theirs_in[0]))
    compare(AF.hvp(single, ours_in[0], tg.tensor(u)), TAF.hvp(single, theirs_in[0],
                                                               torch.tensor(u)))


def test_autograd_functional_strict_and_errors():
    x = Tensor(np.ones(3)).requires_grad_()
    with pytest.raises(RuntimeError, match="independent of input 1"):
        AF.vjp(lambda a, b: a * 2, (x, Tensor(np.ones(3))), tg.tensor(np.ones(3)), strict=True)
    _, (ga, gb) = AF.vjp(lambda a, b: a * 2, (x, Tensor(np.ones(3))), tg.tensor(np.ones(3)))
    np.testing.assert_array_equal(gb.array, 0)
    with pytest.raises(RuntimeError, match="single Tensor with one element"):
        AF.hvp(lambda a: a * 2, x, tg.tensor(np.ones(3)))
    with pytest.raises(NotImplementedError, match="forward-mode"):
        AF.jacobian(lambda a: a, x, strategy="forward-mode")
