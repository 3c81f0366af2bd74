"""Issue 20's acceptance test: a small torch-style training script runs here after changing only
its import lines. The script (written for torch, in the style of public char-level LM code)
uses the device idiom, dtype aliases, the function forms, utils.data, a primitive-op causal
attention, AdamW with a scheduler, save/load of a checkpoint dict, f-string formatting of
losses, and sampling with multinomial under no_grad. It runs through tinygrad_tf (always) and
torch (when installed); both must train (the loss falls) and round-trip the checkpoint."""
import re

import pytest

SCRIPT = '''
import math
import os
import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, random_split

torch.manual_seed(1337)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.backends.cudnn.benchmark = True
text = "hello world, this is a tiny corpus for a tiny model. " * 8
chars = sorted(set(text))
stoi = {ch: i for i, ch in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
block_size, n_embd, n_head = 8, 32, 4


class Chunks(Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data) - block_size - 1

    def __getitem__(self, i):
        chunk = self.data[i:i + block_size + 1]
        return chunk[:-1], chunk[1:]


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.register_buffer("mask", torch.tril(torch.ones(block_size, block_size)))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(n_embd, dim=2)
        q, k, v = [t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v)]
        att = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        att = att.masked_fill(self.mask[:T, :T] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class TinyLM(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.tok = nn.Embedding(vocab, n_embd)
        self.pos = nn.Parameter(torch.zeros(1, block_size, n_embd))
        self.ln = nn.LayerNorm(n_embd)
        self.attn = Attention()
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
        self.head = nn.Linear(n_embd, vocab)

    def forward(self, idx, targets=None):
        x = self.tok(idx) + self.pos[:, :idx.size(1)]
        x = x + self.attn(self.ln(x))
        x = x + self.mlp(x)
        logits = self.head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, n):
        for _ in range(n):
            logits, _ = self(idx[:, -block_size:])
            probs = F.softmax(logits[:, -1, :], dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
        return idx


train, val = random_split(Chunks(data), [0.9, 0.1], generator=torch.Generator().manual_seed(42))
loader = DataLoader(train, batch_size=16, shuffle=True, drop_last=True)
model = TinyLM(len(chars)).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5)
print(f"{sum(p.numel() for p in model.parameters())} parameters on {device}")

losses = []
for epoch in range(2):
    for step, (xb, yb) in enumerate(loader):
        xb, yb = xb.to(device), yb.to(device)
        _, loss = model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    print(f"epoch {epoch} loss {loss:.4f}")

model.eval()
with torch.no_grad():
    val_x, val_y = next(iter(DataLoader(val, batch_size=len(val))))
    _, val_loss = model(val_x, val_y)
print("val loss", val_loss)

path = os.path.join(OUT_DIR, "ckpt.pt")
torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": len(losses),
            "config": {"block_size": block_size, "n_embd": n_embd}}, path)
checkpoint = torch.load(path, map_location="cpu")
restored = TinyLM(len(chars))
restored.load_state_dict(checkpoint["model"])
optimizer.load_state_dict(checkpoint["optimizer"])
restored.eval()
same = torch.allclose(restored(val_x)[0], model(val_x)[0])
sample = model.generate(torch.zeros((1, 1), dtype=torch.long, device=device), 20)[0].tolist()
RESULT = {"first": sum(losses[:5]) / 5, "last": sum(losses[-5:]) / 5, "same": bool(same),
          "step": checkpoint["step"], "sample": len(sample), "val": float(val_loss)}
'''

SWAPS = [(r"^import torch$", "import tinygrad_tf as torch"),
         (r"^import torch\.nn as nn$", "import tinygrad_tf.nn as nn"),
         (r"^from torch\.nn import functional as F$", "from tinygrad_tf.nn import functional as F"),
         (r"^from torch\.utils\.data import ", "from tinygrad_tf.utils.data import ")]


def swap_imports(source):
    """The only change a port needs: the import lines."""
    for pattern, replacement in SWAPS:
        source = re.sub(pattern, replacement, source, flags=re.M)
    return source


def run(source, tmp_path):
    scope = {"OUT_DIR": str(tmp_path), "__name__": "ported"}
    exec(compile(source, "ported_script.py", "exec"), scope)
    return scope["RESULT"]


def test_the_port_changes_only_imports():
    ported = swap_imports(SCRIPT)
    changed = [(a, b) for a, b in zip(SCRIPT.splitlines(), ported.splitlines()) if a != b]
    assert len(changed) == 4 and all(a.lstrip().startswith(("import", "from")) for a, _ in changed)


def test_ported_script_trains_here(tmp_path):
    result = run(swap_imports(SCRIPT), tmp_path)
    assert result["last"] < 0.6 * result["first"], result
    assert result["same"] and result["step"] > 0 and result["sample"] == 21


def test_the_same_script_under_torch(tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    result = run(SCRIPT, tmp_path)
    assert result["last"] < 0.6 * result["first"], result
    assert result["same"] and result["sample"] == 21
