"""nn.RNN / LSTM / GRU and their cells: gradcheck in float64 on Hypothesis shapes, the loop kernel
against its numpy twin (against torch: test_nn_rnn_torch.py)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_tf as tg
from tinygrad_tf import Tensor, gradcheck, kernels, nn
from tinygrad_tf import testing as tt
from tinygrad_tf.kernels import recurrent
from tinygrad_tf.nn.rnn import recurrence
from tinygrad_tf.nn.utils import rnn as rnn_utils

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]


# ---------------------------------------------------------------------------- the loop kernel

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variable", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_sequence_kernel_matches_its_numpy_twin(mode, variable, dtype):
    """Forward and backward of the one-call Numba loop against the numpy loop, both directions,
    with and without bias and variable lengths."""
    rng = np.random.default_rng(0)
    code = recurrent.MODES[mode]
    steps, batch, width = 4, 3, 5
    gates = recurrent.GATES[code] * width
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    active = None
    if variable:
        active = np.arange(steps)[:, None] < np.array([2, 4, 1])[None, :]
    for reverse, bias in ((False, True), (True, False)):
        xw = rng.standard_normal((steps, batch, gates)).astype(dtype)
        w_hh = (rng.standard_normal((gates, width)) * 0.5).astype(dtype)
        b_hh = rng.standard_normal(gates).astype(dtype) if bias else None
        h0 = rng.standard_normal((batch, width)).astype(dtype)
        c0 = rng.standard_normal((batch, width)).astype(dtype) if code == 2 else None
        twin = recurrent.rnn_forward_numpy(code, xw, w_hh, b_hh, h0, c0, active, reverse)
        fast = recurrent.rnn_forward_numba(code, xw, w_hh, b_hh, h0, c0, active, reverse)
        keep = slice(None) if active is None else active  # saved is unused on inactive rows
        for index, (a, b) in enumerate(zip(twin, fast)):
            if a is None:
                assert b is None
                continue
            assert a.dtype == b.dtype == dtype
            np.testing.assert_allclose(b[keep] if index == 3 else b, a[keep] if index == 3 else a,
                                       **tol)
        grad = rng.standard_normal(twin[0].shape).astype(dtype)
        twin_back = recurrent.rnn_backward_numpy(code, grad, w_hh, *twin[1:], active, reverse)
        fast_back = recurrent.rnn_backward_numba(code, grad, w_hh, *twin[1:], active, reverse)
        for a, b in zip(twin_back, fast_back):
            if a is None:
                assert b is None
            else:
                assert a.dtype == b.dtype == dtype
                np.testing.assert_allclose(b, a, **tol)


def test_sigmoid_twin_is_finite_far_out():
    values = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    out = recurrent._sigmoid_numpy(values)
    assert np.all(np.isfinite(out)) and out[0] == 0 and out[-1] == 1


# ---------------------------------------------------------------------------- gradcheck

@settings(max_examples=8)
@given(st.data(), st.sampled_from(["RNN_TANH", "LSTM", "GRU"]), st.integers(1, 4),
       st.integers(1, 3), st.integers(1, 3), st.booleans(), st.booleans(), st.booleans())
def test_recurrence_gradcheck(data, mode, steps, batch, width, reverse, bias, variable):
    gates = recurrent.GATES[recurrent.MODES[mode]] * width
    xw = data.draw(tt.tensors(shape=(steps, batch, gates), min_value=-1.5, max_value=1.5))
    h0 = data.draw(tt.tensors(shape=(batch, width), min_value=-1, max_value=1))
    w_hh = data.draw(tt.tensors(shape=(gates, width), min_value=-1, max_value=1))
    inputs = [xw, h0, w_hh]
    if bias:
        inputs.append(data.draw(tt.tensors(shape=(gates,), min_value=-1, max_value=1)))
    if mode == "LSTM":
        inputs.append(data.draw(tt.tensors(shape=(batch, width), min_value=-1, max_value=1)))
    active = None
    if variable:
        lengths = np.array(data.draw(st.lists(st.integers(1, steps), min_size=batch,
                                              max_size=batch)))
        active = np.arange(steps)[:, None] < lengths[None, :]

    def fn(xw, h0, w_hh, *rest):
        b_hh = rest[0] if bias else None
        c0 = rest[-1] if mode == "LSTM" else None
        out, h, c = recurrence(xw, h0, w_hh, b_hh, c0, mode, reverse, active)
        total = (out * out).sum() + (h * 1.5).sum()
        return total if c is None else total + (c * c).sum()

    for kernel_set in ("numpy", "numba"):
        with kernels.use(kernel_set):
            assert gradcheck(fn, *inputs)


def test_module_gradcheck_bidirectional_two_layers():
    tg.manual_seed(0)
    model = nn.GRU(2, 3, num_layers=2, bidirectional=True, dtype=np.float64)
    x = Tensor(np.random.default_rng(0).standard_normal((3, 2, 2)), requires_grad=True)
    h0 = Tensor(np.random.default_rng(1).standard_normal((4, 2, 3)), requires_grad=True)
    assert gradcheck(lambda x, h0: model(x, h0)[0].sum() + model(x, h0)[1].sum(), x, h0)


# ---------------------------------------------------------------------------- module behaviour

def test_parameter_names_shapes_and_init_bounds():
    model = nn.LSTM(3, 4, num_layers=2, bidirectional=True, bias=True)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert list(shapes)[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                "weight_ih_l0_reverse"]
    assert shapes["weight_ih_l1"] == (16, 8) and shapes["weight_hh_l1_reverse"] == (16, 4)
    assert all(np.abs(p.array).max() <= 0.5 for p in model.parameters())
    assert [n for n, _ in nn.GRU(3, 4, bias=False).named_parameters()] == ["weight_ih_l0",
                                                                             "weight_hh_l0"]
    assert len(model.all_weights) == 4 and len(model.all_weights[0]) == 4


def test_lengths_freeze_state_and_zero_outputs():
    tg.manual_seed(0)
    model = nn.GRU(2, 3, batch_first=True, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 4, 2))
    out, h_n = model(Tensor(x), lengths=[2, 4])
    short, h_short = model(Tensor(x[:1, :2]))
    np.testing.assert_allclose(out.array[0, :2], short.array[0], rtol=1e-12)
    np.testing.assert_allclose(h_n.array[0, 0], h_short.array[0, 0], rtol=1e-12)
    assert not out.array[0, 2:].any()


def test_dropout_between_layers_only_in_training():
    tg.manual_seed(0)
    model = nn.LSTM(2, 3, num_layers=2, dropout=0.5, dtype=np.float64)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 2, 2)))
    model.eval()
    a, b = model(x)[0].array, model(x)[0].array
    np.testing.assert_array_equal(a, b)
    model.train()
    assert not np.allclose(model(x)[0].array, a)
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.GRU(2, 3, dropout=0.2)


def test_errors_name_the_problem():
    model = nn.GRU(3, 4)
    with pytest.raises(RuntimeError, match="input_size. Expected 3, got 5"):
        model(Tensor(np.zeros((2, 1, 5), np.float32)))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 4\)"):
        model(Tensor(np.zeros((2, 2, 3), np.float32)), Tensor(np.zeros((1, 3, 4), np.float32)))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"lengths must be in \[1, 2\]"):
        model(Tensor(np.zeros((2, 2, 3), np.float32)), lengths=[3, 1])
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        rnn_utils.pack_padded_sequence(Tensor(np.zeros((3, 2, 1))), [1, 3])
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)


def test_pad_sequence_and_pack_sequence_round_trip():
    rng = np.random.default_rng(0)
    seqs = [Tensor(rng.standard_normal((n, 2))) for n in (3, 1, 2)]
    padded = rnn_utils.pad_sequence(seqs, batch_first=True, padding_value=-1.0)
    assert padded.shape == (3, 3, 2) and (padded.array[1, 1:] == -1).all()
    packed = rnn_utils.pack_sequence(seqs, enforce_sorted=False)
    back, lengths = rnn_utils.pad_packed_sequence(packed, batch_first=True, total_length=4)
    assert back.shape == (3, 4, 2) and lengths.array.tolist() == [3, 1, 2]
    np.testing.assert_array_equal(back.array[:, :3], np.where(padded.array == -1, 0,
                                                             padded.array))
