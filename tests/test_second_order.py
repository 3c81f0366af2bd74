"""Second derivatives against torch 2.13 (issue 19): elementwise ops, reductions, matmul,
softmax, layer_norm, cross_entropy, gelu, dropout with a fixed mask, embedding; a WGAN-GP
penalty's gradient; torch.autograd.functional's results; gradgradcheck's report on a wrong
second derivative; the tiny Transformer's Hessian-vector product against finite differences;
Newton's method on a logistic regression."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinygrad_tf as tg
from tinygrad_tf import Tensor, testing as tt
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf.autograd import functional as AF, grad
from tinygrad_tf.nn import functional as F

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


CASES = {
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


@pytest.mark.parametrize("name", sorted(CASES))
def test_second_derivatives_match_torch(name):
    torch = pytest.importorskip("torch")
    fn, values = CASES[name]
    v = RNG.standard_normal(64)
    ours = _ours_hvp(lambda *xs: fn(tg, F, *xs), values, v)
    theirs = _torch_hvp(torch, lambda *xs: fn(torch, torch.nn.functional, *xs), values, v)
    _same(ours[0], theirs[0])
    _same(ours[1], theirs[1])


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


class SinWrongTwin(ArrayFunction):
    """sin with a right first derivative and a deliberately wrong second one."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * np.cos(x)

    @staticmethod
    def composed(ctx, x):
        return x.sin() + 0.01 * x ** 3  # wrong: its derivative is not cos(x)


def test_gradgradcheck_names_the_worst_element_of_a_wrong_second_derivative():
    x = Tensor(np.array([0.2, -0.4, 1.3])).requires_grad_()
    assert tg.gradcheck(SinWrongTwin.apply, x)
    with pytest.raises(tg.GradcheckError, match=r"gradgradcheck.*input 0.*element \(2,\)"):
        tg.gradgradcheck(SinWrongTwin.apply, x)
    assert tg.gradgradcheck(SinWrongTwin.apply, x, raise_exception=False) is False
    assert tg.gradgradcheck(lambda t: t.sin(), x)


@settings(max_examples=4)
@given(x=tt.tensors(shape=tt.shapes(1, 2, max_side=3)), data=st.data())
def test_grad_outputs_strategy_drives_gradgradcheck(x, data):
    op = lambda t: (t * t).tanh() * t.softmax(-1)  # noqa: E731
    v = data.draw(tt.grad_outputs(op(x)))
    assert len(v) == 1 and v[0].shape == x.shape and not v[0].requires_grad
    assert tg.gradgradcheck(op, x, grad_outputs=v, atol=1e-6, rtol=1e-5)


def test_logistic_regression_newton_converges_in_8_iterations():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((200, 3))
    labels = (features @ np.array([1.5, -2.0, 0.5]) + rng.standard_normal(200) > 0) * 1.0
    x, y = Tensor(features), Tensor(labels)

    def loss(w):
        return F.binary_cross_entropy_with_logits(x @ w, y) + 1e-3 * (w * w).sum()

    w = np.zeros(3)
    for iteration in range(1, 9):
        leaf = Tensor(w).requires_grad_()
        (g,) = grad(loss(leaf), leaf)
        h = AF.hessian(loss, Tensor(w)).array
        w = w - np.linalg.solve(h, g.array)
        if np.abs(g.array).max() < 1e-10:
            break
    print(f"Newton: {iteration} iterations")
    leaf = Tensor(w).requires_grad_()
    (g,) = grad(loss(leaf), leaf)
    assert np.abs(g.array).max() < 1e-8, (iteration, g.array)
    # plain gradient descent at a good fixed step is far from there after 100 steps
    w_gd = np.zeros(3)
    for _ in range(100):
        leaf = Tensor(w_gd).requires_grad_()
        (g_gd,) = grad(loss(leaf), leaf)
        w_gd = w_gd - 1.0 * g_gd.array
    assert np.abs(g_gd.array).max() > 1e-4


def test_tiny_transformer_hvp_matches_finite_differences():
    from tinygrad_tf.models import Transformer, TransformerConfig
    tg.manual_seed(0)
    config = TransformerConfig(src_vocab_size=11, tgt_vocab_size=11, d_model=8, n_heads=2,
                               n_encoder_layers=1, n_decoder_layers=1, d_ff=12, dropout=0.0,
                               max_len=16, pad_id=0, share_embeddings=False)
    model = Transformer(config).double().eval()
    src, tgt = Tensor(np.array([[3, 4, 5, 2], [6, 7, 2, 0]])), np.array([[1, 5, 4, 3, 2],
                                                                         [1, 7, 6, 2, 0]])
    params = list(model.parameters())
    rng = np.random.default_rng(2)
    v = [rng.standard_normal(p.shape) for p in params]

    def loss():
        logits = model(src, Tensor(tgt[:, :-1]))
        return F.cross_entropy(logits.reshape(-1, 11), Tensor(tgt[:, 1:].reshape(-1)),
                               ignore_index=0, label_smoothing=0.1)

    grads = grad(loss(), params, create_graph=True)
    hv = grad(sum((g * Tensor(d)).sum() for g, d in zip(grads, v)), params, allow_unused=True)
    hv = np.concatenate([np.zeros(p.array.size) if h is None else h.array.ravel()
                         for p, h in zip(params, hv)])

    def plain_gradient(step):
        with tg.no_grad():
            for p, d in zip(params, v):
                p.array += step * d
        gs = grad(loss(), params, allow_unused=True)
        with tg.no_grad():
            for p, d in zip(params, v):
                p.array -= step * d
        return np.concatenate([np.zeros(p.array.size) if g is None else g.array.ravel()
                               for p, g in zip(params, gs)])

    eps = 1e-5
    numeric = (plain_gradient(eps) - plain_gradient(-eps)) / (2 * eps)
    assert np.linalg.norm(hv - numeric) <= 1e-6 * np.linalg.norm(numeric)
