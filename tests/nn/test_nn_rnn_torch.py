"""nn.RNN / LSTM / GRU and their cells against torch: state_dict, outputs, h_n/c_n and gradients
(the rest, without torch: test_nn_rnn.py)."""
import numpy as np
import pytest

from tinygrad_tf import Tensor, nn
from tinygrad_tf.nn.utils import rnn as rnn_utils

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]

torch = pytest.importorskip("torch")  # a module of its own: skipping it skips nothing else

TORCH_CLASSES = {"RNN_TANH": ("RNN", {}), "RNN_RELU": ("RNN", {"nonlinearity": "relu"}),
                 "LSTM": ("LSTM", {}), "GRU": ("GRU", {})}


def _pair(mode, *args, **kwargs):
    name, extra = TORCH_CLASSES[mode]
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(*args, **extra, **kwargs, dtype=torch.float64)
    ours = getattr(nn, name)(*args, **extra, **kwargs, dtype=np.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _close(ours, theirs):
    np.testing.assert_allclose(ours.array, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)


def _compare(ours, theirs, o_in, t_in, o_out, t_out, rng):
    """Outputs equal; then grads of a random projection of everything returned."""
    o_flat, t_flat = _flatten(o_out), _flatten(t_out)
    o_loss = t_loss = 0
    for a, b in zip(o_flat, t_flat):
        _close(a, b)
        weights = rng.standard_normal(a.shape)
        o_loss = o_loss + (a * Tensor(weights)).sum()
        t_loss = t_loss + (b * torch.tensor(weights)).sum()
    o_loss.backward()
    t_loss.backward()
    for a, b in zip(o_in, t_in):
        _close(a.grad, b.grad)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.array, theirs_params[name].grad.numpy(), rtol=1e-8,
                                   atol=1e-11, err_msg=name)


def _flatten(value):
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flatten(v)]
    if isinstance(value, rnn_utils.PackedSequence):
        return [value.data]
    if type(value).__name__ == "PackedSequence":
        return [value.data]
    return [value]


@pytest.mark.parametrize("options", [dict(), dict(num_layers=2, bidirectional=True),
                                     dict(batch_first=True, bias=False),
                                     dict(num_layers=2, batch_first=True, initial=True)])
@pytest.mark.parametrize("mode", MODES)
def test_layers_match_torch(mode, options):
    rng = np.random.default_rng(0)
    options = dict(options)
    initial = options.pop("initial", False)
    ours, theirs = _pair(mode, 3, 4, **options)
    batch_first = options.get("batch_first", False)
    x = rng.standard_normal((2, 5, 3) if batch_first else (5, 2, 3))
    o_in, t_in = [Tensor(x, requires_grad=True)], [torch.tensor(x, requires_grad=True)]
    if initial:
        layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
        for _ in range(2 if mode == "LSTM" else 1):
            h = rng.standard_normal((layers, 2, 4))
            o_in.append(Tensor(h, requires_grad=True))
            t_in.append(torch.tensor(h, requires_grad=True))
        o_state = tuple(o_in[1:]) if mode == "LSTM" else o_in[1]
        t_state = tuple(t_in[1:]) if mode == "LSTM" else t_in[1]
        o_out, t_out = ours(o_in[0], o_state), theirs(t_in[0], t_state)
    else:
        o_out, t_out = ours(o_in[0]), theirs(t_in[0])
    _compare(ours, theirs, o_in, t_in, o_out, t_out, rng)


@pytest.mark.parametrize("mode", MODES)
def test_packed_variable_lengths_match_torch(mode):
    rng = np.random.default_rng(1)
    ours, theirs = _pair(mode, 3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x = rng.standard_normal((3, 5, 3))
    lengths = [2, 5, 3]
    o_x, t_x = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    o_packed = rnn_utils.pack_padded_sequence(o_x, lengths, batch_first=True,
                                              enforce_sorted=False)
    t_packed = torch.nn.utils.rnn.pack_padded_sequence(t_x, torch.tensor(lengths),
                                                       batch_first=True, enforce_sorted=False)
    _close(o_packed.data, t_packed.data)
    assert o_packed.batch_sizes.array.tolist() == t_packed.batch_sizes.tolist()
    assert o_packed.sorted_indices.array.tolist() == t_packed.sorted_indices.tolist()
    o_out, o_h = ours(o_packed)
    t_out, t_h = theirs(t_packed)
    o_pad, o_len = rnn_utils.pad_packed_sequence(o_out, batch_first=True)
    t_pad, t_len = torch.nn.utils.rnn.pad_packed_sequence(t_out, batch_first=True)
    assert o_len.array.tolist() == t_len.tolist()
    _compare(ours, theirs, [o_x], [t_x], (o_pad, o_h), (t_pad, t_h), rng)
    ours.zero_grad()
    by_lengths = ours(Tensor(x), lengths=lengths)[0]  # our keyword: the same numbers
    _close(by_lengths, t_pad)
    assert o_out.sorted_indices.array.tolist() == t_out.sorted_indices.tolist()
    # already sorted (enforce_sorted=True): no permutation, in and out, as torch
    o_sorted = ours(rnn_utils.pack_padded_sequence(Tensor(x[[1, 2, 0]]), [5, 3, 2],
                                                   batch_first=True))[0]
    t_sorted = theirs(torch.nn.utils.rnn.pack_padded_sequence(
        torch.tensor(x[[1, 2, 0]]), torch.tensor([5, 3, 2]), batch_first=True))[0]
    assert o_sorted.sorted_indices is None and t_sorted.sorted_indices is None
    _close(o_sorted.data, t_sorted.data)


@pytest.mark.parametrize("mode", MODES)
def test_cells_match_torch(mode):
    rng = np.random.default_rng(2)
    name, extra = TORCH_CLASSES[mode]
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name + "Cell")(3, 4, **extra, dtype=torch.float64)
    ours = getattr(nn, name + "Cell")(3, 4, **extra, dtype=np.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    o_in = [Tensor(v, requires_grad=True) for v in (x, h, c)]
    t_in = [torch.tensor(v, requires_grad=True) for v in (x, h, c)]
    if mode == "LSTM":
        o_out, t_out = ours(o_in[0], tuple(o_in[1:])), theirs(t_in[0], tuple(t_in[1:]))
    else:
        o_in, t_in = o_in[:2], t_in[:2]
        o_out, t_out = ours(*o_in), theirs(*t_in)
    _compare(ours, theirs, o_in, t_in, o_out, t_out, rng)
    unbatched = ours(Tensor(x[0]))  # no state: zeros, as torch
    expected = theirs(torch.tensor(x[0]))
    for a, b in zip(_flatten(unbatched), _flatten(expected)):
        _close(a, b)


def test_unbatched_lstm_matches_torch():
    rng = np.random.default_rng(3)
    ours, theirs = _pair("LSTM", 3, 4, num_layers=2)
    x = rng.standard_normal((5, 3))
    h, c = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    o_out = ours(Tensor(x), (Tensor(h), Tensor(c)))
    t_out = theirs(torch.tensor(x), (torch.tensor(h), torch.tensor(c)))
    for a, b in zip(_flatten(o_out), _flatten(t_out)):
        assert a.shape == tuple(b.shape)
        _close(a, b)
