"""torch.nn's recurrent layers: RNN, LSTM, GRU and their cells, with torch's weights and layout.

Parameters are torch's (`weight_ih_l0` (G, input), `weight_hh_l0` (G, H), `bias_ih_l0`,
`bias_hh_l0`, `..._reverse` for the second direction; gates stacked as torch stacks them: LSTM
i, f, g, o; GRU r, z, n), so `load_state_dict(torch_model.state_dict())` works.

One layer in one direction is two nodes: the input projection of every step at once
(`F.linear`, one GEMM) and `Recurrence`, the time loop (`kernels.rnn_forward` / `rnn_backward`:
one Numba kernel call for the whole sequence, or for big matrices per step one OpenBLAS GEMM
`h @ W_hh^T` and a Numba cell kernel; numpy twins beside them), with W_hh's gradient as one GEMM
over all steps at the end.

Variable lengths: `lengths` (B,) (our keyword), or a PackedSequence from
`nn.utils.rnn.pack_padded_sequence`; a sequence's steps past its length leave its state
unchanged and give zero outputs, so h_n is the state at its last real step (the reverse
direction starts at its last real step), as torch's packed sequences.
"""
import math
import numbers
import warnings

import numpy as np

from tinygrad_tf import Tensor, cat, kernels, stack, where
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf.device import check as _check_device

from . import functional as F
from . import init
from .layers import _empty
from .module import Module
from .packing import PackedSequence, pack_like, pad_packed_sequence

_MODES = kernels._recurrent.MODES


class Recurrence(ArrayFunction):
    """One recurrent layer in one direction over (T, B, G) input projections `xw`.

    Inputs: xw, h0 (B, H), w_hh (G, H), then b_hh (G,) if has_bias, then c0 (B, H) for the LSTM.
    Output: one (T + 1, B, H) array, (T + 2, B, H) for the LSTM: the T outputs, then h_n, then
    c_n (one output array, so h_n and c_n are slices of it on the graph).
    """

    @staticmethod
    def forward(ctx, xw, h0, w_hh, *rest, mode, reverse, active, has_bias):
        b_hh = rest[0] if has_bias else None
        c0 = rest[-1] if mode == 2 else None
        result, h_prev, c_prev, saved = kernels.rnn_forward(mode, xw, w_hh, b_hh, h0, c0,
                                                            active, reverse)
        ctx.save_for_backward(w_hh, h_prev, c_prev, saved, active)
        ctx.mode, ctx.reverse, ctx.has_bias = mode, reverse, has_bias
        return result

    @staticmethod
    def backward(ctx, grad):
        w_hh, h_prev, c_prev, saved, active = ctx.saved_tensors
        d_xw, d_hh, dh0, dc0 = kernels.rnn_backward(ctx.mode, grad, w_hh, h_prev, c_prev, saved,
                                                    active, ctx.reverse)
        # W_hh's gradient: every step's d_hh against its input state, one GEMM
        flat_d_hh = d_hh.reshape(-1, d_hh.shape[-1])
        grads = [d_xw, dh0, kernels.matmul(flat_d_hh.T, h_prev.reshape(-1, h_prev.shape[-1]))]
        if ctx.has_bias:
            grads.append(flat_d_hh.sum(axis=0))
        if ctx.mode == 2:
            grads.append(dc0)
        return tuple(grads)

    @staticmethod
    def composed(ctx, xw, h, w_hh, *rest):
        """The same loop from differentiable Tensor ops (the create_graph path,
        graph_backward.py): kernels/recurrent.py's formulas, step by step."""
        active = ctx.saved_tensors[4]
        mode, steps, width = ctx.mode, xw.shape[0], h.shape[1]
        b_hh = rest[0] if ctx.has_bias else None
        c = rest[-1] if mode == 2 else None
        outputs = [None] * steps
        for t in (range(steps - 1, -1, -1) if ctx.reverse else range(steps)):
            hh = h.matmul(w_hh.T)
            if b_hh is not None:
                hh = hh + b_hh
            h_new, c_new = _cell_composed(mode, xw[t], hh, h, c, width)
            if active is not None:
                keep = active[t][:, None]
                h_new = where(keep, h_new, h)
                c_new = None if c is None else where(keep, c_new, c)
                outputs[t] = h_new * keep
            else:
                outputs[t] = h_new
            h, c = h_new, c_new
        return stack(outputs + [h] + ([c] if mode == 2 else []))


def _cell_composed(mode, xw, hh, h, c, width):
    gate = lambda x, k: x[:, k * width:(k + 1) * width]  # noqa: E731
    if mode <= 1:
        pre = xw + hh
        return (pre.tanh() if mode == 0 else pre.relu()), None
    if mode == 2:
        pre = xw + hh
        i, f, g, o = gate(pre, 0).sigmoid(), gate(pre, 1).sigmoid(), gate(pre, 2).tanh(), \
            gate(pre, 3).sigmoid()
        c_new = f * c + i * g
        return o * c_new.tanh(), c_new
    r = (gate(xw, 0) + gate(hh, 0)).sigmoid()
    z = (gate(xw, 1) + gate(hh, 1)).sigmoid()
    n = (gate(xw, 2) + r * gate(hh, 2)).tanh()
    return (1 - z) * n + z * h, None


def recurrence(xw, h0, w_hh, b_hh=None, c0=None, mode="GRU", reverse=False, active=None):
    """Run one layer in one direction: xw (T, B, G) input projections (x @ W_ih^T + b_ih), h0 (B,
    H), c0 (B, H) for "LSTM"; active (T, B) bool or None (steps inside each sequence). Returns
    (outputs (T, B, H), h_n, c_n or None)."""
    code = _MODES[mode]
    inputs = (xw, h0, w_hh) + (() if b_hh is None else (b_hh,)) + ((c0,) if code == 2 else ())
    result = Recurrence.apply(*inputs, mode=code, reverse=bool(reverse),
                              active=None if active is None else np.ascontiguousarray(active),
                              has_bias=b_hh is not None)
    steps = xw.shape[0]
    return result[:steps], result[steps], (result[steps + 1] if code == 2 else None)


def _gate_count(mode):
    return {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}[mode]


class RNNBase(Module):
    """What RNN, LSTM and GRU share: torch's parameters, argument checks and the layer loop."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        _check_device(device, name)
        if not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1 or \
                isinstance(dropout, bool):
            raise ValueError(f"{name}: dropout should be a number in range [0, 1] representing "
                             f"the probability of an element being zeroed, got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout option adds dropout after all but last recurrent "
                          f"layer, so non-zero dropout expects num_layers greater than 1, but "
                          f"got dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"{name}: hidden_size must be a positive integer, got "
                             f"{hidden_size!r}")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"{name}: num_layers must be a positive integer, got "
                             f"{num_layers!r}")
        if proj_size:
            raise NotImplementedError(f"{name}: proj_size (LSTM projections) is not implemented")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bidirectional, 0
        directions = 2 if bidirectional else 1
        gates = _gate_count(mode) * hidden_size
        self._flat_weights_names = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                shapes = {f"weight_ih_l{layer}{suffix}": (gates, layer_input),
                          f"weight_hh_l{layer}{suffix}": (gates, hidden_size)}
                if bias:
                    shapes[f"bias_ih_l{layer}{suffix}"] = (gates,)
                    shapes[f"bias_hh_l{layer}{suffix}"] = (gates,)
                for param_name, shape in shapes.items():
                    setattr(self, param_name, _empty(shape, dtype))
                    self._flat_weights_names.append(param_name)
        self.reset_parameters()

    def reset_parameters(self):
        """torch's: every weight and bias ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def flatten_parameters(self):
        """torch packs the weights for cuDNN here; nothing to do on the CPU."""

    @property
    def all_weights(self):
        per_direction = 4 if self.bias else 2
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i:i + per_direction]]
                for i in range(0, len(names), per_direction)]

    def _weights(self, layer, reverse):
        suffix = "_reverse" if reverse else ""
        get = lambda kind: getattr(self, f"{kind}_l{layer}{suffix}")  # noqa: E731
        if self.bias:
            return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")
        return get("weight_ih"), get("weight_hh"), None, None

    def _initial_state(self, hx, batch, dtype, unbatched, what="hx"):
        directions = 2 if self.bidirectional else 1
        expected = (self.num_layers * directions, batch, self.hidden_size)
        if hx is None:
            return Tensor(np.zeros(expected, dtype=dtype))
        if not isinstance(hx, Tensor):
            hx = Tensor(np.asarray(hx, dtype=dtype))
        if unbatched:
            if hx.ndim != 2:
                raise RuntimeError(f"{type(self).__name__}: for unbatched 2-D input, {what} "
                                   f"should also be 2-D but got {hx.ndim}-D tensor")
            hx = hx.unsqueeze(1)
        if tuple(hx.shape) != expected:
            raise RuntimeError(f"{type(self).__name__}: Expected hidden size {expected}, got "
                               f"{list(hx.shape)}")
        return hx

    def forward(self, input, hx=None, lengths=None):
        """input (T, B, input_size) ((B, T, ...) with batch_first, or unbatched (T, input_size)),
        or a PackedSequence. hx: h0 (num_layers * directions, B, H) ((h0, c0) for the LSTM),
        zeros by default. lengths (B,): our keyword for padded input of varying lengths.
        Returns (output, h_n) ((output, (h_n, c_n)) for the LSTM), as torch."""
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        if packed:
            template = input
            if lengths is not None:
                raise ValueError(f"{name}: pass lengths or a PackedSequence, not both")
            input, lengths = pad_packed_sequence(input)  # (T, B, *), original batch order
            batch_first = False
        else:
            batch_first = self.batch_first
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D tensor")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {input.shape[-1]}")
        unbatched = input.ndim == 2
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if batch_first else input)
        steps, batch = x.shape[0], x.shape[1]
        is_lstm = self.mode == "LSTM"
        if is_lstm:
            h0, c0 = (None, None) if hx is None else hx
            h0 = self._initial_state(h0, batch, x.dtype, unbatched)
            c0 = self._initial_state(c0, batch, x.dtype, unbatched)
        else:
            h0, c0 = self._initial_state(hx, batch, x.dtype, unbatched), None
        active = _active_steps(lengths, steps, batch, name)
        directions = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout and self.training:
                x = F.dropout(x, self.dropout, True)
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction == 1)
                out, h, c = recurrence(F.linear(x, w_ih, b_ih), h0[index], w_hh, b_hh,
                                       None if c0 is None else c0[index], self.mode,
                                       reverse=direction == 1, active=active)
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outputs[0] if directions == 1 else cat(outputs, dim=-1)
        h_n = stack(h_n)
        c_n = stack(c_n) if is_lstm else None
        if unbatched:
            x, h_n = x.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif packed:
            x = pack_like(x, template)  # the input's batch sizes and order, as torch
        elif batch_first:
            x = x.transpose(0, 1)
        return (x, (h_n, c_n)) if is_lstm else (x, h_n)

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            text += ", nonlinearity='relu'"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text


def _active_steps(lengths, steps, batch, op):
    """(T, B) bool, True where step t is inside sequence b, or None when every step is."""
    if lengths is None:
        return None
    lengths = np.asarray(lengths.array if isinstance(lengths, Tensor) else lengths)
    if lengths.shape != (batch,) or lengths.dtype.kind not in "iu":
        raise ValueError(f"{op}: lengths must be {batch} integers (one per sequence), got "
                         f"{lengths.dtype} of shape {lengths.shape}")
    if lengths.size and (lengths.min() < 1 or lengths.max() > steps):
        raise ValueError(f"{op}: lengths must be in [1, {steps}] (the padded length), got "
                         f"{lengths.tolist()}")
    if lengths.size and lengths.min() == steps:
        return None
    return np.arange(steps)[:, None] < lengths[None, :]


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu).

    torch's signature: RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory: gates i, f, g, o; c_t = f c_{t-1} + i g, h_t = o tanh(c_t).
    forward(input, (h0, c0)) -> (output, (h_n, c_n))."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit: r, z gates; n = tanh(W_in x + b_in + r (W_hn h + b_hn));
    h_t = (1 - z) n + z h_{t-1}."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device=device, dtype=dtype)


# ---------------------------------------------------------------------------- cells

class RNNCellBase(Module):
    """One step of a recurrent layer: weight_ih (G, input), weight_hh (G, H), bias_ih, bias_hh."""

    def __init__(self, mode, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        _check_device(device, type(self).__name__)
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.bias = bias
        gates = _gate_count(mode) * hidden_size
        self.weight_ih = _empty((gates, input_size), dtype)
        self.weight_hh = _empty((gates, hidden_size), dtype)
        if bias:
            self.bias_ih = _empty((gates,), dtype)
            self.bias_hh = _empty((gates,), dtype)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    reset_parameters = RNNBase.reset_parameters

    def _state(self, hx, batch, dtype, unbatched):
        if hx is None:
            return Tensor(np.zeros((batch, self.hidden_size), dtype=dtype))
        hx = hx if isinstance(hx, Tensor) else Tensor(np.asarray(hx, dtype=dtype))
        hx = hx.unsqueeze(0) if unbatched else hx
        if tuple(hx.shape) != (batch, self.hidden_size):
            raise RuntimeError(f"{type(self).__name__}: hidden state of shape "
                               f"{tuple(hx.shape)}, expected {(batch, self.hidden_size)}")
        return hx

    def _step(self, input, hx, c=None):
        name = type(self).__name__
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: Expected input of shape (batch, {self.input_size}) or "
                             f"({self.input_size},), got {tuple(input.shape)}")
        unbatched = input.ndim == 1
        x = input.unsqueeze(0) if unbatched else input
        h0 = self._state(hx, x.shape[0], x.dtype, unbatched)
        c0 = self._state(c, x.shape[0], x.dtype, unbatched) if self.mode == "LSTM" else None
        xw = F.linear(x, self.weight_ih, self.bias_ih).unsqueeze(0)  # one step: (1, B, G)
        _, h, c = recurrence(xw, h0, self.weight_hh, self.bias_hh, c0, self.mode)
        if unbatched:
            h = h.squeeze(0)
            c = None if c is None else c.squeeze(0)
        return h, c

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        if self.mode == "RNN_RELU":
            text += ", nonlinearity='relu'"
        return text


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: Unknown nonlinearity: {nonlinearity}")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        return self._step(input, hx)[0]


class LSTMCell(RNNCellBase):
    """One LSTM step: forward(input, (h, c)) -> (h', c')."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        h, c = (None, None) if hx is None else hx
        return self._step(input, h, c)


class GRUCell(RNNCellBase):
    """One GRU step: forward(input, h) -> h'."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        return self._step(input, hx)[0]
