"""The paper's Transformer built from torch.nn's own layers, for checking ours against.

Not a test module itself: tests/models/test_transformer.py and bench/decode.py import it. The
wiring is torch's (nn.TransformerEncoderLayer / nn.TransformerDecoderLayer, nn.MultiheadAttention
with its masks), so agreement with our model checks every box independently.
"""
import math

import numpy as np
import torch
from torch import nn


def sinusoid_table(max_len, d_model):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), written
    out element by element, the slow obvious way."""
    table = np.zeros((max_len, d_model))
    for pos in range(max_len):
        for j in range(d_model):
            angle = pos / 10000 ** ((j - j % 2) / d_model)
            table[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return table


class TorchTransformer(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = config
        self.config = c
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.src_embed = (self.tgt_embed if c.share_embeddings
                          else nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id))
        self.register_buffer("pe", torch.tensor(sinusoid_table(c.max_len, c.d_model)))
        self.dropout = nn.Dropout(c.dropout)
        enc = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, batch_first=True,
                                         norm_first=c.norm_first)
        dec = nn.TransformerDecoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, batch_first=True,
                                         norm_first=c.norm_first)
        final = (lambda: nn.LayerNorm(c.d_model)) if c.norm_first else (lambda: None)
        self.encoder = nn.TransformerEncoder(enc, c.n_encoder_layers, norm=final(),
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, c.n_decoder_layers, norm=final())

    def embed(self, embedding, ids):
        positions = self.pe[:ids.shape[1]].to(embedding.weight.dtype)
        x = embedding(ids) * math.sqrt(self.config.d_model) + positions
        return self.dropout(x)

    def encode(self, src):
        return self.encoder(self.embed(self.src_embed, src),
                            src_key_padding_mask=src == self.config.pad_id)

    def decode(self, memory, src, tgt_in, last_only=False):
        T = tgt_in.shape[1]
        future = torch.triu(torch.ones(T, T, dtype=torch.bool, device=tgt_in.device), 1)
        x = self.decoder(self.embed(self.tgt_embed, tgt_in), memory, tgt_mask=future,
                         tgt_key_padding_mask=tgt_in == self.config.pad_id,
                         memory_key_padding_mask=src == self.config.pad_id)
        return (x[:, -1:] if last_only else x) @ self.tgt_embed.weight.T

    def forward(self, src, tgt_in):
        return self.decode(self.encode(src), src, tgt_in)


def _attention_pairs(ours, theirs, read):
    """Our stacked in_proj (q, k, v rows, torch's layout) and w_o -> in_proj and out_proj."""
    return [(read(ours.in_proj.weight), theirs.in_proj_weight),
            (read(ours.in_proj.bias), theirs.in_proj_bias),
            (read(ours.w_o.weight), theirs.out_proj.weight),
            (read(ours.w_o.bias), theirs.out_proj.bias)]


def _norm_pairs(ours, theirs, read):
    return [(read(ours.weight), theirs.weight), (read(ours.bias), theirs.bias)]


def _ffn_pairs(ours, linear1, linear2, read):
    return [(read(ours.linear_1.weight), linear1.weight), (read(ours.linear_1.bias), linear1.bias),
            (read(ours.linear_2.weight), linear2.weight), (read(ours.linear_2.bias), linear2.bias)]


def parameter_pairs(ours, theirs, read=lambda p: p.array):
    """(read(our parameter), their parameter) for every weight of both models. read=lambda p:
    p.grad.array pairs our gradients with their parameters (whose .grad to compare)."""
    pairs = [(read(ours.tgt_embed.weight), theirs.tgt_embed.weight)]
    if not ours.config.share_embeddings:
        pairs.append((read(ours.src_embed.weight), theirs.src_embed.weight))
    for a, b in zip(ours.encoder.layers, theirs.encoder.layers):
        pairs += _attention_pairs(a.self_attn, b.self_attn, read)
        pairs += _norm_pairs(a.add_norm_1.norm, b.norm1, read)
        pairs += _ffn_pairs(a.feed_forward, b.linear1, b.linear2, read)
        pairs += _norm_pairs(a.add_norm_2.norm, b.norm2, read)
    for a, b in zip(ours.decoder.layers, theirs.decoder.layers):
        pairs += _attention_pairs(a.self_attn, b.self_attn, read)
        pairs += _norm_pairs(a.add_norm_1.norm, b.norm1, read)
        pairs += _attention_pairs(a.cross_attn, b.multihead_attn, read)
        pairs += _norm_pairs(a.add_norm_2.norm, b.norm2, read)
        pairs += _ffn_pairs(a.feed_forward, b.linear1, b.linear2, read)
        pairs += _norm_pairs(a.add_norm_3.norm, b.norm3, read)
    if ours.config.norm_first:
        pairs += _norm_pairs(ours.encoder.final_norm, theirs.encoder.norm, read)
        pairs += _norm_pairs(ours.decoder.final_norm, theirs.decoder.norm, read)
    return pairs


def from_ours(model, dtype=torch.float64):
    """A TorchTransformer holding a copy of our model's weights."""
    theirs = TorchTransformer(model.config).to(dtype)
    with torch.no_grad():
        for array, param in parameter_pairs(model, theirs):
            param.copy_(torch.from_numpy(np.asarray(array, dtype=np.float64)))
    theirs.train(model.training)
    return theirs
