"""tinygrad_tf.optim against torch.optim: the same parameters, gradients and schedule give the
same values step by step (float64, 25 steps), and state_dicts have torch's keys and load both
ways. Skipped without torch."""
import numpy as np
import pytest

from tinygrad_tf import Tensor, nn, optim

torch = pytest.importorskip("torch")

STEPS = 25
SHAPES = [(4, 3), (5,), (2, 3, 2), ()]


def make_pair(seed=0):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(shape) for shape in SHAPES]
    ours = [nn.Parameter(v.copy()) for v in values]
    theirs = [torch.nn.Parameter(torch.tensor(v.copy())) for v in values]
    return ours, theirs


def groups(params, group_kwargs):
    """Split params into one group per entry of group_kwargs (round-robin)."""
    if group_kwargs is None:
        return params
    return [{"params": params[i::len(group_kwargs)], **kw} for i, kw in enumerate(group_kwargs)]


CASES = [
    ("SGD", dict(lr=0.1), None),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01), None),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True), None),
    ("SGD", dict(lr=0.1, momentum=0.8, dampening=0.3), [{}, {"lr": 0.01, "momentum": 0.5}]),
    ("Adam", dict(lr=0.01), None),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1), None),
    ("Adam", dict(lr=0.02, amsgrad=True), [{}, {"lr": 0.001, "betas": (0.5, 0.9)}]),
    ("Adam", dict(lr=0.01, maximize=True, decoupled_weight_decay=True, weight_decay=0.1), None),
    ("AdamW", dict(lr=0.01), None),
    ("AdamW", dict(lr=0.01, weight_decay=0.2, amsgrad=True), [{}, {"weight_decay": 0.0}]),
    ("RMSprop", dict(lr=0.01), None),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.05), None),
    ("RMSprop", dict(lr=0.01, alpha=0.9, maximize=True), [{}, {"centered": True}]),
    ("Adagrad", dict(lr=0.1), None),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.5),
     [{}, {"lr": 0.05, "eps": 1e-6}]),
]


def assert_params_close(ours, theirs, rtol=1e-10):
    for a, t in zip(ours, theirs):
        np.testing.assert_allclose(a.array, t.detach().numpy(), rtol=rtol, atol=1e-13)


@pytest.mark.parametrize("name, kwargs, group_kwargs", CASES)
def test_optimizer_matches_torch_step_by_step(name, kwargs, group_kwargs):
    ours_p, theirs_p = make_pair()
    ours = getattr(optim, name)(groups(ours_p, group_kwargs), **kwargs)
    theirs = getattr(torch.optim, name)(groups(theirs_p, group_kwargs), **kwargs)
    rng = np.random.default_rng(1)
    for step in range(STEPS):
        for i, (a, t) in enumerate(zip(ours_p, theirs_p)):
            if step % 7 == 3 and i == 1:  # sometimes a parameter gets no gradient
                a.grad = t.grad = None
                continue
            grad = rng.standard_normal(a.shape)
            a.grad, t.grad = Tensor(grad.copy()), torch.tensor(grad)
        ours.step()
        theirs.step()
        assert_params_close(ours_p, theirs_p)
    check_state_dicts_agree(ours.state_dict(), theirs.state_dict())
    for a, t in zip(ours_p, theirs_p):  # optimizer.state is keyed by the parameter, as torch's
        assert set(ours.state.get(a, {})) == set(theirs.state.get(t, {}))
        for key, value in theirs.state.get(t, {}).items():
            np.testing.assert_allclose(ours.state[a][key], np.asarray(value), rtol=1e-10,
                                       atol=1e-13)


def check_state_dicts_agree(ours, theirs):
    assert set(ours["state"]) == set(theirs["state"])
    for index, entry in theirs["state"].items():
        assert set(ours["state"][index]) == set(entry)
        for key, value in entry.items():
            if key == "step":
                assert ours["state"][index][key] == int(value.item())
            else:
                np.testing.assert_allclose(ours["state"][index][key].array, value.numpy(),
                                           rtol=1e-10, atol=1e-13)
    for ours_group, theirs_group in zip(ours["param_groups"], theirs["param_groups"]):
        assert set(ours_group) == set(theirs_group)
        for key, value in theirs_group.items():
            mine = ours_group[key]
            if isinstance(value, (list, tuple)):
                mine, value = list(mine), list(value)
            assert mine == value, key


@pytest.mark.parametrize("name, kwargs, group_kwargs", [CASES[2], CASES[6], CASES[11], CASES[14]])
def test_state_dict_loads_both_ways_and_continues_like_torch(name, kwargs, group_kwargs):
    ours_p, theirs_p = make_pair()
    ours = getattr(optim, name)(groups(ours_p, group_kwargs), **kwargs)
    theirs = getattr(torch.optim, name)(groups(theirs_p, group_kwargs), **kwargs)
    rng = np.random.default_rng(2)

    def step_both(ours, theirs, ours_p, theirs_p):
        for a, t in zip(ours_p, theirs_p):
            grad = rng.standard_normal(a.shape)
            a.grad, t.grad = Tensor(grad.copy()), torch.tensor(grad)
        ours.step()
        theirs.step()

    for _ in range(5):
        step_both(ours, theirs, ours_p, theirs_p)
    # Cross over: a fresh torch optimizer gets our state, a fresh one of ours gets torch's.
    ours_state = ours.state_dict()
    torch_state = theirs.state_dict()
    new_ours = getattr(optim, name)(groups(ours_p, group_kwargs), **kwargs)
    new_theirs = getattr(torch.optim, name)(groups(theirs_p, group_kwargs), **kwargs)
    new_ours.load_state_dict(torch_state)
    new_theirs.load_state_dict(to_torch(ours_state))
    for _ in range(STEPS - 5):
        step_both(new_ours, new_theirs, ours_p, theirs_p)
        assert_params_close(ours_p, theirs_p)


def to_torch(state_dict):
    state = {index: {k: (torch.tensor(v.array) if isinstance(v, Tensor) else
                         torch.tensor(float(v)) if k == "step" else v) for k, v in entry.items()}
             for index, entry in state_dict["state"].items()}
    return {"state": state, "param_groups": state_dict["param_groups"]}


# ---------------------------------------------------------------------------- schedulers

SCHEDULES = [
    ("LambdaLR", dict(lr_lambda=lambda n: 0.95 ** n)),
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=10, eta_min=0.001)),  # 40 steps: past T_max twice
    ("LinearLR", dict(start_factor=0.25, end_factor=1.0, total_iters=12)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.1, total_iters=30)),
    ("OneCycleLR", dict(max_lr=[0.5, 0.2], total_steps=41)),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=41, three_phase=True, anneal_strategy="linear")),
    ("ExponentialLR", dict(gamma=0.93)),
    ("MultiStepLR", dict(milestones=[3, 7, 7, 20], gamma=0.5)),  # 7 twice: gamma squared there
    ("ConstantLR", dict(factor=0.4, total_iters=6)),
    ("CosineAnnealingWarmRestarts", dict(T_0=3, T_mult=2, eta_min=0.01)),
    ("CosineAnnealingWarmRestarts", dict(T_0=4)),
]


@pytest.mark.parametrize("name, kwargs", SCHEDULES)
@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_scheduler_lr_sequence_matches_torch(name, kwargs, optimizer):
    ours_p, theirs_p = make_pair()
    extra = {"momentum": 0.9} if optimizer == "SGD" else {}
    ours = getattr(optim, optimizer)([{"params": ours_p[:2]}, {"params": ours_p[2:], "lr": 0.3}],
                                     lr=0.1, **extra)
    theirs = getattr(torch.optim, optimizer)(
        [{"params": theirs_p[:2]}, {"params": theirs_p[2:], "lr": 0.3}], lr=0.1, **extra)
    ours_s = getattr(optim.lr_scheduler, name)(ours, **kwargs)
    theirs_s = getattr(torch.optim.lr_scheduler, name)(theirs, **kwargs)
    for _ in range(40):
        ours.step()
        theirs.step()
        ours_s.step()
        theirs_s.step()
        assert ours_s.get_last_lr() == theirs_s.get_last_lr()  # exact: same float operations
        for a, t in zip(ours.param_groups, theirs.param_groups):
            momentum = "betas" if optimizer == "Adam" else "momentum"
            assert a[momentum] == (tuple(t[momentum]) if optimizer == "Adam" else t[momentum])
    assert set(ours_s.state_dict()) == set(theirs_s.state_dict()) - {
        "_get_lr_called_within_step", "_is_initial"}


COMPOSED = {
    "sequential": lambda L, o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, total_iters=4),
                                                 L.CosineAnnealingLR(o, T_max=6, eta_min=0.01),
                                                 L.ExponentialLR(o, 0.8)], milestones=[4, 12]),
    "sequential_step_then_multistep": lambda L, o: L.SequentialLR(
        o, [L.StepLR(o, 2, 0.5), L.MultiStepLR(o, [2, 5], 0.1), L.ConstantLR(o, 0.5, 3)],
        milestones=[5, 11]),
    "chained": lambda L, o: L.ChainedScheduler([L.StepLR(o, 3, 0.5), L.ExponentialLR(o, 0.95),
                                                L.LinearLR(o, 0.2, total_iters=5)]),
    "stacked_by_hand": lambda L, o: [L.CosineAnnealingLR(o, 7), L.StepLR(o, 4, 0.3)],
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", COMPOSED)
def test_composed_schedules_match_torch(name):
    ours_p, theirs_p = make_pair()
    ours = optim.SGD([{"params": ours_p[:2]}, {"params": ours_p[2:], "lr": 0.3}], lr=0.1)
    theirs = torch.optim.SGD([{"params": theirs_p[:2]}, {"params": theirs_p[2:], "lr": 0.3}], lr=0.1)
    ours_s = COMPOSED[name](optim.lr_scheduler, ours)
    theirs_s = COMPOSED[name](torch.optim.lr_scheduler, theirs)
    for step in range(25):
        for scheduler in ours_s if isinstance(ours_s, list) else [ours_s]:
            scheduler.step()
        for scheduler in theirs_s if isinstance(theirs_s, list) else [theirs_s]:
            scheduler.step()
        assert [g["lr"] for g in ours.param_groups] == [g["lr"] for g in theirs.param_groups]
        if step == 9 and name == "sequential":  # resume from a state_dict halfway
            state = ours_s.state_dict()
            ours = optim.SGD([{"params": ours_p[:2]}, {"params": ours_p[2:], "lr": 0.3}], lr=0.1)
            ours_s = COMPOSED[name](optim.lr_scheduler, ours)
            ours_s.load_state_dict(state)  # sets the groups' lr too


@pytest.mark.parametrize("kwargs", [dict(patience=1, factor=0.5),
                                    dict(mode="max", patience=0, threshold=0.1, cooldown=2),
                                    dict(threshold_mode="abs", threshold=0.05, min_lr=[0.02, 0.1],
                                         patience=2, factor=0.3)])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    ours_p, theirs_p = make_pair()
    ours = optim.SGD([{"params": ours_p[:2]}, {"params": ours_p[2:], "lr": 0.3}], lr=0.1)
    theirs = torch.optim.SGD([{"params": theirs_p[:2]}, {"params": theirs_p[2:], "lr": 0.3}], lr=0.1)
    ours_s = optim.lr_scheduler.ReduceLROnPlateau(ours, **kwargs)
    theirs_s = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kwargs)
    metrics = np.random.default_rng(0).uniform(0.5, 1.5, 30) + np.linspace(1, 0, 30)
    for value in metrics:
        ours_s.step(value)
        theirs_s.step(value)
        assert ours_s.get_last_lr() == theirs_s.get_last_lr()


def test_warm_restarts_at_fractional_epochs_match_torch():
    ours_p, theirs_p = make_pair()
    ours, theirs = optim.SGD(ours_p, lr=0.1), torch.optim.SGD(theirs_p, lr=0.1)
    ours_s = optim.lr_scheduler.CosineAnnealingWarmRestarts(ours, T_0=2, T_mult=3, eta_min=1e-3)
    theirs_s = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(theirs, T_0=2, T_mult=3,
                                                                    eta_min=1e-3)
    for epoch in np.arange(0, 12, 0.37):
        ours_s.step(float(epoch))
        theirs_s.step(float(epoch))
        assert ours_s.get_last_lr() == theirs_s.get_last_lr()


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before")
def test_scheduler_resumes_from_state_dict_like_torch():
    ours_p, theirs_p = make_pair()
    ours, theirs = optim.SGD(ours_p, lr=0.1), torch.optim.SGD(theirs_p, lr=0.1)
    ours_s = optim.lr_scheduler.CosineAnnealingLR(ours, T_max=15)
    theirs_s = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=15)
    for _ in range(6):
        ours_s.step()
        theirs_s.step()
    state = ours_s.state_dict()
    again = optim.lr_scheduler.CosineAnnealingLR(optim.SGD(ours_p, lr=0.1), T_max=15)
    again.load_state_dict(state)
    for _ in range(10):
        again.step()
        theirs_s.step()
        assert again.get_last_lr() == theirs_s.get_last_lr()


def test_clip_grad_norm_over_the_arena_matches_torch():
    ours_p, theirs_p = make_pair()
    optimizer = optim.SGD(ours_p, lr=0.1)
    rng = np.random.default_rng(3)
    for norm_type in (2.0, 1.0, 3.0, float("inf")):
        for a, t in zip(ours_p, theirs_p):
            grad = rng.standard_normal(a.shape) * 3
            a.grad, t.grad = Tensor(grad.copy()), torch.tensor(grad)
        optimizer.flat_grads()  # the grads are arena views now, end to end
        total = nn.utils.clip_grad_norm_(ours_p, 1.5, norm_type=norm_type)
        expected = torch.nn.utils.clip_grad_norm_(theirs_p, 1.5, norm_type=norm_type)
        assert total.item() == pytest.approx(expected.item(), rel=1e-12)
        for a, t in zip(ours_p, theirs_p):
            np.testing.assert_allclose(a.grad.array, t.grad.numpy(), rtol=1e-12)
