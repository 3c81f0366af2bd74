"""Sequence models written as torch code run unchanged on tinygrad_tf: the same source, given
either library as `torch`, trains to the same losses (a word-level language model with each
recurrent layer, and one with nn.TransformerEncoder and a causal mask)."""
import math

import numpy as np
import pytest

import tinygrad_tf

torch_lib = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torch's nested-tensor note


def build(torch, kind, vocab=12, width=8):
    """A model in torch's idiom; `torch` is whichever library is passed in."""
    nn, F = torch.nn, torch.nn.functional

    class RecurrentLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            if kind.startswith("RNN_"):
                self.rnn = nn.RNN(width, width, 2, nonlinearity=kind[4:].lower(), dropout=0.0)
            else:
                self.rnn = getattr(nn, kind)(width, width, 2, dropout=0.0)
            self.out = nn.Linear(width, vocab)
            self.out.weight = self.embed.weight  # tied
            nn.init.uniform_(self.embed.weight, -0.1, 0.1)
            nn.init.zeros_(self.out.bias)

        def forward(self, x, hidden):
            output, hidden = self.rnn(self.embed(x), hidden)
            return F.log_softmax(self.out(output).view(-1, vocab), dim=1), hidden

        def init_hidden(self, batch):
            weight = next(self.parameters())
            zeros = weight.new_zeros(2, batch, width)
            return (zeros, weight.new_zeros(2, batch, width)) if kind == "LSTM" else zeros

    class TransformerLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            layer = nn.TransformerEncoderLayer(width, 2, 16, dropout=0.0)
            self.encoder = nn.TransformerEncoder(layer, 2)
            self.out = nn.Linear(width, vocab)
            position = torch.arange(0, 64, dtype=torch.float).unsqueeze(1)
            scale = torch.exp(torch.arange(0, width, 2).float() * (-math.log(10000.0) / width))
            table = torch.zeros(64, width)
            table[:, 0::2] = torch.sin(position * scale)
            table[:, 1::2] = torch.cos(position * scale)
            self.register_buffer("table", table.unsqueeze(1))

        def forward(self, x, hidden=None):
            mask = nn.Transformer.generate_square_subsequent_mask(len(x))
            h = self.embed(x) * math.sqrt(width) + self.table[:x.size(0)]
            return F.log_softmax(self.out(self.encoder(h, mask=mask)), dim=-1).view(-1, vocab), None

    return RecurrentLM() if kind != "Transformer" else TransformerLM()


def train(torch, model, data, steps=4, bptt=5):
    criterion = torch.nn.NLLLoss()
    hidden = model.init_hidden(data.size(1)) if hasattr(model, "init_hidden") else None
    losses = []
    for i in range(0, steps * bptt, bptt):
        x, target = data[i:i + bptt], data[i + 1:i + 1 + bptt].view(-1)
        model.zero_grad()
        if hidden is not None:  # detach the carried state, as truncated BPTT does
            hidden = tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) \
                else hidden.detach()
        output, hidden = model(x, hidden)
        loss = criterion(output, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-1.0)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU", "Transformer"])
def test_torch_style_language_model_trains_as_under_torch(kind):
    ids = (np.arange(21)[:, None] + np.arange(3)[None, :]) % 5  # a pattern the models can learn
    torch_lib.manual_seed(0)
    theirs = build(torch_lib, kind).double()
    ours = build(tinygrad_tf, kind).double()
    ours.load_state_dict(theirs.state_dict())
    expected = train(torch_lib, theirs, torch_lib.tensor(ids))
    losses = train(tinygrad_tf, ours, tinygrad_tf.tensor(ids))
    np.testing.assert_allclose(losses, expected, rtol=1e-9)
    assert losses[-1] < losses[0]
