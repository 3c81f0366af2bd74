"""The same code through tinygrad_tf and torch: nn.functional, losses, layers and state dicts.

Each test builds float64 inputs once, runs our op and torch's on them, and compares the values
and the gradients of every differentiable input. Skipped without torch.
"""
import numpy as np
import pytest

from tinygrad_tf import Tensor
from tinygrad_tf import nn
from tinygrad_tf.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def run_both(ours, theirs, *arrays, grads=None, upstream_seed=0):
    """ours(*Tensors) vs theirs(*torch tensors) on the same float64 arrays; compares the values
    and, for the inputs flagged in `grads` (default: every float array), the gradients under a
    non-uniform upstream gradient."""
    if grads is None:
        grads = [np.asarray(a).dtype.kind == "f" for a in arrays]
    ours_in = [Tensor(np.array(a), requires_grad=g) for a, g in zip(arrays, grads)]
    theirs_in = [torch.tensor(np.array(a), requires_grad=g) for a, g in zip(arrays, grads)]
    out, expected = ours(*ours_in), theirs(*theirs_in)
    assert out.shape == tuple(expected.shape)
    np.testing.assert_allclose(out.array, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    if not any(grads):
        return
    upstream = np.random.default_rng(upstream_seed).uniform(0.5, 1.5, out.shape)
    out.backward(Tensor(upstream))
    expected.backward(torch.tensor(upstream))
    for ours_t, theirs_t, g in zip(ours_in, theirs_in, grads):
        if g:
            np.testing.assert_allclose(ours_t.grad.array, theirs_t.grad.numpy(), rtol=1e-9,
                                       atol=1e-12)


rng = np.random.default_rng(0)


# ---------------------------------------------------------------------------- cross-entropy

CE_SHAPES = [(5,), (6, 4), (3, 4, 5), (2, 3, 2, 4)]


@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_layout_weight_smoothing(shape, reduction, smoothing, weighted):
    classes = shape[0] if len(shape) == 1 else shape[1]
    logits = rng.standard_normal(shape)
    target_shape = () if len(shape) == 1 else shape[:1] + shape[2:]
    target = rng.integers(0, classes, target_shape)
    if target.ndim:
        target.flat[0] = -100  # one ignored position
    weight = rng.uniform(0.2, 2.0, classes) if weighted else None

    def ours(x):
        return F.cross_entropy(x, target, weight=None if weight is None else Tensor(weight),
                               reduction=reduction, label_smoothing=smoothing)

    def theirs(x):
        return TF.cross_entropy(x, torch.tensor(target),
                                weight=None if weight is None else torch.tensor(weight),
                                reduction=reduction, label_smoothing=smoothing)
    run_both(ours, theirs, logits)


@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("reduction, smoothing, weighted", [("mean", 0.0, False),
                                                            ("sum", 0.2, True),
                                                            ("none", 0.1, False),
                                                            ("mean", 0.3, True)])
def test_cross_entropy_with_class_probabilities(shape, reduction, smoothing, weighted):
    class_dim = 0 if len(shape) == 1 else 1
    raw = rng.uniform(0.1, 1.0, shape)
    probabilities = raw / raw.sum(axis=class_dim, keepdims=True)
    weight = rng.uniform(0.2, 2.0, shape[class_dim]) if weighted else None
    run_both(lambda x, t: F.cross_entropy(x, t, None if weight is None else Tensor(weight),
                                          reduction=reduction, label_smoothing=smoothing),
             lambda x, t: TF.cross_entropy(x, t, None if weight is None else torch.tensor(weight),
                                           reduction=reduction, label_smoothing=smoothing),
             rng.standard_normal(shape), probabilities)


def test_cross_entropy_third_positional_is_weight():
    logits, target, weight = rng.standard_normal((4, 3)), np.array([0, 1, 2, 1]), \
        np.array([1.0, 2.0, 0.5])
    run_both(lambda x: F.cross_entropy(x, target, Tensor(weight)),
             lambda x: TF.cross_entropy(x, torch.tensor(target), torch.tensor(weight)), logits)


def test_cross_entropy_module_matches_torch():
    logits, target = rng.standard_normal((4, 3, 2)), np.array([[0, 1], [2, 1], [1, 1], [0, 2]])
    weight = np.array([1.0, 2.0, 0.5])
    ours = nn.CrossEntropyLoss(Tensor(weight), ignore_index=1, label_smoothing=0.1)
    theirs = torch.nn.CrossEntropyLoss(torch.tensor(weight), ignore_index=1, label_smoothing=0.1)
    run_both(lambda x: ours(x, target), lambda x: theirs(x, torch.tensor(target)), logits)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_ignored_rows_with_inf_logits_give_no_nan(smoothing):
    logits = rng.standard_normal((4, 5))
    # a masked pad class (in every row without smoothing; with it, a counted row holding -inf
    # has an infinite loss, as in torch, so only the ignored rows hold it)
    logits[:, 0] = -np.inf
    if smoothing:
        logits[:2, 0] = 0.0
    logits[3] = -np.inf             # a fully masked, ignored row
    target = np.array([1, 2, -100, -100])
    x = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, target, label_smoothing=smoothing)
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(x.grad.array).all()
    assert (x.grad.array[2:] == 0).all()
    # torch agrees on the loss where it is finite (rows 0-1; it gives nan on the ignored -inf row)
    keep = slice(0, 2)
    expected = TF.cross_entropy(torch.tensor(logits[keep]), torch.tensor(target[keep]),
                                label_smoothing=smoothing)
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-12)


@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss(shape, reduction, weighted):
    classes = shape[0] if len(shape) == 1 else shape[1]
    logp = rng.standard_normal(shape)
    target = rng.integers(0, classes, () if len(shape) == 1 else shape[:1] + shape[2:])
    if target.ndim:
        target.flat[-1] = -100
    weight = rng.uniform(0.2, 2.0, classes) if weighted else None
    run_both(lambda x: F.nll_loss(x, target, None if weight is None else Tensor(weight),
                                  reduction=reduction),
             lambda x: TF.nll_loss(x, torch.tensor(target),
                                   None if weight is None else torch.tensor(weight),
                                   reduction=reduction), logp)


# ---------------------------------------------------------------------------- other losses

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(reduction):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    run_both(lambda a, b: F.mse_loss(a, b, reduction), lambda a, b: TF.mse_loss(a, b, None, None,
                                                                                 reduction), x, y)
    run_both(lambda a, b: F.l1_loss(a, b, reduction),
             lambda a, b: TF.l1_loss(a, b, reduction=reduction), x, y)
    for beta in (0.0, 0.5, 1.0):
        run_both(lambda a, b: F.smooth_l1_loss(a, b, reduction, beta=beta),
                 lambda a, b: TF.smooth_l1_loss(a, b, reduction=reduction, beta=beta), x, y)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")  # torch's, about 'mean'
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    logp = np.log(rng.dirichlet(np.ones(5), 3))
    target = rng.dirichlet(np.ones(5), 3)
    target[0, 1] = 0.0  # 0 * log 0 counts as 0
    if log_target:
        target = np.log(target + 0.1)
    # torch's target gradient at target == 0 is nan (d/dt t log t); ours is finite there, so
    # the target gradient is compared only for log targets
    run_both(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
             lambda a, b: TF.kl_div(a, b, reduction=reduction, log_target=log_target),
             logp, target, grads=[True, log_target])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy(reduction, weighted):
    p, t = rng.uniform(0.05, 0.95, (3, 4)), rng.uniform(0, 1, (3, 4))
    w = rng.uniform(0.5, 2, (4,)) if weighted else None
    run_both(lambda a, b: F.binary_cross_entropy(a, b, None if w is None else Tensor(w),
                                                 reduction),
             lambda a, b: TF.binary_cross_entropy(a, b, None if w is None else torch.tensor(w),
                                                  reduction=reduction), p, t)


def test_binary_cross_entropy_clamps_logs_at_minus_100():
    p, t = np.array([0.0, 1.0, 0.5]), np.array([1.0, 0.0, 1.0])
    run_both(lambda a, b: F.binary_cross_entropy(a, b, reduction="none"),
             lambda a, b: TF.binary_cross_entropy(a, b, reduction="none"), p, t)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy_with_logits(reduction, weighted):
    x, t = rng.standard_normal((3, 4)) * 4, rng.uniform(0, 1, (3, 4))
    x[0, 0], x[0, 1] = -200.0, 200.0  # far out: the stable form stays finite and exact
    w = rng.uniform(0.5, 2, (3, 1)) if weighted else None
    pw = rng.uniform(0.5, 3, (4,)) if weighted else None

    def ours(a, b):
        return F.binary_cross_entropy_with_logits(
            a, b, None if w is None else Tensor(w), reduction,
            pos_weight=None if pw is None else Tensor(pw))

    def theirs(a, b):
        return TF.binary_cross_entropy_with_logits(
            a, b, None if w is None else torch.tensor(w), reduction=reduction,
            pos_weight=None if pw is None else torch.tensor(pw))
    run_both(ours, theirs, x, t)


def test_binary_cross_entropy_with_logits_float32_far_negative():
    x = np.array([-30.0, -20.0, 30.0], np.float32)
    t = np.array([1.0, 1.0, 0.0], np.float32)
    ours = F.binary_cross_entropy_with_logits(Tensor(x), Tensor(t), reduction="none")
    theirs = TF.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(t),
                                                 reduction="none")
    np.testing.assert_allclose(ours.array, theirs.numpy(), rtol=1e-6)


# ---------------------------------------------------------------------------- activations, shapes

def test_activations():
    x = rng.standard_normal((3, 5)) * 5
    x[0, :3] = [-40.0, 25.0, 0.5]
    run_both(F.silu, TF.silu, x)
    run_both(lambda a: F.leaky_relu(a, 0.2), lambda a: TF.leaky_relu(a, 0.2), x)
    for beta, threshold in ((1.0, 20.0), (2.0, 5.0), (0.5, 1.0)):
        run_both(lambda a: F.softplus(a, beta, threshold),
                 lambda a: TF.softplus(a, beta, threshold), x)
    for ours, theirs in ((nn.SiLU(), torch.nn.SiLU()), (nn.LeakyReLU(0.1), torch.nn.LeakyReLU(0.1)),
                         (nn.Softplus(2.0, 3.0), torch.nn.Softplus(2.0, 3.0))):
        run_both(ours, theirs, x)


def test_one_hot():
    ids = np.array([[0, 3], [2, 2]])
    for n in (-1, 5):
        ours, theirs = F.one_hot(Tensor(ids), n), TF.one_hot(torch.tensor(ids), n)
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours.array, theirs.numpy())


@pytest.mark.parametrize("widths", [(1, 2), (0, 1, 2, 0), (1, 1, 0, 2, 1, 0)])
def test_pad(widths):
    x = rng.standard_normal((2, 3, 4))
    run_both(lambda a: F.pad(a, widths, value=1.5), lambda a: TF.pad(a, widths, value=1.5), x)


@pytest.mark.parametrize("p,dim", [(2.0, 1), (1.0, -1), (3.0, 0)])
def test_normalize(p, dim):
    x = rng.standard_normal((3, 4)) + 0.1
    x[1] = 0.0  # a zero row: eps keeps it finite
    run_both(lambda a: F.normalize(a, p, dim), lambda a: TF.normalize(a, p, dim), x)


def test_flatten():
    x = rng.standard_normal((2, 3, 4, 5))
    for args in ((), (0,), (1, 2), (2, -1)):
        run_both(nn.Flatten(*args), torch.nn.Flatten(*args), x)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("eps", [None, 1e-3])
def test_rms_norm(affine, eps):
    x = rng.standard_normal((2, 3, 4))
    ours = nn.RMSNorm((3, 4), eps=eps, elementwise_affine=affine, dtype=np.float64)
    theirs = torch.nn.RMSNorm((3, 4), eps=eps, elementwise_affine=affine, dtype=torch.float64)
    if affine:
        w = rng.uniform(0.5, 1.5, (3, 4))
        ours.weight.array[...] = w
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
    run_both(ours, theirs, x)
    if affine:
        np.testing.assert_allclose(ours.weight.grad.array, theirs.weight.grad.numpy(), rtol=1e-9)


# ---------------------------------------------------------------------------- utils

def test_clip_grad_value():
    grads = [rng.standard_normal((3, 4)) * 3, rng.standard_normal(5)]
    ours = [Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for o, t, g in zip(ours, theirs, grads):
        o.grad, t.grad = Tensor(g.copy()), torch.tensor(g)
    assert nn.utils.clip_grad_value_(ours, 1.5) is None
    torch.nn.utils.clip_grad_value_(theirs, 1.5)
    for o, t in zip(ours, theirs):
        np.testing.assert_array_equal(o.grad.array, t.grad.numpy())


# ---------------------------------------------------------------------------- containers

def test_parameter_list_and_dict_register_like_torch():
    arrays = [rng.standard_normal((2, 3)), rng.standard_normal(4)]

    class Ours(nn.Module):
        def __init__(self):
            super().__init__()
            self.plist = nn.ParameterList([nn.Parameter(a) for a in arrays])
            self.pdict = nn.ParameterDict({"scale": nn.Parameter(arrays[1])})
            self.plist.append(Tensor(arrays[1]))  # a plain tensor is wrapped, as torch

    class Theirs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.plist = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(a))
                                                 for a in arrays])
            self.pdict = torch.nn.ParameterDict({"scale": torch.nn.Parameter(
                torch.tensor(arrays[1]))})
            self.plist.append(torch.tensor(arrays[1]))

    ours, theirs = Ours(), Theirs()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert all(p.requires_grad for p in ours.parameters())
    assert len(ours.plist) == 3 and "scale" in ours.pdict
    ours.load_state_dict(theirs.state_dict())  # torch tensors load directly


# ---------------------------------------------------------------------------- MultiheadAttention

def _mha_pair(embed_dim, heads, bias, batch_first):
    theirs = torch.nn.MultiheadAttention(embed_dim, heads, bias=bias, batch_first=batch_first,
                                         dtype=torch.float64)
    ours = nn.MultiheadAttention(embed_dim, heads, bias=bias, batch_first=batch_first,
                                 dtype=np.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "padding", "both", "per_head"])
def test_multihead_attention_matches_torch(batch_first, need_weights, masks):
    batch, length, source, embed, heads = 2, 3, 4, 8, 2
    ours, theirs = _mha_pair(embed, heads, True, batch_first)
    q_shape = (batch, length, embed) if batch_first else (length, batch, embed)
    kv_shape = (batch, source, embed) if batch_first else (source, batch, embed)
    q, k, v = rng.standard_normal(q_shape), rng.standard_normal(kv_shape), \
        rng.standard_normal(kv_shape)
    attn_mask = padding = None
    if masks in ("bool", "both"):
        attn_mask = np.triu(np.ones((length, source), bool), k=2)  # True = may not attend
    if masks == "float":
        attn_mask = rng.standard_normal((length, source))
    if masks == "per_head":
        attn_mask = rng.standard_normal((batch * heads, length, source))
    if masks in ("padding", "both"):
        padding = np.zeros((batch, source), bool)
        padding[1, -2:] = True

    def wrap(mask, to):
        return None if mask is None else to(mask)

    def ours_fn(q, k, v):
        out, weights = ours(q, k, v, key_padding_mask=wrap(padding, Tensor),
                            attn_mask=wrap(attn_mask, Tensor), need_weights=need_weights)
        return out if weights is None else out.sum() + (weights * weights).sum()

    def theirs_fn(q, k, v):
        out, weights = theirs(q, k, v, key_padding_mask=wrap(padding, torch.tensor),
                              attn_mask=wrap(attn_mask, torch.tensor), need_weights=need_weights)
        return out if weights is None else out.sum() + (weights * weights).sum()
    run_both(ours_fn, theirs_fn, q, k, v)
    ours_out, ours_w = ours(Tensor(q), Tensor(k), Tensor(v), key_padding_mask=wrap(padding, Tensor),
                            attn_mask=wrap(attn_mask, Tensor), average_attn_weights=False)
    theirs_out, theirs_w = theirs(torch.tensor(q), torch.tensor(k), torch.tensor(v),
                                  key_padding_mask=wrap(padding, torch.tensor),
                                  attn_mask=wrap(attn_mask, torch.tensor),
                                  average_attn_weights=False)
    np.testing.assert_allclose(ours_w.array, theirs_w.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours_out.array, theirs_out.detach().numpy(), rtol=1e-10,
                               atol=1e-12)


def test_multihead_attention_parameter_gradients_and_unbatched():
    ours, theirs = _mha_pair(6, 3, True, False)
    x = rng.standard_normal((5, 6))  # unbatched (L, E)
    out, weights = ours(Tensor(x), Tensor(x), Tensor(x))
    t_out, t_weights = theirs(*(torch.tensor(x),) * 3)
    np.testing.assert_allclose(out.array, t_out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights.array, t_weights.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = rng.standard_normal(out.shape)
    out.backward(Tensor(upstream))
    t_out.backward(torch.tensor(upstream))
    ours_grads = {n: p.grad.array for n, p in ours.named_parameters()}
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(ours_grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_multihead_attention_without_bias_and_init_statistics():
    ours, theirs = _mha_pair(4, 2, False, True)
    assert ours.in_proj_bias is None and ours.out_proj.bias is None
    fresh = nn.MultiheadAttention(64, 4)
    bound = np.sqrt(6 / (64 + 3 * 64))  # xavier_uniform on the packed (3E, E) matrix, as torch
    assert np.abs(fresh.in_proj_weight.array).max() <= bound
    assert np.abs(fresh.in_proj_weight.array).max() > 0.9 * bound
    assert (fresh.in_proj_bias.array == 0).all() and (fresh.out_proj.bias.array == 0).all()
