"""The flat parameter arena and the fused optimizer kernels: layout and views, backward writing
into the arena, re-packing when parameters change under the optimizer, flat gradients for an
all-reduce, kernels against their numpy twins, optimizers against a per-parameter numpy loop."""
import itertools

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor, kernels, nn, optim
from tinygrad_tf.kernels import optim as optim_kernels
from tinygrad_tf.nn import functional as F
from tinygrad_tf.optim.arena import merged_flat


def small_model(seed=0):
    tg.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))


def batch(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (Tensor(rng.standard_normal((8, 3)).astype(dtype)),
            Tensor(rng.standard_normal((8, 2)).astype(dtype)))


def train(model, optimizer, steps, seed=0, dtype=np.float32):
    for step in range(steps):
        x, y = batch(seed + step, dtype)
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()


# ---------------------------------------------------------------------------- layout and views

def test_parameters_and_grads_are_views_of_one_buffer_per_dtype():
    model = small_model()
    extra = nn.Parameter(np.ones((2, 2)))  # float64: a second dtype, a second buffer
    optimizer = optim.Adam([{"params": list(model.parameters())},
                            {"params": [extra], "lr": 0.1}])
    arena = optimizer.arena
    flat32, flat64 = arena.buffers["data"][np.dtype(np.float32)], \
        arena.buffers["data"][np.dtype(np.float64)]
    assert flat32.size == model.num_parameters() and flat64.size == 4
    rows = optimizer.layout()
    assert [r[:3] for r in rows] == [(0, i, "float32") for i in range(4)] + [(1, 0, "float64")]
    assert [r[3:5] for r in rows[:4]] == [(0, 15), (15, 20), (20, 30), (30, 32)]
    for p in model.parameters():
        assert np.shares_memory(p.array, flat32)
    assert np.shares_memory(extra.array, flat64)
    x, y = batch()
    F.mse_loss(model(x), y).backward()  # first gradients go straight into the arena
    grads = optimizer.flat_grads(zero_fill=False)
    assert list(grads) == ["float32", "float64"]
    for p in model.parameters():
        assert np.shares_memory(p.grad.array, grads["float32"])
    assert extra.grad is None  # zero_fill=False leaves a missing gradient missing
    first = [p.grad.array.copy() for p in model.parameters()]
    F.mse_loss(model(x), y).backward()  # accumulates in place
    for p, g in zip(model.parameters(), first):
        np.testing.assert_allclose(p.grad.array, 2 * g, rtol=1e-6)
        assert np.shares_memory(p.grad.array, grads["float32"])


def test_packing_keeps_values_and_accepts_non_contiguous_parameters():
    rng = np.random.default_rng(0)
    value = rng.standard_normal((4, 3)).T  # a transposed view: its memory is not the arena's
    expected = value - 0.5
    p = nn.Parameter(value)
    optimizer = optim.SGD([p], lr=0.5)
    np.testing.assert_array_equal(p.array, value)
    p.grad = Tensor(np.ones((3, 4)))
    optimizer.step()
    np.testing.assert_allclose(p.array, expected)
    np.testing.assert_allclose(value, expected)  # updated in its own memory, as torch


def test_flat_grads_zero_fills_and_names_missing_model_parameters():
    model = small_model()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    grads = optimizer.flat_grads()  # nobody has a gradient yet: all zeros, all views
    assert not grads["float32"].any()
    for p in model.parameters():
        assert np.shares_memory(p.grad.array, grads["float32"])
    grads["float32"][:] = 1.0  # what an all-reduce writes lands in every .grad
    before = [p.array.copy() for p in model.parameters()]
    optimizer.step()
    for p, b in zip(model.parameters(), before):
        np.testing.assert_allclose(p.array, b - 0.1, rtol=1e-6)
    model.append(nn.Linear(2, 2))  # a parameter added after the optimizer was built
    with pytest.raises(ValueError, match=r"parameters 3\.weight, 3\.bias are not in this "
                                         r"optimizer.*add_param_group"):
        optimizer.flat_grads(model=model)
    optimizer.add_param_group({"params": list(model[3].parameters())})
    assert optimizer.flat_grads(model=model)["float32"].size == model.num_parameters()


def test_zero_grad_fills_the_arena_or_forgets():
    model = small_model()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    F.mse_loss(model(x), y).backward()
    optimizer.zero_grad(set_to_none=False)
    for p in model.parameters():
        assert p.grad is not None and not p.grad.array.any()
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_merged_flat_joins_arena_gradients_into_one_view():
    model = small_model()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    optimizer.flat_grads()
    runs = merged_flat([p.grad.array for p in model.parameters()])
    assert len(runs) == 1 and runs[0].size == model.num_parameters()
    loose = [np.ones(3), np.ones((2, 2)).T, np.ones(4)]
    assert len(merged_flat(loose)) == 3  # separate allocations stay separate


# ---------------------------------------------------------------------------- staying in sync

def test_rebinding_data_repacks_and_the_new_values_are_trained():
    model = small_model()
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    train(model, optimizer, 2)
    weight = model[0].weight
    old_arena = optimizer.arena
    weight.array = np.full((5, 3), 0.25, dtype=np.float32)  # a user rebinds .array
    x, y = batch(5)
    optimizer.zero_grad()
    F.mse_loss(model(x), y).backward()
    g = weight.grad.array.astype(np.float64)
    state = optimizer.state[weight]
    m = 0.9 * state["exp_avg"] + 0.1 * g  # Adam's third step, by hand, from the carried state
    v = 0.999 * state["exp_avg_sq"] + 0.001 * g * g
    expected = 0.25 - 0.01 * (m / (1 - 0.9 ** 3)) / (np.sqrt(v / (1 - 0.999 ** 3)) + 1e-8)
    optimizer.step()
    assert optimizer._arena is not old_arena  # re-packed
    assert np.shares_memory(weight.array, optimizer.arena.buffers["data"][np.dtype(np.float32)])
    np.testing.assert_allclose(weight.array, expected, rtol=1e-5)


def test_module_to_after_the_optimizer_matches_a_double_run():
    # Train 3 steps in float32, convert to float64, train 3 more: the optimizer re-packs into
    # float64 buffers and carries its state over (cast), like building it all in float64 would.
    model = small_model()
    optimizer = optim.AdamW(model.parameters(), lr=0.01, amsgrad=True)
    train(model, optimizer, 3)
    model.double()
    train(model, optimizer, 3, seed=3, dtype=np.float64)
    arena = optimizer.arena
    assert list(arena.buffers["data"]) == [np.dtype(np.float64)]
    for state in optimizer.state.values():
        assert state["exp_avg"].dtype == np.float64 and state["step"] == 6
        assert np.shares_memory(state["exp_avg"], arena.buffers["exp_avg"][np.dtype(np.float64)])

    reference = small_model()
    ref_optimizer = optim.AdamW(reference.parameters(), lr=0.01, amsgrad=True)
    train(reference, ref_optimizer, 3)
    reference.double()
    ref_optimizer = rebuild(ref_optimizer, reference)
    train(reference, ref_optimizer, 3, seed=3, dtype=np.float64)
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(p.array, q.array)


def rebuild(optimizer, model):
    # A fresh optimizer on the converted model with the old one's state: the reference path.
    state = optimizer.state_dict()
    kwargs = {k: v for k, v in optimizer.defaults.items() if k != "decoupled_weight_decay"}
    fresh = type(optimizer)(model.parameters(), **kwargs)
    fresh.load_state_dict(state)
    return fresh


def test_changing_a_parameter_shape_under_its_state_raises():
    p = nn.Parameter(np.ones(3))
    optimizer = optim.Adam([p])
    p.grad = Tensor(np.ones(3))
    optimizer.step()
    p.array = np.ones(4)
    p.grad = Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"shape \(3,\) was given \.array of shape \(4,\)"):
        optimizer.step()


def test_bad_gradient_shape_and_torch_only_flags_are_named():
    p = nn.Parameter(np.ones(3))
    optimizer = optim.SGD([p], lr=0.1)
    with pytest.raises(RuntimeError, match=r"gradient of shape \(2,\), float64, to a tensor "
                                           r"of shape \(3,\)"):
        p.grad = Tensor(np.ones(2))  # refused when assigned (tests/test_core_rules.py)
    p.grad = Tensor(np.ones(3))
    p.data = Tensor(np.ones(2))  # the parameter changes shape under its gradient
    with pytest.raises(ValueError, match=r"SGD.step: a gradient of shape \(3,\) for a "
                                         r"parameter of shape \(2,\)"):
        optimizer.step()
    with pytest.raises(ValueError, match="foreach=True is a torch device option"):
        optim.Adam([p], foreach=True)
    with pytest.raises(TypeError, match="floating-point Tensors, got one of dtype int64"):
        optim.SGD([Tensor(np.arange(3))])


@pytest.mark.parametrize("make", [
    lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.9, centered=True),
    lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
    lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True),
    lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9),
])
def test_state_dict_round_trip_through_a_file(make, tmp_path):
    model = small_model()
    optimizer = make(model.parameters())
    train(model, optimizer, 4)
    path = tmp_path / "state.safetensors"
    nn.state.save(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    train(model, optimizer, 3, seed=10)
    resumed = small_model(seed=5)
    resumed_optimizer = make(resumed.parameters())
    saved = nn.state.load(path)
    resumed.load_state_dict(saved["model"])
    resumed_optimizer.load_state_dict(saved["optimizer"])
    train(resumed, resumed_optimizer, 3, seed=10)
    for p, q in zip(model.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(p.array, q.array)


# ---------------------------------------------------------------------------- numpy reference

def numpy_reference(name, kwargs, params, grads_per_step):
    """Apply torch's rule per parameter with plain numpy (no arena, no kernels)."""
    params = [p.copy() for p in params]
    state = [dict() for _ in params]
    lr = kwargs.get("lr")
    for grads in grads_per_step:
        for p, g, s in zip(params, grads, state):
            if name == "SGD":
                g = g + kwargs.get("weight_decay", 0) * p
                momentum = kwargs.get("momentum", 0)
                if momentum:
                    s["buf"] = g.copy() if "buf" not in s else momentum * s["buf"] + g
                    g = g + momentum * s["buf"] if kwargs.get("nesterov") else s["buf"]
                p -= lr * g
            elif name in ("Adam", "AdamW"):
                beta1, beta2 = kwargs.get("betas", (0.9, 0.999))
                s["t"] = t = s.get("t", 0) + 1
                if name == "AdamW":
                    p *= 1 - lr * kwargs.get("weight_decay", 0.01)
                m = s["m"] = beta1 * s.get("m", 0) + (1 - beta1) * g
                v = s["v"] = beta2 * s.get("v", 0) + (1 - beta2) * g * g
                if kwargs.get("amsgrad"):
                    v = s["vmax"] = np.maximum(s.get("vmax", 0), v)
                m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
                p -= lr * m_hat / (np.sqrt(v_hat) + kwargs.get("eps", 1e-8))
            elif name == "RMSprop":
                alpha = kwargs.get("alpha", 0.99)
                sq = s["sq"] = alpha * s.get("sq", 0) + (1 - alpha) * g * g
                p -= lr * g / (np.sqrt(sq) + 1e-8)
            elif name == "Adagrad":
                total = s["sum"] = s.get("sum", 0) + g * g
                p -= lr * g / (np.sqrt(total) + 1e-10)
    return params


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, betas=(0.8, 0.9))),
    ("RMSprop", dict(lr=0.01)),
    ("Adagrad", dict(lr=0.1)),
])
@pytest.mark.parametrize("kernel_set", ["numba", "numpy"])
def test_optimizers_match_a_per_parameter_numpy_loop(name, kwargs, kernel_set):
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s) for s in [(3, 4), (7,), (), (2, 2, 2)]]
    grads = [[rng.standard_normal(v.shape) for v in values] for _ in range(20)]
    params = [nn.Parameter(v.copy()) for v in values]
    with kernels.use(kernel_set):
        optimizer = getattr(optim, name)(params, **kwargs)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = Tensor(g.copy())
            optimizer.step()
    for p, expected in zip(params, numpy_reference(name, kwargs, values, grads)):
        np.testing.assert_allclose(p.array, expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- kernels vs twins

def flags(count):
    return itertools.product([False, True], repeat=count)


def kernel_case(dtype, n, seed, arrays):
    rng = np.random.default_rng(seed)
    out = [rng.standard_normal(n).astype(dtype) for _ in range(arrays)]
    for a in out[2:]:  # state buffers: second moments must be >= 0
        np.abs(a, out=a)
    return out


def assert_twins_agree(name, dtype, arrays, scalars):
    twin = getattr(kernels, name).implementations["numpy"]
    fused = getattr(kernels, name).implementations["numba"]
    ours = [a.copy() for a in arrays]
    theirs = [a.copy() for a in arrays]
    twin(*theirs, *scalars)
    fused(*ours, *scalars)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


SIZES = [1, 37, 70_001]  # 70_001: above the parallel threshold


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_sgd_kernel_matches_twin(dtype, n):
    for nesterov, maximize, first in flags(3):
        for momentum, dampening, decay in [(0.0, 0.0, 0.0), (0.9, 0.0, 0.01), (0.8, 0.3, 0.0)]:
            if nesterov and (momentum == 0 or dampening):
                continue
            arrays = kernel_case(dtype, n, 0, 3)
            assert_twins_agree("sgd_step", dtype, arrays,
                               (0.1, momentum, dampening, decay, nesterov, maximize, first))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_adam_kernel_matches_twin(dtype, n):
    for decoupled, amsgrad, maximize in flags(3):
        for decay in (0.0, 0.1):
            arrays = kernel_case(dtype, n, 1, 5)
            assert_twins_agree("adam_step", dtype, arrays,
                               (0.01, 0.9, 0.999, 1e-8, decay, decoupled, amsgrad, maximize,
                                1 - 0.9 ** 3, (1 - 0.999 ** 3) ** 0.5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_rmsprop_and_adagrad_kernels_match_twins(dtype, n):
    for centered, maximize in flags(2):
        for momentum, decay in [(0.0, 0.0), (0.9, 0.1)]:
            arrays = kernel_case(dtype, n, 2, 5)
            arrays[3] *= 0.01  # grad_avg^2 below square_avg, as in a real run
            assert_twins_agree("rmsprop_step", dtype, arrays,
                               (0.01, 0.99, 1e-8, decay, momentum, centered, maximize))
    for maximize, decay in itertools.product([False, True], [0.0, 0.1]):
        arrays = kernel_case(dtype, n, 3, 3)
        assert_twins_agree("adagrad_step", dtype, arrays, (0.05, 1e-10, decay, maximize))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0] + SIZES)
def test_sum_of_squares_kernel_matches_twin(dtype, n):
    x = np.random.default_rng(4).standard_normal(n).astype(dtype)
    expected = optim_kernels.sum_of_squares_numpy(x)
    assert optim_kernels.sum_of_squares_numba(x) == pytest.approx(expected, rel=1e-12, abs=0)
