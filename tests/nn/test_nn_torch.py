"""Values and gradients against PyTorch in float64 (skipped when torch is not installed)."""

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor, nn
from tinygrad_tf.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

RNG = np.random.default_rng(0)


def pair(shape, scale=1.0):
    """The same float64 values as a tinygrad_tf Tensor and a torch tensor, both needing grad."""
    values = RNG.standard_normal(shape) * scale
    return Tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)


def backward_both(ours, theirs):
    upstream = RNG.standard_normal(ours.shape)
    (ours * Tensor(upstream)).sum().backward()
    (theirs * torch.tensor(upstream)).sum().backward()


def assert_close(ours, theirs, rtol=1e-10, atol=1e-12):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    np.testing.assert_allclose(ours.array if isinstance(ours, Tensor) else ours, theirs,
                               rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(shape, reduction, smoothing):
    x, tx = pair(shape)
    target = RNG.integers(0, shape[1], shape[:1] + shape[2:])  # classes at dim 1, as torch
    target.flat[::3] = -100
    ours = F.cross_entropy(x, target, reduction=reduction, label_smoothing=smoothing)
    theirs = TF.cross_entropy(tx, torch.tensor(target), reduction=reduction,
                              label_smoothing=smoothing)
    assert_close(ours, theirs)
    backward_both(ours, theirs)
    assert_close(x.grad, tx.grad)


def test_layer_norm_matches_torch():
    x, tx = pair((3, 4, 5, 6), scale=2.0)
    w, tw = pair((5, 6))
    b, tb = pair((5, 6))
    ours = F.layer_norm(x, (5, 6), w, b)
    theirs = TF.layer_norm(tx, (5, 6), tw, tb)
    assert_close(ours, theirs)
    backward_both(ours, theirs)
    for a, t in ((x, tx), (w, tw), (b, tb)):
        assert_close(a.grad, t.grad)


@pytest.mark.parametrize("kind", ["none", "bool", "additive", "causal", "fully_masked"])
def test_attention_matches_torch(kind):
    q, tq = pair((2, 3, 4, 8))
    k, tk = pair((2, 3, 5 if kind != "causal" else 4, 8))
    v, tv = pair((2, 3, k.shape[-2], 6))
    mask = None
    if kind in ("bool", "fully_masked"):
        mask = RNG.random((2, 1, 4, k.shape[-2])) > 0.3  # True = take part, as torch
        mask[..., 0] = True
        if kind == "fully_masked":
            mask[0, 0, 2] = False
    elif kind == "additive":
        mask = RNG.standard_normal((4, k.shape[-2]))
    causal = kind == "causal"
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    theirs = TF.scaled_dot_product_attention(
        tq, tk, tv, attn_mask=None if mask is None else torch.tensor(mask), is_causal=causal)
    assert_close(ours, theirs)
    backward_both(ours, theirs)
    for a, t in ((q, tq), (k, tk), (v, tv)):
        assert np.isfinite(a.grad.array).all()
        assert_close(a.grad, t.grad)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate):
    x, tx = pair((50,), scale=3.0)
    ours, theirs = F.gelu(x, approximate), TF.gelu(tx, approximate=approximate)
    assert_close(ours, theirs)
    backward_both(ours, theirs)
    assert_close(x.grad, tx.grad)


def test_embedding_with_padding_matches_torch():
    w, tw = pair((6, 3))
    ids = np.array([[0, 2, 2], [5, 0, 1]])
    ours, theirs = F.embedding(ids, w, padding_idx=0), TF.embedding(torch.tensor(ids), tw,
                                                                    padding_idx=0)
    assert_close(ours, theirs)
    backward_both(ours, theirs)
    assert_close(w.grad, tw.grad)


def test_linear_and_embedding_default_init_statistics_match_torch():
    tg.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = nn.Linear(300, 200), torch.nn.Linear(300, 200)
    for a, t in ((ours.weight, theirs.weight), (ours.bias, theirs.bias)):
        t = t.detach().numpy()
        assert a.dtype == t.dtype == np.float32
        assert abs(np.abs(a.array).max() - np.abs(t).max()) < 0.002  # both ~ 1/sqrt(300)
        assert abs(a.array.std() / t.std() - 1) < (0.03 if a.ndim == 2 else 0.3)
    ours, theirs = nn.Embedding(500, 64), torch.nn.Embedding(500, 64)
    assert abs(ours.weight.array.std() / theirs.weight.detach().numpy().std() - 1) < 0.03


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.8, dampening=0.3)),
    ("Adam", dict(lr=0.01, betas=(0.9, 0.98), eps=1e-9)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
])
def test_optimizer_steps_match_torch(name, kwargs):
    p, tp = pair((4, 3))
    ours = getattr(nn.optim, name)([p], **kwargs)
    theirs = getattr(torch.optim, name)([tp], **kwargs)
    for _ in range(5):
        grad = RNG.standard_normal((4, 3))
        p.grad, tp.grad = Tensor(grad.copy()), torch.tensor(grad)
        ours.step()
        theirs.step()
    assert_close(p, tp, rtol=1e-12)


def test_clip_grad_norm_matches_torch():
    p, tp = pair((5,))
    q, tq = pair((2, 2))
    for a, t in ((p, tp), (q, tq)):
        grad = RNG.standard_normal(a.shape) * 3
        a.grad, t.grad = Tensor(grad.copy()), torch.tensor(grad)
    ours = nn.utils.clip_grad_norm_([p, q], 1.5)
    theirs = torch.nn.utils.clip_grad_norm_([tp, tq], 1.5)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    assert_close(p.grad, tp.grad)
    assert_close(q.grad, tq.grad)


def test_state_file_opens_in_torch_safetensors(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = nn.Linear(3, 2)
    path = tmp_path / "linear.safetensors"
    nn.state.save(path, model.state_dict())
    reference = torch.nn.Linear(3, 2)
    reference.load_state_dict(safetensors_torch.load_file(str(path)))
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    assert_close(model(Tensor(x)), reference(torch.tensor(x)), rtol=1e-6, atol=1e-6)


def test_a_torch_model_ports_with_its_state_dict():
    def build(lib):
        class Tagger(lib.Module):
            def __init__(self):
                super().__init__()
                self.embed = lib.Embedding(11, 6, padding_idx=0)
                self.body = lib.Sequential(lib.Linear(6, 8), lib.GELU(), lib.LayerNorm(8))
                self.heads = lib.ModuleList([lib.Linear(8, 3), lib.Linear(8, 2, bias=False)])

            def forward(self, ids):
                x = self.body(self.embed(ids))
                return self.heads[0](x), self.heads[1](x)
        return Tagger()

    theirs, ours = build(torch.nn).double(), build(nn).double()
    state = {name: value.detach().numpy() for name, value in theirs.state_dict().items()}
    assert list(state) == list(ours.state_dict())  # same names, same order
    ours.load_state_dict(state)
    ids = RNG.integers(0, 11, (2, 5))
    for a, t in zip(ours(ids), theirs(torch.tensor(ids))):
        assert_close(a, t)
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
