"""Module, containers and layers: registration, modes, state_dict, dtype, init, gradcheck."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_tf as tg
from tinygrad_tf import Tensor, gradcheck, nn
from tinygrad_tf import testing as tt


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)
        self.drop = nn.Dropout(0.5)
        self.register_buffer("scale", Tensor(np.ones(4, dtype=np.float32)))
        self.register_buffer("cache", Tensor(np.zeros(2, dtype=np.float32)), persistent=False)

    def forward(self, x):
        return self.drop(self.norm(self.linear(x))) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 1, bias=False)})
        self.embed = nn.Embedding(5, 3, padding_idx=0)

    def forward(self, ids):
        x = self.blocks[0](self.embed(ids))  # (B, T, 4)
        return self.heads["a"](self.blocks[1](x[..., :3]))


def test_registration_and_dotted_names():
    net = Net()
    names = [name for name, _ in net.named_parameters()]
    assert names == ["blocks.0.linear.weight", "blocks.0.linear.bias", "blocks.0.norm.weight",
                     "blocks.0.norm.bias", "blocks.1.linear.weight", "blocks.1.linear.bias",
                     "blocks.1.norm.weight", "blocks.1.norm.bias", "heads.a.weight",
                     "heads.a.bias", "heads.b.weight", "embed.weight"]
    assert net.num_parameters() == 2 * (12 + 4 + 4 + 4) + 8 + 2 + 4 + 15
    assert [name for name, _ in net.named_buffers()] == [
        "blocks.0.scale", "blocks.0.cache", "blocks.1.scale", "blocks.1.cache"]
    assert len(list(net.children())) == 3
    assert isinstance(net.blocks[1].linear, nn.Linear)
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'blocsk'"):
        net.blocsk  # a typo fails loudly instead of giving None


def test_reassigning_an_attribute_moves_it_between_registries():
    block = Block()
    block.linear = None  # no longer a submodule
    assert "linear" not in dict(block.named_children())
    block.extra = nn.Parameter(np.zeros(2, dtype=np.float32))
    assert "extra" in dict(block.named_parameters())
    del block.extra
    assert "extra" not in dict(block.named_parameters())


def test_assigning_before_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.linear = nn.Linear(2, 2)
    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first in Broken"):
        Broken()


def test_tied_parameters_are_listed_once_and_saved_under_each_name():
    a = nn.Linear(2, 2)
    seq = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_train_eval_propagate_and_dropout_obeys():
    net = Net()
    x = np.array([[1, 2, 3]])
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    np.testing.assert_array_equal(net(x).array, net(x).array)  # no dropout: deterministic
    net.train()
    assert all(m.training for m in net.modules())
    tg.manual_seed(0)
    first = net(x).array
    assert not np.array_equal(first, net(x).array)  # dropout active: a new mask each call


def test_zero_grad_set_to_none_and_in_place():
    layer = nn.Linear(2, 3)
    layer(Tensor(np.ones((1, 2), np.float32))).sum().backward()
    grad = layer.weight.grad
    layer.zero_grad(set_to_none=False)
    assert layer.weight.grad is grad
    np.testing.assert_array_equal(grad.array, 0)
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def _hooked_run(lib, nn_lib):
    """A torch habit: forward pre-/post-hooks that record, replace the input, replace the
    output; then removed. Returns what was seen and each call's output."""
    lib.manual_seed(0)
    model = nn_lib.Sequential(nn_lib.Linear(3, 2), nn_lib.ReLU())
    with lib.no_grad():
        model[0].weight.copy_(lib.tensor([[1.0, -2.0, 0.5], [0.25, 1.0, -1.0]]))
        model[0].bias.copy_(lib.tensor([0.1, -0.2]))
    seen = []
    pre = model[0].register_forward_pre_hook(lambda m, args: (args[0] * 2,))
    post = model[0].register_forward_hook(
        lambda m, args, out: seen.append((type(m).__name__, tuple(args[0].shape))) or out + 1)
    x = lib.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    outputs = [model(x).detach().numpy().copy()]
    pre.remove()
    outputs.append(model(x).detach().numpy().copy())
    post.remove()
    outputs.append(model(x).detach().numpy().copy())
    return seen, outputs


def test_forward_hooks_see_replace_and_remove_as_torch():
    seen, outputs = _hooked_run(tg, nn)
    assert seen == [("Linear", (2, 3))] * 2
    plain = np.maximum(np.array([[1.0, 2, 3], [-1, 0.5, 2]]) @ np.array(
        [[1.0, -2, 0.5], [0.25, 1, -1]]).T + [0.1, -0.2], 0)
    np.testing.assert_allclose(outputs[2], plain, rtol=1e-6)
    torch = pytest.importorskip("torch")
    theirs_seen, theirs = _hooked_run(torch, torch.nn)
    assert theirs_seen == seen
    for ours, expected in zip(outputs, theirs):
        np.testing.assert_allclose(ours, expected, rtol=1e-6)


def _kwargs_hook_story(lib, nn_):
    class Scale(nn_.Module):
        def forward(self, x, factor=1.0):
            return x * factor

    module, order = Scale(), []
    module.register_forward_pre_hook(lambda m, args, kwargs: (args, {"factor": 3.0}),
                                     with_kwargs=True)
    module.register_forward_hook(lambda m, args, kwargs, out: order.append(("kw", kwargs)) or
                                 out + 1, with_kwargs=True)
    module.register_forward_hook(lambda m, args, out: order.append("first"), prepend=True)
    out = module(lib.ones(2), factor=2.0)
    bad = Scale()
    bad.register_forward_pre_hook(lambda m, args, kwargs: args, with_kwargs=True)
    with pytest.raises(RuntimeError, match="new_args, new_kwargs"):
        bad(lib.ones(2))
    return out.tolist(), order


def test_forward_hooks_with_kwargs_and_prepend_as_torch():
    # before: TypeError (no with_kwargs= or prepend= keyword)
    expected = ([4.0, 4.0], ["first", ("kw", {"factor": 3.0})])
    assert _kwargs_hook_story(tg, nn) == expected
    torch = pytest.importorskip("torch")
    assert _kwargs_hook_story(torch, torch.nn) == expected


def test_repr_shows_the_tree():
    text = repr(nn.Sequential(nn.Linear(2, 8), nn.GELU(), nn.ModuleList([nn.Dropout(0.1)])))
    assert text == ("Sequential(\n"
                    "  (0): Linear(in_features=2, out_features=8, bias=True)\n"
                    "  (1): GELU(approximate='none')\n"
                    "  (2): ModuleList(\n"
                    "    (0): Dropout(p=0.1)\n"
                    "  )\n"
                    ")")
    assert repr(nn.Embedding(10, 4, padding_idx=0)) == "Embedding(10, 4, padding_idx=0)"


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seq.append(nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    assert len(seq[1:]) == 2
    assert seq(Tensor(np.ones((4, 2), np.float32))).shape == (4, 1)
    with pytest.raises(IndexError, match="Sequential index 3 is out of range for length 3"):
        seq[3]
    layers = nn.ModuleList()
    layers.append(nn.ReLU())
    layers.insert(0, nn.Identity())
    assert [type(m).__name__ for m in layers] == ["Identity", "ReLU"]
    heads = nn.ModuleDict()
    heads["x"] = nn.Linear(1, 1)
    assert "x" in heads and list(heads) == ["x"]
    assert [n for n, _ in heads.named_parameters()] == ["x.weight", "x.bias"]


# ---------------------------------------------------------------------------- state_dict

def test_state_dict_round_trip_and_snapshot():
    tg.manual_seed(1)
    source, target = Net(), Net()
    state = source.state_dict()
    assert "blocks.0.cache" not in state and "blocks.0.scale" in state
    before = state["heads.a.weight"].array.copy()
    source.heads["a"].weight.array += 1  # later training must not change the snapshot
    np.testing.assert_array_equal(state["heads.a.weight"].array, before)
    weight = target.heads["a"].weight
    assert target.load_state_dict(state) == ([], [])
    assert target.heads["a"].weight is weight  # loaded in place: optimizers still hold it
    for (name, a), (_, b) in zip(Net.named_parameters(target), source.named_parameters()):
        if name != "heads.a.weight":
            np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(weight.array, before)


def test_load_state_dict_strict_errors_name_keys():
    net = Net()
    state = net.state_dict()
    del state["heads.a.bias"]
    state["heads.c.weight"] = Tensor(np.zeros(2))
    state["embed.weight"] = Tensor(np.zeros((6, 3)))
    with pytest.raises(KeyError) as error:
        net.load_state_dict(state)
    message = str(error.value)
    assert "shape mismatch for embed.weight: checkpoint (6, 3), model (5, 3)" in message
    assert "missing keys 'heads.a.bias'" in message
    assert "unexpected keys 'heads.c.weight'" in message
    del state["embed.weight"]
    result = net.load_state_dict(state, strict=False)
    assert result.missing_keys == ["heads.a.bias", "embed.weight"]
    assert result.unexpected_keys == ["heads.c.weight"]


def test_to_double_keeps_parameter_identity():
    net = Net()
    params = list(net.parameters())
    net.double()
    assert all(a is b for a, b in zip(params, net.parameters()))
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert all(b.dtype == np.float64 for b in net.buffers())
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())


# ---------------------------------------------------------------------------- layers

def call_with(module, values, *args):
    """module(*args) with its parameters replaced by `values` (name -> Tensor), so gradcheck can
    differentiate a layer with respect to its own parameters."""
    saved = []
    for name, value in values.items():
        *path, leaf = name.split(".")
        owner = module
        for part in path:
            owner = owner._modules[part]
        saved.append((owner, leaf, owner._parameters[leaf]))
        owner._parameters[leaf] = value
    try:
        return module(*args)
    finally:
        for owner, leaf, original in saved:
            owner._parameters[leaf] = original


def gradcheck_layer(layer, *args):
    """Gradcheck a float64 layer with respect to its tensor args and every parameter."""
    names = [name for name, _ in layer.named_parameters()]
    params = [Tensor(p.array.copy(), requires_grad=True) for p in layer.parameters()]
    n_args = len(args)
    out = call_with(layer, dict(zip(names, params)), *args)
    np.testing.assert_array_equal(out.array, layer(*args).array)
    tensor_args = [a for a in args if isinstance(a, Tensor)]
    assert len(tensor_args) in (0, n_args)

    def fn(*inputs):
        layer_args = inputs[:len(tensor_args)] if tensor_args else args
        return call_with(layer, dict(zip(names, inputs[len(tensor_args):])), *layer_args)
    return gradcheck(fn, *tensor_args, *params)


@given(st.data(), st.integers(1, 4), st.integers(1, 4), st.booleans())
def test_linear_layer_gradcheck(data, in_features, out_features, bias):
    layer = nn.Linear(in_features, out_features, bias=bias).double()
    batch = data.draw(tt.shapes(max_dims=2, max_side=3))
    assert gradcheck_layer(layer, data.draw(tt.tensors(shape=batch + (in_features,))))


@given(st.data(), tt.shapes(min_dims=1, max_dims=3, max_side=4))
def test_layer_norm_layer_gradcheck(data, shape):
    normalized = shape[-1:] if len(shape) == 1 else shape[-2:]
    if math.prod(normalized) == 1:
        return  # a single normalised element is 0 for every input: nothing smooth to check
    layer = nn.LayerNorm(normalized).double()
    layer.weight.array[...] = data.draw(tt.tensors(shape=normalized)).array
    layer.bias.array[...] = data.draw(tt.tensors(shape=normalized)).array
    assert gradcheck_layer(layer, data.draw(tt.tensors(shape=shape, distinct=True, margin=0.05)))


@given(st.data(), st.integers(1, 5), st.integers(1, 3))
def test_embedding_layer_gradcheck(data, num, dim):
    layer = nn.Embedding(num, dim).double()
    assert gradcheck_layer(layer, data.draw(tt.index_arrays(num)) % num)


@given(tt.tensors(shape=tt.shapes(min_dims=1), avoid=(0.0,)))
def test_activation_layers_gradcheck(x):
    for module in (nn.ReLU(), nn.GELU(), nn.GELU("tanh"), nn.Identity(), nn.Tanh(), nn.Sigmoid(),
                   nn.Softmax(dim=-1), nn.LogSoftmax(dim=0)):
        assert gradcheck(module, x)


def test_loss_modules_match_the_functionals():
    rng = np.random.default_rng(0)
    logits = Tensor(rng.standard_normal((2, 4, 3)))  # (N, C, d1), classes at dim 1
    target = np.array([[0, 1, -100], [3, 2, 1]])
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    assert loss(logits, target).item() == \
        nn.functional.cross_entropy(logits, target, label_smoothing=0.1).item()
    assert repr(loss) == "CrossEntropyLoss(ignore_index=-100, reduction='mean', label_smoothing=0.1)"
    a, b = Tensor(rng.standard_normal(5)), Tensor(rng.standard_normal(5))
    assert nn.MSELoss(reduction="sum")(a, b).item() == pytest.approx(((a.array - b.array) ** 2).sum())


def test_sequential_gradcheck():
    tg.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.LayerNorm(4), nn.Linear(4, 2)).double()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True)
    assert gradcheck_layer(model, x)


def test_dropout_layer_gradcheck_and_eval_identity():
    layer = nn.Dropout(0.3)
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)

    def fn(t):
        tg.manual_seed(5)
        return layer(t)
    assert gradcheck(fn, x)
    assert layer.eval()(x) is x


def test_default_initialisations_match_torch_rules():
    tg.manual_seed(0)
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) reduces to U(-1/sqrt(in), 1/sqrt(in))
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert np.abs(p.array).max() <= bound
        assert np.abs(p.array).max() > 0.98 * bound
    # U(-b, b) has variance b^2 / 3; 120k draws put the sample variance within ~1% of it.
    assert abs(layer.weight.array.var() / (bound ** 2 / 3) - 1) < 0.03
    embed = nn.Embedding(1000, 64, padding_idx=3)
    assert abs(embed.weight.array.std() - 1) < 0.02 and abs(embed.weight.array.mean()) < 0.02
    np.testing.assert_array_equal(embed.weight.array[3], 0)
    norm = nn.LayerNorm((2, 3))
    np.testing.assert_array_equal(norm.weight.array, 1)
    np.testing.assert_array_equal(norm.bias.array, 0)
    assert nn.LayerNorm(3, elementwise_affine=False).num_parameters() == 0
    assert nn.Linear(2, 2, bias=False).bias is None


def test_initialisation_follows_manual_seed():
    tg.manual_seed(42)
    a = nn.Linear(5, 5).weight.array.copy()
    tg.manual_seed(42)
    np.testing.assert_array_equal(a, nn.Linear(5, 5).weight.array)


def test_init_functions():
    tg.manual_seed(0)
    w = nn.Parameter(np.zeros((200, 300), dtype=np.float32))
    nn.init.xavier_uniform_(w)
    bound = math.sqrt(6 / 500)
    assert np.abs(w.array).max() <= bound and abs(w.array.var() / (bound ** 2 / 3) - 1) < 0.03
    nn.init.xavier_normal_(w, gain=2.0)
    assert abs(w.array.std() / (2 * math.sqrt(2 / 500)) - 1) < 0.02
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    bound = math.sqrt(2) * math.sqrt(3 / 300)
    assert np.abs(w.array).max() <= bound and abs(w.array.var() / (bound ** 2 / 3) - 1) < 0.03
    nn.init.normal_(w, mean=1.0, std=0.5)
    assert abs(w.array.mean() - 1) < 0.01 and abs(w.array.std() - 0.5) < 0.01
    assert nn.init.zeros_(w) is w and not w.array.any()
    nn.init.ones_(w)
    assert (w.array == 1).all() and w.dtype == np.float32
    with pytest.raises(ValueError, match="at least 2 dims"):
        nn.init.xavier_uniform_(nn.Parameter(np.zeros(3)))


def test_parameters_to_vector_and_back_as_torch():
    model = nn.Linear(3, 2)
    before = [p.numpy().copy() for p in model.parameters()]
    vec = nn.utils.parameters_to_vector(model.parameters())
    np.testing.assert_array_equal(vec.numpy(), np.concatenate([b.ravel() for b in before]))
    (vec * vec).sum().backward()  # on the graph, as torch's cat
    np.testing.assert_array_equal(model.weight.grad.numpy(), 2 * before[0])
    new = Tensor(np.arange(9.0))  # float64 and longer than needed: as torch, the tail is unused
    nn.utils.vector_to_parameters(new, model.parameters())
    np.testing.assert_array_equal(model.weight.numpy(), [[0, 1, 2], [3, 4, 5]])
    assert model.bias.dtype == np.float64 and np.shares_memory(model.bias.array, new.array)
    with pytest.raises(RuntimeError, match="vector of 5 elements is too short"):
        nn.utils.vector_to_parameters(Tensor(np.zeros(5)), model.parameters())
    with pytest.raises(TypeError, match="expected a Tensor, got list"):
        nn.utils.vector_to_parameters([0.0] * 8, model.parameters())
    with pytest.raises(RuntimeError, match=r"1-D vector, got shape \(2, 4\)"):
        nn.utils.vector_to_parameters(Tensor(np.zeros((2, 4))), model.parameters())


def _backward_hooked_run(lib, x_requires_grad):
    """Full backward hooks and pre-hooks on a Sequential and its layers, two of which replace
    gradients; returns what each hook saw, then the first layer's weight gradient."""
    lib.manual_seed(0)
    nn_lib = lib.nn
    model = nn_lib.Sequential(nn_lib.Linear(3, 4), nn_lib.ReLU(), nn_lib.Linear(4, 2))
    with lib.no_grad():
        for p in model.parameters():
            p.copy_(lib.tensor(np.linspace(-1, 1, p.numel()).reshape(tuple(p.shape))).float())
    seen = []

    def values(grads):
        return tuple(None if g is None else g.detach().numpy().round(5).tolist() for g in grads)
    model.register_full_backward_hook(lambda m, gi, go: seen.append(("all", values(gi),
                                                                      values(go))))
    model[0].register_full_backward_hook(lambda m, gi, go: seen.append(("first", values(gi),
                                                                         values(go))))
    model[2].register_full_backward_pre_hook(
        lambda m, go: seen.append(("last, pre", values(go))) or (go[0] * 2,))
    handle = model[2].register_full_backward_hook(lambda m, gi, go: (gi[0] * 3,))
    x = lib.tensor(np.linspace(0, 1, 6).reshape(2, 3)).float().requires_grad_(x_requires_grad)
    model(x).sum().backward()
    seen.append(model[0].weight.grad.numpy().round(4).tolist())
    handle.remove()
    model.zero_grad()
    model(x).sum().backward()
    seen.append(model[0].weight.grad.numpy().round(4).tolist())  # x2 (the pre-hook), not x6
    return seen[:3] + seen[3:4] + seen[-1:]


@pytest.mark.parametrize("x_requires_grad", [True, False])
def test_full_backward_hooks_see_and_replace_gradients_as_torch(x_requires_grad):
    # before: Module had no register_full_backward_hook / register_full_backward_pre_hook
    seen = _backward_hooked_run(tg, x_requires_grad)
    # with no input requiring grad, a full hook fires once its outputs' gradients are known
    order = ["last, pre", "first", "all"] if x_requires_grad else ["all", "last, pre", "first"]
    assert [entry[0] for entry in seen[:3]] == order
    first_grad_input = seen[order.index("first")][1]
    assert (first_grad_input == (None,)) == (not x_requires_grad)
    np.testing.assert_allclose(seen[3], 3 * np.array(seen[4]), rtol=1e-3)  # a replaced grad_input
    torch = pytest.importorskip("torch")
    import warnings
    with warnings.catch_warnings():  # torch warns when no input requires grad
        warnings.simplefilter("ignore")
        assert _backward_hooked_run(torch, x_requires_grad) == seen


class _TwoOutputs(nn.Module):
    def forward(self, a, b, scale=1.0):
        return a * b * scale, a + b


def test_full_backward_hook_of_several_inputs_and_outputs_as_torch():
    def run(lib, module):
        seen = []
        module.register_full_backward_hook(lambda m, gi, go: seen.append(
            ([None if g is None else g.tolist() for g in gi],
             [None if g is None else g.tolist() for g in go])))
        a = lib.tensor([1.0, 2.0], requires_grad=True)
        first, _ = module(a, lib.tensor([3.0, 4.0]), scale=2.0)  # b needs no grad: zeros
        first.sum().backward()  # the second output gets no gradient: None
        return seen
    ours = run(tg, _TwoOutputs())
    assert ours == [([[6.0, 8.0], [0.0, 0.0]], [[1.0, 1.0], None])]
    torch = pytest.importorskip("torch")

    class TwoOutputs(torch.nn.Module):
        forward = _TwoOutputs.forward
    assert run(torch, TwoOutputs()) == ours


def test_backward_hook_returning_the_wrong_number_of_gradients_raises():
    layer = nn.Linear(3, 2)
    layer.register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    with pytest.raises(RuntimeError, match="invalid number of grad_input, got 2, but expected 1"):
        layer(Tensor(np.ones((1, 3), np.float32), requires_grad=True)).sum().backward()
