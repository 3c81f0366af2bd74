"""What holds for the padding_idx row of the embedding matrix, tied or not (docs/nn.md)."""
import numpy as np

import tinygrad_tf as tg
from tinygrad_tf import Tensor
from tinygrad_tf.models.transformer import Transformer, TransformerConfig
from tinygrad_tf.nn import functional as F

PAD = 0


def _step(share_embeddings):
    tg.manual_seed(0)
    config = TransformerConfig.tiny(12, share_embeddings=share_embeddings, dropout=0.0,
                                    pad_id=PAD)
    model = Transformer(config)
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(3, 12, (4, 6)), rng.integers(3, 12, (4, 7))
    src[:, -2:] = PAD
    tgt[:, -2:] = PAD
    logits = model(Tensor(src), Tensor(tgt[:, :-1]))
    loss = F.cross_entropy(logits.reshape(-1, 12), tgt[:, 1:].reshape(-1), ignore_index=PAD)
    loss.backward()
    return model, src, tgt


def test_padding_row_is_trained_only_through_the_output_projection():
    # The pre-softmax projection is always the target embedding matrix (section 3.4), so the
    # pad row is also the pad class's output weights and gets the softmax's push-down.
    for share in (False, True):
        model, _, _ = _step(share_embeddings=share)
        assert model.generator.weight is model.tgt_embed.weight
        assert np.abs(model.tgt_embed.weight.grad.array[PAD]).max() > 0
        if not share:  # the source embedding is only a lookup: its pad row gets nothing
            assert np.all(model.src_embed.weight.grad.array[PAD] == 0)
    model.zero_grad()
    model.tgt_embed.lookup(Tensor(np.array([PAD, 3]))).sum().backward()
    assert np.all(model.tgt_embed.weight.grad.array[PAD] == 0)  # the lookup itself gives none


def test_only_the_pad_class_logit_depends_on_the_padding_row():
    model, src, tgt = _step(share_embeddings=True)
    model.eval()
    with tg.no_grad():
        before = model(Tensor(src), Tensor(tgt[:, :-1])).array
        model.tgt_embed.weight.array[PAD] = np.random.default_rng(1).standard_normal(
            model.tgt_embed.weight.shape[1])
        after = model(Tensor(src), Tensor(tgt[:, :-1])).array
    real = tgt[:, :-1] != PAD
    others = np.arange(12) != PAD
    # pad keys are masked and pad queries' outputs unused: real positions see the row only as
    # the pad class's output weights
    np.testing.assert_allclose(after[real][:, others], before[real][:, others], rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(after[real][:, PAD], before[real][:, PAD])
