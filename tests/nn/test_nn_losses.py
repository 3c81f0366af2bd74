"""nn.functional's losses (nn/losses.py): values against float64 numpy references, gradcheck
on Hypothesis shapes, the errors they raise."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_tf import Tensor
from tinygrad_tf import testing as tt
from tinygrad_tf.nn import functional as F

from functional_checks import check, reduced, ref_log_softmax  # tests/nn/functional_checks.py


# ---------------------------------------------------------------------------- cross entropy

def ref_cross_entropy(logits, target, ignore_index, smoothing, reduction, weight=None):
    """torch's formula in float64, classes at dim 1 (dim 0 for 1-D logits)."""
    classes = logits.shape[0] if logits.ndim == 1 else logits.shape[1]
    moved = logits if logits.ndim == 1 else np.moveaxis(logits, 1, -1)
    logp = ref_log_softmax(moved).reshape(-1, classes)
    w = np.ones(classes) if weight is None else weight
    flat = target.reshape(-1)
    keep = flat != ignore_index
    safe = np.where(keep, flat, 0)
    picked = logp[np.arange(len(flat)), safe]
    loss = (-(1 - smoothing) * w[safe] * picked - smoothing / classes * (logp @ w)) * keep
    if reduction == "none":
        return loss.reshape(target.shape)
    denominator = (w[safe] * keep).sum()
    return loss.sum() / (denominator or 1) if reduction == "mean" else loss.sum()


@st.composite
def cross_entropy_cases(draw):
    extra = draw(st.sampled_from([None, (), (3,), (2, 3)]))  # None -> (C,); else (N, C, *extra)
    classes = draw(st.integers(1, 5))
    if extra is None:
        shape = (classes,)
    else:
        shape = (draw(st.integers(1, 4)), classes) + extra
    logits = draw(tt.tensors(shape=shape))
    target_shape = shape[:0] if extra is None else shape[:1] + shape[2:]
    target = draw(tt.index_arrays(classes, shape=st.just(target_shape))) % classes
    ignore_index = draw(st.sampled_from([-100, 0]))
    ignored = draw(tt.index_arrays(2, shape=st.just(target_shape))) == 1
    target = np.where(ignored, ignore_index, target)
    smoothing = draw(st.sampled_from([0.0, 0.1, 0.5]))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    weight = draw(st.sampled_from([None, np.linspace(0.5, 2.0, classes)]))
    return logits, target, ignore_index, smoothing, reduction, weight


@given(cross_entropy_cases())
def test_cross_entropy(case):
    logits, target, ignore_index, smoothing, reduction, weight = case

    def fn(x):
        return F.cross_entropy(x, target, None if weight is None else Tensor(weight),
                               ignore_index=ignore_index, label_smoothing=smoothing,
                               reduction=reduction)
    check(fn, lambda x: ref_cross_entropy(x, target, ignore_index, smoothing, reduction, weight),
          logits)


@given(cross_entropy_cases())
def test_nll_loss(case):
    logits, target, ignore_index, _, reduction, weight = case

    def fn(x):
        return F.nll_loss(x, target, None if weight is None else Tensor(weight),
                          ignore_index=ignore_index, reduction=reduction)
    # nll of log-probabilities is cross-entropy of the logits without smoothing; here the input
    # is any float array, so compare with the pick directly
    def reference(x):
        classes = x.shape[0] if x.ndim == 1 else x.shape[1]
        rows = (x if x.ndim == 1 else np.moveaxis(x, 1, -1)).reshape(-1, classes)
        w = np.ones(classes) if weight is None else weight
        flat = target.reshape(-1)
        keep = flat != ignore_index
        safe = np.where(keep, flat, 0)
        loss = -w[safe] * rows[np.arange(len(flat)), safe] * keep
        if reduction == "none":
            return loss.reshape(target.shape)
        denominator = (w[safe] * keep).sum()
        return loss.sum() / (denominator or 1) if reduction == "mean" else loss.sum()
    check(fn, reference, logits)


def test_cross_entropy_all_ignored_is_zero_not_nan():
    logits = Tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    loss = F.cross_entropy(logits, np.full(3, -100))
    assert loss.item() == 0.0
    loss.backward()
    np.testing.assert_array_equal(logits.grad.array, 0)


def test_cross_entropy_errors():
    logits = Tensor(np.zeros((2, 4, 3)))  # (N, C, d1), classes at dim 1 as torch
    with pytest.raises(IndexError, match=r"cross_entropy: target 4 is outside the valid range "
                                         r"\[0, 4\) \(or ignore_index=-100\)"):
        F.cross_entropy(logits, np.array([[0, 1, 4], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"cross_entropy: input of shape \(2, 4, 3\) \(classes "
                                         r"at dim 1, as torch\) needs a target of shape "
                                         r"\(2, 3\)"):
        F.cross_entropy(logits, np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="cross_entropy: reduction must be"):
        F.cross_entropy(logits, np.zeros((2, 3), dtype=np.int64), reduction="avg")
    with pytest.raises(ValueError, match=r"cross_entropy: weight of shape \(3,\) should have "
                                         r"shape \(4,\)"):
        F.cross_entropy(logits, np.zeros((2, 3), dtype=np.int64), Tensor(np.ones(3)))
    with pytest.raises(ValueError, match=r"cross_entropy: a target of class probabilities must "
                                         r"have the input's shape \(2, 4, 3\), got \(2, 3\)"):
        F.cross_entropy(logits, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="ignore_index=0 needs class-index targets"):
        F.cross_entropy(logits, np.zeros((2, 4, 3)), ignore_index=0)
    with pytest.raises(TypeError, match="cross_entropy: target must be an integer tensor"):
        F.cross_entropy(logits, np.zeros((2, 3), dtype=bool))


@given(cross_entropy_cases(), st.data())
def test_cross_entropy_with_class_probabilities(case, data):
    # Soft targets (torch >= 1.10): the target has the input's shape; gradcheck in both.
    logits, _, _, smoothing, reduction, weight = case
    raw = data.draw(tt.tensors(shape=logits.shape, min_value=0.1, max_value=2.0))
    classes = logits.shape[0] if logits.ndim == 1 else logits.shape[1]
    probabilities = Tensor(raw.array / raw.array.sum(axis=0 if logits.ndim == 1 else 1,
                                                     keepdims=True), requires_grad=True)

    def fn(x, t):
        return F.cross_entropy(x, t, None if weight is None else Tensor(weight),
                               label_smoothing=smoothing, reduction=reduction)

    def reference(x, t):
        class_dim = 0 if x.ndim == 1 else 1
        t = t * (1 - smoothing) + smoothing / classes
        logp = np.moveaxis(ref_log_softmax(np.moveaxis(x, class_dim, -1)), -1, class_dim)
        w = np.ones(classes) if weight is None else weight
        return reduced(-(np.moveaxis(logp * t, class_dim, -1) @ w), reduction)
    check(fn, reference, logits, probabilities)


def test_cross_entropy_third_positional_argument_is_weight():
    # the trap: with ignore_index third, F.cross_entropy(x, t, w) silently ignored class w
    logits = Tensor(np.random.default_rng(1).standard_normal((4, 3)))
    target = np.array([0, 1, 2, 1])
    weight = np.array([1.0, 3.0, 0.5])
    weighted = F.cross_entropy(logits, target, Tensor(weight), reduction="none")
    plain = F.cross_entropy(logits, target, reduction="none")
    np.testing.assert_allclose(weighted.array, plain.array * weight[target], rtol=1e-12)


# ---------------------------------------------------------------------------- elementwise losses

@given(tt.tensor_pairs(max_dims=3), st.sampled_from(["mean", "sum", "none"]))
def test_mse_loss(pair, reduction):
    a, b = pair
    b = Tensor(np.broadcast_to(b.array, np.broadcast_shapes(a.shape, b.shape)).copy(),
               requires_grad=True)
    a = Tensor(np.broadcast_to(a.array, b.shape).copy(), requires_grad=True)

    check(lambda x, y: F.mse_loss(x, y, reduction=reduction),
          lambda x, y: reduced((x - y) ** 2, reduction), a, b)


@given(tt.tensor_pairs(max_dims=2, apart=True), st.sampled_from(["mean", "sum", "none"]),
       st.sampled_from([0.0, 0.5, 1.0]))
def test_l1_and_smooth_l1_loss(pair, reduction, beta):
    a, b = pair
    shape = np.broadcast_shapes(a.shape, b.shape)
    a = Tensor(np.broadcast_to(a.array, shape).copy(), requires_grad=True)
    b = Tensor(np.broadcast_to(b.array, shape).copy() + 0.3, requires_grad=True)  # |d| != beta

    check(lambda x, y: F.l1_loss(x, y, reduction), lambda x, y: reduced(np.abs(x - y), reduction),
          a, b)

    def smooth(x, y):
        d = np.abs(x - y)
        return reduced(np.where(d < beta, 0.5 * d * d / max(beta, 1e-300), d - 0.5 * beta),
                       reduction)
    check(lambda x, y: F.smooth_l1_loss(x, y, reduction, beta), smooth, a, b)


@given(tt.tensors(shape=tt.shapes(min_dims=1, max_dims=2, max_side=4)), st.data(),
       st.sampled_from(["mean", "sum", "none", "batchmean"]), st.booleans())
def test_kl_div(logp, data, reduction, log_target):
    target = data.draw(tt.tensors(shape=logp.shape, min_value=0.05, max_value=1.0))

    def reference(x, t):
        loss = np.exp(t) * (t - x) if log_target else t * (np.log(t) - x)
        return {"none": loss, "sum": loss.sum(), "mean": loss.mean(),
                "batchmean": loss.sum() / x.shape[0]}[reduction]
    check(lambda x, t: F.kl_div(x, t, reduction, log_target), reference, logp, target)


@given(st.data(), tt.shapes(min_dims=1, max_dims=2, max_side=4),
       st.sampled_from(["mean", "sum", "none"]), st.booleans())
def test_binary_cross_entropy(data, shape, reduction, weighted):
    p = data.draw(tt.tensors(shape=shape, min_value=0.05, max_value=0.95))
    t = data.draw(tt.tensors(shape=shape, min_value=0.0, max_value=1.0))
    w = np.linspace(0.5, 2.0, shape[-1]) if weighted else None

    def reference(x, y):
        loss = -(y * np.log(x) + (1 - y) * np.log(1 - x))
        return reduced(loss if w is None else loss * w, reduction)
    check(lambda x, y: F.binary_cross_entropy(x, y, None if w is None else Tensor(w),
                                              reduction), reference, p, t)
    z = data.draw(tt.tensors(shape=shape, min_value=-30, max_value=30))
    pw = np.linspace(0.5, 3.0, shape[-1]) if weighted else None

    def reference_logits(x, y):
        log_sig, log_one_minus = -np.logaddexp(0, -x), -np.logaddexp(0, x)
        loss = -((1 if pw is None else pw) * y * log_sig + (1 - y) * log_one_minus)
        return reduced(loss if w is None else loss * w, reduction)
    check(lambda x, y: F.binary_cross_entropy_with_logits(
        x, y, None if w is None else Tensor(w), reduction,
        pos_weight=None if pw is None else Tensor(pw)), reference_logits, z, t)
