"""nn.Transformer and its parts against torch.nn's: torch's state_dict loads, and in float64 the
outputs and every gradient agree, over mask kinds, batch_first, norm_first, activations, bias."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor, nn

torch = pytest.importorskip("torch")
# torch warns about its nested-tensor fast path and mixed mask types; neither concerns us
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

D, HEADS, FF, S, T, N = 8, 2, 12, 5, 4, 3


def _to_torch(value):
    if value is None or isinstance(value, bool):
        return value
    return torch.tensor(value)


def _pair_model(ours_cls, torch_cls, *args, **kwargs):
    """torch's module (float64, dropout 0) and ours with torch's state_dict loaded."""
    torch.manual_seed(0)
    torch_kwargs = {k: torch.nn.functional.gelu if k == "activation" and v == "fn_gelu"
                    else v for k, v in kwargs.items()}
    ours_kwargs = {k: nn.functional.gelu if k == "activation" and v == "fn_gelu" else v
                   for k, v in kwargs.items()}
    theirs = torch_cls(*args, dropout=0.0, dtype=torch.float64, **torch_kwargs)
    ours = ours_cls(*args, dropout=0.0, dtype=np.float64, **ours_kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _inputs(rng, *shapes):
    values = [rng.standard_normal(shape) for shape in shapes]
    return ([Tensor(v, requires_grad=True) for v in values],
            [torch.tensor(v, requires_grad=True) for v in values])


def _check(ours_model, theirs_model, ours_inputs, theirs_inputs, ours_out, theirs_out, rng):
    np.testing.assert_allclose(ours_out.array, theirs_out.detach().numpy(), rtol=1e-9, atol=1e-11)
    upstream = rng.standard_normal(ours_out.shape)
    (ours_out * Tensor(upstream)).sum().backward()
    (theirs_out * torch.tensor(upstream)).sum().backward()
    for a, b in zip(ours_inputs, theirs_inputs):
        np.testing.assert_allclose(a.grad.array, b.grad.numpy(), rtol=1e-8, atol=1e-10)
    theirs_params = dict(theirs_model.named_parameters())
    for name, p in ours_model.named_parameters():
        np.testing.assert_allclose(p.grad.array, theirs_params[name].grad.numpy(), rtol=1e-8,
                                   atol=1e-10, err_msg=name)


def _masks(kind, rng, batch_first):
    """(ours kwargs, torch kwargs) for Transformer.forward."""
    kw = {}
    if kind in ("causal", "all"):
        kw["tgt_mask"] = nn.Transformer.generate_square_subsequent_mask(T, dtype=np.float64).array
    if kind in ("bool_padding", "all"):
        pad = np.zeros((N, S), dtype=bool)
        pad[0, -2:] = pad[2, -1] = True
        kw["src_key_padding_mask"] = pad
        kw["memory_key_padding_mask"] = pad
        tpad = np.zeros((N, T), dtype=bool)
        tpad[1, -1] = True
        kw["tgt_key_padding_mask"] = tpad
    if kind == "float_padding":
        pad = np.zeros((N, S))
        pad[1, -2:] = -np.inf
        pad[2, 0] = -1.5
        kw["src_key_padding_mask"] = pad
    if kind in ("memory_mask", "all"):
        kw["memory_mask"] = rng.random((T, S)) < 0.3 if kind == "all" else \
            rng.standard_normal((T, S))
        if kind == "all":
            kw["memory_mask"][:, 1] = False  # every query keeps a key
            kw["src_mask"] = np.triu(np.ones((S, S), dtype=bool), k=2)
    if kind == "bool_causal_hint":
        kw["tgt_mask"] = np.triu(np.ones((T, T), dtype=bool), k=1)
        kw["tgt_is_causal"] = True
    return kw, {k: _to_torch(v) for k, v in kw.items()}


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["none", "causal", "bool_padding", "float_padding",
                                  "memory_mask", "all", "bool_causal_hint"])
def test_transformer_matches_torch(kind, batch_first):
    rng = np.random.default_rng(1)
    ours, theirs = _pair_model(nn.Transformer, torch.nn.Transformer, D, HEADS, 2, 2, FF,
                               batch_first=batch_first)
    shape = (lambda L: (N, L, D)) if batch_first else (lambda L: (L, N, D))
    (src, tgt), (tsrc, ttgt) = _inputs(rng, shape(S), shape(T))
    ours_kw, torch_kw = _masks(kind, rng, batch_first)
    _check(ours, theirs, (src, tgt), (tsrc, ttgt), ours(src, tgt, **ours_kw),
           theirs(tsrc, ttgt, **torch_kw), rng)


@pytest.mark.parametrize("options", [dict(norm_first=True), dict(activation="gelu"),
                                     dict(activation="fn_gelu", norm_first=True),
                                     dict(bias=False), dict(bias=False, norm_first=True),
                                     dict(layer_norm_eps=1e-3, batch_first=True)])
def test_transformer_options_match_torch(options):
    rng = np.random.default_rng(2)
    ours, theirs = _pair_model(nn.Transformer, torch.nn.Transformer, D, HEADS, 1, 2, FF,
                               **options)
    bf = options.get("batch_first", False)
    (src, tgt), (tsrc, ttgt) = _inputs(rng, (N, S, D) if bf else (S, N, D),
                                       (N, T, D) if bf else (T, N, D))
    ours_kw, torch_kw = _masks("all", rng, bf)
    _check(ours, theirs, (src, tgt), (tsrc, ttgt), ours(src, tgt, **ours_kw),
           theirs(tsrc, ttgt, **torch_kw), rng)


def test_callable_module_activation_matches_torch():
    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    theirs = torch.nn.TransformerEncoderLayer(D, HEADS, FF, 0.0, torch.nn.Tanh(),
                                              dtype=torch.float64)
    ours = nn.TransformerEncoderLayer(D, HEADS, FF, 0.0, nn.Tanh(), dtype=np.float64)
    ours.load_state_dict(theirs.state_dict())
    (src,), (tsrc,) = _inputs(rng, (S, N, D))
    _check(ours, theirs, (src,), (tsrc,), ours(src), theirs(tsrc), rng)


def test_unbatched_encoder_and_decoder_match_torch():
    rng = np.random.default_rng(4)
    ours, theirs = _pair_model(nn.Transformer, torch.nn.Transformer, D, HEADS, 1, 1, FF)
    (src, tgt), (tsrc, ttgt) = _inputs(rng, (S, D), (T, D))
    pad = np.array([False] * (S - 1) + [True])
    mask = nn.Transformer.generate_square_subsequent_mask(T, dtype=np.float64)
    out = ours(src, tgt, tgt_mask=mask, src_key_padding_mask=pad, memory_key_padding_mask=pad)
    expected = theirs(tsrc, ttgt, tgt_mask=torch.tensor(mask.array),
                      src_key_padding_mask=torch.tensor(pad),
                      memory_key_padding_mask=torch.tensor(pad))
    _check(ours, theirs, (src, tgt), (tsrc, ttgt), out, expected, rng)


def test_encoder_stack_in_eval_without_grad_zeroes_padding_as_torch():
    """torch's inference fast path returns zeros (then the final norm) at padded positions."""
    rng = np.random.default_rng(5)
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(D, HEADS, FF, 0.1, batch_first=True,
                                             dtype=torch.float64)
    theirs = torch.nn.TransformerEncoder(layer, 2, torch.nn.LayerNorm(D, dtype=torch.float64))
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, HEADS, FF, 0.1, batch_first=True,
                                                            dtype=np.float64), 2,
                                 nn.LayerNorm(D, dtype=np.float64))
    ours.load_state_dict(theirs.state_dict())
    ours.eval(), theirs.eval()
    src = rng.standard_normal((N, S, D))
    pad = np.zeros((N, S), dtype=bool)
    pad[0, -2:] = True
    with torch.no_grad():
        expected = theirs(torch.tensor(src), src_key_padding_mask=torch.tensor(pad)).numpy()
    with tg.no_grad():
        out = ours(Tensor(src), src_key_padding_mask=pad)
    np.testing.assert_allclose(out.array, expected, rtol=1e-9, atol=1e-11)


def test_generate_square_subsequent_mask_is_torchs():
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    expected = torch.nn.Transformer.generate_square_subsequent_mask(4)
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask.array, expected.numpy())


def test_is_causal_without_a_mask_raises_as_torch():
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, HEADS, FF, 0.0), 1)
    with pytest.raises(RuntimeError, match="need attn_mask if specifying the is_causal hint"):
        encoder(Tensor(np.zeros((S, N, D), np.float32)), is_causal=True)


def test_constructor_errors():
    with pytest.raises(RuntimeError, match="relu/gelu"):
        nn.TransformerEncoderLayer(D, HEADS, activation="tanh")
    with pytest.raises(ValueError, match="divisible"):
        nn.TransformerEncoderLayer(6, 4)
    model = nn.Transformer(D, HEADS, 1, 1, FF)
    with pytest.raises(RuntimeError, match="batch number"):
        model(Tensor(np.zeros((S, 2, D), np.float32)), Tensor(np.zeros((T, 3, D), np.float32)))
    with pytest.raises(RuntimeError, match="d_model"):
        model(Tensor(np.zeros((S, 2, D + 1), np.float32)), Tensor(np.zeros((T, 2, D), np.float32)))


def test_fresh_transformer_init_statistics_match_torch():
    """xavier on every matrix, as torch's _reset_parameters: same bounds, same zero biases."""
    model = nn.Transformer(16, 4, 1, 1, 32)
    weight = model.encoder.layers[0].linear1.weight.array
    bound = np.sqrt(6 / (16 + 32))
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.8 * bound
    assert not model.encoder.layers[0].self_attn.in_proj_bias.array.any()
