"""nn's differences from torch found by the torch-habit sweeps (modules, schedules, activations,
init, embedding, gradient clipping, batch norm), one regression test each; the engine's are in
tests/test_torch_habits.py. torch 2.13's answers are written out; where torch is installed the
tests also compare with it directly. Each failed before its fix."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor

try:
    import torch
except ImportError:  # the written-out answers still run
    torch = None


# ---------------------------------------------------------------------------- modules

def test_a_parameter_or_module_name_takes_only_its_kind_or_none():
    # before: `m.weight = tensor` replaced the parameter silently: no longer in parameters()
    # or state_dict(), so an optimizer made earlier trained the old one
    for L in (tg, torch) if torch is not None else (tg,):
        m = L.nn.Linear(2, 2)
        with pytest.raises(TypeError):
            m.weight = L.zeros(2, 2)
        seq = L.nn.Sequential(L.nn.Linear(2, 2))
        with pytest.raises(TypeError):
            seq._modules["0"]  # the name exists
            setattr(seq, "0", L.zeros(1))
        m.weight = L.nn.Parameter(L.zeros(2, 2))
        m.bias = None
        assert [n for n, _ in m.named_parameters()] == ["weight"]
        assert m(L.ones(1, 2)).tolist() == [[0.0, 0.0]]


# ---------------------------------------------------------------------------- schedules

SCHEDULE_STORIES = {  # torch 2.13's lr after each of the first steps (tests/nn/test_optim_torch.py
    # compares every one of these classes with torch step by step, exactly)
    "multistep": (lambda L, o: L.MultiStepLR(o, [2, 4, 4], 0.5),
                  [1.0, 0.5, 0.5, 0.125, 0.125, 0.125, 0.125, 0.125]),
    "exponential": (lambda L, o: L.ExponentialLR(o, 0.5), [0.5, 0.25, 0.125, 0.0625]),
    "constant": (lambda L, o: L.ConstantLR(o, 0.5, 3), [0.5, 0.5, 1.0, 1.0, 1.0]),
    "warm_restarts": (lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2),
                      [0.5, 1.0, 0.853553, 0.5, 0.146447, 1.0, 0.96194]),
    "sequential": (lambda L, o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, total_iters=2),
                                                   L.CosineAnnealingLR(o, T_max=4)], milestones=[2]),
                   [0.55, 1.0, 0.853553, 0.5, 0.146447, 0.0]),
    "chained": (lambda L, o: L.ChainedScheduler([L.StepLR(o, 2, 0.5), L.ExponentialLR(o, 0.9)]),
                [0.9, 0.405, 0.3645, 0.164025, 0.147623]),
}


@pytest.mark.parametrize("name", SCHEDULE_STORIES)
def test_more_of_torchs_schedules(name):
    # before: AttributeError (only LambdaLR, StepLR, CosineAnnealingLR, LinearLR, OneCycleLR)
    make, expected = SCHEDULE_STORIES[name]
    p = tg.nn.Parameter(tg.ones(1))
    optimizer = tg.optim.SGD([p], lr=1.0)
    scheduler = make(tg.optim.lr_scheduler, optimizer)
    lrs = []
    for _ in expected:
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx(expected, abs=1e-6)


def test_reduce_lr_on_plateau():
    optimizer = tg.optim.SGD([tg.nn.Parameter(tg.ones(1))], lr=1.0)
    scheduler = tg.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=1, factor=0.5)
    lrs = []
    for loss in [1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.6, 0.7]:
        scheduler.step(tg.tensor(loss))  # a 0-d loss tensor, as torch code passes
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]

# ---------------------------------------------------------------------------- activations

KINKS = [-4.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 4.0, 6.0, 7.0]
ACTIVATIONS = {  # name: (our call, torch's gradient at KINKS, written out from torch 2.13)
    "hardtanh": (lambda F, x: F.hardtanh(x), [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0]),
    "relu6": (lambda F, x: F.relu6(x), [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0]),
    "hardsigmoid": (lambda F, x: F.hardsigmoid(x), [0, 0, 1 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 6, 0, 0, 0, 0]),
    "hardswish": (lambda F, x: F.hardswish(x), [0, 0, 1 / 6, 1 / 3, 0.5, 2 / 3, 5 / 6, 1, 1, 1, 1]),
    "elu": (lambda F, x: F.elu(x, 0.5), [0.5 * np.exp(-4), 0.5 * np.exp(-3), 0.5 * np.exp(-1),
                                         0.5 * np.exp(-0.5), 0.5, 1, 1, 1, 1, 1, 1]),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradients_at_their_kinks_are_torchs(name):
    # before: AttributeError; at a kink the gradient takes torch's side (hardtanh's bounds get 0,
    # where clamp's get 1)
    call, expected = ACTIVATIONS[name]
    x = Tensor(np.array(KINKS), requires_grad=True)
    call(tg.nn.functional, x).sum().backward()
    np.testing.assert_allclose(x.grad.array, expected, rtol=1e-12, atol=1e-15)
    if torch is not None:
        t = torch.tensor(KINKS, dtype=torch.float64, requires_grad=True)
        call(torch.nn.functional, t).sum().backward()  # torch's hardsigmoid uses a float32 1/6
        np.testing.assert_allclose(x.grad.array, t.grad.numpy(), rtol=1e-7, atol=1e-15)


def test_more_activations_and_their_layers_match_torch():
    F = tg.nn.functional
    smooth = Tensor(np.array([-2.5, -0.7, 0.3, 1.9, 5.2, 7.5]), requires_grad=True)
    calls = [lambda F, x: F.elu(x), lambda F, x: F.selu(x), lambda F, x: F.celu(x, 2.0),
             lambda F, x: F.hardtanh(x, -2.0, 2.0), lambda F, x: F.relu6(x),
             lambda F, x: F.hardsigmoid(x), lambda F, x: F.hardswish(x), lambda F, x: F.mish(x),
             lambda F, x: F.logsigmoid(x), lambda F, x: F.softsign(x), lambda F, x: F.tanhshrink(x),
             lambda F, x: F.softmin(x, 0), lambda F, x: F.glu(x),
             lambda F, x: F.cosine_similarity(x.reshape(2, 3), x.reshape(2, 3).flip(0)),
             lambda F, x: F.pairwise_distance(x.reshape(2, 3), x.reshape(2, 3).exp())]
    for call in calls:
        assert tg.gradcheck(lambda x: call(F, x), smooth)
        if torch is not None:
            theirs = call(torch.nn.functional, torch.tensor(smooth.array))
            np.testing.assert_allclose(call(F, smooth).array, theirs.numpy(), rtol=1e-12, atol=1e-12)
    assert F.elu(Tensor([1000.0, -1000.0])).tolist() == [1000.0, -1.0]  # no overflow, no NaN
    nn = tg.nn
    layers = [nn.ELU(0.5), nn.SELU(), nn.CELU(), nn.Hardtanh(-2, 2), nn.ReLU6(), nn.Hardsigmoid(),
              nn.Hardswish(), nn.Mish(), nn.LogSigmoid(), nn.Softsign(), nn.Tanhshrink(),
              nn.Softmin(dim=0), nn.GLU()]
    x = Tensor(np.linspace(-4, 4, 6))
    for layer in layers:
        assert layer(x).shape == ((3,) if isinstance(layer, nn.GLU) else (6,))
    assert repr(nn.Hardtanh(-2, 2)) == "Hardtanh(min_val=-2, max_val=2)"
    prelu = nn.PReLU(3, 0.1)
    channels = Tensor(np.array([[[-1.0, 2.0], [3.0, -4.0], [-5.0, 0.0]]], np.float32),
                      requires_grad=True)
    out = prelu(channels)
    np.testing.assert_allclose(out.array, [[[-0.1, 2.0], [3.0, -0.4], [-0.5, 0.0]]], rtol=1e-6)
    (out * Tensor(np.arange(6.0, dtype=np.float32).reshape(1, 3, 2))).sum().backward()
    np.testing.assert_allclose(prelu.weight.grad.array, [0.0, -12.0, -20.0])
    assert [n for n, _ in prelu.named_parameters()] == ["weight"]


# ---------------------------------------------------------------------------- init and embedding

def test_more_init_schemes():
    # before: AttributeError for trunc_normal_, orthogonal_, eye_, dirac_
    init = tg.nn.init
    tg.manual_seed(0)
    w = init.trunc_normal_(tg.empty(20000), std=1.0, a=-1.0, b=1.5)
    assert -1.0 <= float(w.min()) and float(w.max()) <= 1.5
    # N(0, 1) truncated to [-1, 1.5]: mean (phi(-1) - phi(1.5)) / (Phi(1.5) - Phi(-1))
    assert abs(float(w.mean()) - 0.1393) < 0.02
    for shape in [(3, 5), (5, 3), (4, 2, 3)]:
        q = init.orthogonal_(tg.empty(*shape), gain=2.0).reshape(shape[0], -1).array.astype(np.float64)
        small = q @ q.T if shape[0] <= q.shape[1] else q.T @ q
        np.testing.assert_allclose(small, 4 * np.eye(len(small)), atol=1e-5)
    assert init.eye_(tg.empty(2, 3)).tolist() == [[1, 0, 0], [0, 1, 0]]
    kernel = init.dirac_(tg.empty(2, 2, 3))
    assert kernel.tolist() == [[[0, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 1, 0]]]
    if torch is not None:
        assert kernel.tolist() == torch.nn.init.dirac_(torch.empty(2, 2, 3)).tolist()
    weight = tg.nn.Linear(3, 3).weight
    with pytest.raises(RuntimeError, match="leaf"):
        weight.normal_()  # the init functions work on parameters because they run under no_grad
    assert init.trunc_normal_(weight, std=0.02) is weight and weight.requires_grad


def test_embedding_from_pretrained_and_max_norm():
    table = Tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 2.0]])
    frozen = tg.nn.Embedding.from_pretrained(table)
    assert not frozen.weight.requires_grad
    np.testing.assert_allclose(frozen(Tensor([1])).array, [[0.3, 0.4]])
    trained = tg.nn.Embedding.from_pretrained(table, freeze=False, padding_idx=0)
    assert trained.weight.requires_grad and trained.padding_idx == 0
    assert trained.weight.array[0].tolist() == [3.0, 4.0]  # from_pretrained keeps the padding row
    assert not np.shares_memory(trained.weight.array, table.array)
    capped = tg.nn.Embedding(3, 2, max_norm=1.0)
    with tg.no_grad():
        capped.weight.copy_(table)
    out = capped(Tensor([0, 1]))
    # torch: the rows looked up are rescaled in place (scale max_norm / (norm + 1e-7)); row 2,
    # not looked up, keeps its norm of 2
    np.testing.assert_allclose(out.array, [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(capped.weight.array, [[0.6, 0.8], [0.3, 0.4], [0.0, 2.0]], rtol=1e-6)
    if torch is not None:
        theirs = torch.nn.Embedding(3, 2, max_norm=1.0)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(table.array))
        np.testing.assert_allclose(out.array, theirs(torch.tensor([0, 1])).detach().numpy(), rtol=1e-6)


def _module_story(nn, L):
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    model.register_module("extra", nn.Identity(54, unused="ignored"))
    story = [[n for n, _ in model.named_parameters(remove_duplicate=False)],
             type(model.get_submodule("0")).__name__, tuple(model.get_parameter("2.bias").shape),
             sorted(model.state_dict(prefix="net.").keys()),
             model.state_dict(keep_vars=True)["0.weight"] is shared.weight,
             str(model.load_state_dict(model.state_dict())),
             nn.Sequential(nn.BatchNorm1d(3)).get_buffer("0.running_var").tolist()]
    weight = L.full((2, 2), 3.0)
    model.load_state_dict({"0.weight": weight, "0.bias": L.zeros(2)}, strict=False, assign=True)
    story += [type(shared.weight).__name__, shared.weight.requires_grad,
              shared.weight.tolist(), model(L.ones(1, 2)).tolist()]
    table = nn.ModuleDict({"a": nn.ReLU(), "b": nn.Tanh()})
    story += [type(table.pop("a")).__name__, list(table.keys())]
    table.clear()
    story.append(len(table))
    return story


def test_module_lookups_state_dict_arguments_and_assign():
    # before: TypeError or AttributeError for each (and load_state_dict printed as a tuple)
    expected = [["0.weight", "0.bias", "2.weight", "2.bias"], "Linear", (2,),
                ["net.0.bias", "net.0.weight", "net.2.bias", "net.2.weight"], True,
                "<All keys matched successfully>", [1.0, 1.0, 1.0],
                "Parameter", True, [[3.0, 3.0], [3.0, 3.0]], [[36.0, 36.0]], "ReLU", ["b"], 0]
    assert _module_story(tg.nn, tg) == expected
    if torch is not None:
        assert _module_story(torch.nn, torch) == expected


def test_get_total_norm_and_clip_grads_with_norm():
    # before: AttributeError (torch 2.6's split of clip_grad_norm_)
    utils = tg.nn.utils
    assert utils.get_total_norm([Tensor([3.0, 4.0]), Tensor([12.0])]).item() == 13.0
    assert utils.get_total_norm([Tensor([3.0, -4.0])], 1).item() == 7.0
    assert utils.get_total_norm([Tensor([3.0, -4.0])], "inf").item() == 4.0
    infinite = Tensor([float("inf"), 1.0])
    assert utils.get_total_norm([infinite]).item() == float("inf")
    assert infinite.tolist() == [float("inf"), 1.0]  # only read
    p = tg.nn.Parameter(tg.ones(2))
    p.grad = Tensor([3.0, 4.0])
    total = utils.get_total_norm([p.grad])
    utils.clip_grads_with_norm_([p], 1.0, total)
    np.testing.assert_allclose(p.grad.array, [0.6, 0.8], rtol=1e-5)
    if torch is not None:
        q = torch.nn.Parameter(torch.ones(2))
        q.grad = torch.tensor([3.0, 4.0])
        torch.nn.utils.clip_grads_with_norm_([q], 1.0, torch.nn.utils.get_total_norm([q.grad]))
        np.testing.assert_allclose(p.grad.array, q.grad.numpy(), rtol=1e-6)


# ---------------------------------------------------------------------------- batch norm

def _batch_norm_story(L, nn):
    def data(*shape, k=1.0):
        values = np.cos(np.arange(int(np.prod(shape))) * 0.37 * k).reshape(shape) * 2 + 0.5
        return L.tensor(values, dtype=L.float64)
    story = []
    for layer, x in [(nn.BatchNorm1d(3, dtype=L.float64), data(4, 3)),
                     (nn.BatchNorm1d(3, momentum=None, dtype=L.float64), data(2, 3, 5)),
                     (nn.BatchNorm2d(2, dtype=L.float64), data(2, 2, 3, 3))]:
        for step in range(2):
            xi = (x * (step + 1)).requires_grad_(True)
            y = layer(xi)
            (y * data(*y.shape, k=2)).sum().backward()
            story += [y, xi.grad]
        story += [layer.running_mean, layer.running_var, layer.weight.grad, layer.bias.grad]
        layer.eval()
        story.append(layer(data(*x.shape, k=3)))
    return [np.asarray(t.detach().numpy()) for t in story]


def test_batch_norm_layers_match_torch():
    # before: AttributeError
    ours = _batch_norm_story(tg, tg.nn)
    if torch is not None:
        for got, want in zip(ours, _batch_norm_story(torch, torch.nn)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    layer = tg.nn.BatchNorm1d(2)
    x = Tensor(np.array([[1.0, 2.0], [3.0, 6.0]], np.float32))
    np.testing.assert_allclose(layer(x).array, [[-1.0, -1.0], [1.0, 1.0]], atol=1e-4)
    np.testing.assert_allclose(layer.running_mean.array, [0.2, 0.4])  # 0.9 * 0 + 0.1 * mean
    np.testing.assert_allclose(layer.running_var.array, [1.1, 1.7])  # unbiased batch var 2, 8
    assert layer.num_batches_tracked.item() == 1
    assert list(layer.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                        "num_batches_tracked"]
    with pytest.raises(ValueError):
        layer(Tensor(np.ones((1, 2), np.float32)))  # one value per channel in training
    bn = tg.nn.BatchNorm1d(3, dtype=np.float64)
    assert tg.gradcheck(lambda t: bn(t), Tensor(np.random.default_rng(6).standard_normal((5, 3)),
                                                 requires_grad=True))
