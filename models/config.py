"""The settings of a training run (`TrainConfig`, saved as RUN/config.json) and the model
families and size presets they name. `train.py` runs them."""
from dataclasses import dataclass, field

from . import data
from .recurrent import GRUConfig, GRUSeq2Seq
from .transformer import Transformer, TransformerConfig

PRESETS = {"tiny": TransformerConfig.tiny, "base": TransformerConfig.base,
           "big": TransformerConfig.big}
# --arch: the model family; each has its config class with the same preset names.
ARCHS = {"transformer": (TransformerConfig, Transformer), "gru": (GRUConfig, GRUSeq2Seq)}


@dataclass
class TrainConfig:
    """Every setting of a run; saved as RUN/config.json. None means "the preset's value"."""
    run_dir: str = "runs/run"
    seed: int = 0
    # data: a built-in task, or TSV files (train_file set)
    task: str = "reverse"
    task_options: dict = field(default_factory=dict)  # vocab, min_len, max_len, max_digits, ...
    n_train: int = 20000
    n_valid: int = 500
    n_test: int = 500
    train_file: str = None
    valid_file: str = None
    test_file: str = None
    tokenizer: str = "char"        # char, word or bpe
    vocab_size: int = 8000         # bpe only
    min_freq: int = 1
    # model
    arch: str = "transformer"      # transformer, or gru (a GRU encoder-decoder with attention)
    preset: str = "tiny"           # tiny, base, big, or None for explicit sizes (base defaults)
    d_model: int = None
    n_heads: int = None
    n_encoder_layers: int = None
    n_decoder_layers: int = None
    d_ff: int = None
    dropout: float = 0.1           # P_drop (section 5.4)
    max_len: int = None
    norm_first: bool = False
    # the recipe (section 5.3, 5.4)
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-9
    schedule: str = "warmup"       # "warmup" (the paper's) or "constant"
    warmup_steps: int = 4000
    lr_factor: float = 1.0         # multiplies the warm-up formula
    lr: float = 1e-3               # the constant schedule's rate
    label_smoothing: float = 0.1
    clip_norm: float = None        # max global gradient norm; None: no clipping (as the paper)
    # batches
    batch_size: int = None         # sentences per batch (cap)
    max_tokens: int = 4096         # padded tokens per side per batch (cap)
    # budget: training stops at whichever comes first
    steps: int = None
    time_budget: float = None      # seconds of training (validation excluded)
    target_exact_match: float = None  # stop once validation exact match reaches this
    # validation, checkpoints, output
    eval_every: int = 500
    eval_decode: int = 500         # validation pairs decoded for exact match and BLEU
    save_every: int = None         # default: eval_every
    keep_checkpoints: int = 5      # at least average_last are kept
    average_last: int = 5          # at the end, average the last k step checkpoints (0: off)
    log_every: int = 50

    def check(self):
        if self.steps is None and self.time_budget is None:
            raise ValueError("train: give a budget, --steps N and/or --time-budget SECONDS")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"train: unknown preset {self.preset!r}; expected one of "
                             f"{', '.join(PRESETS)} (or none, with explicit sizes)")
        if self.arch not in ARCHS:
            raise ValueError(f"train: unknown arch {self.arch!r}; expected one of "
                             f"{', '.join(ARCHS)}")
        unused = [name for name in ("n_heads", "d_ff") if getattr(self, name) is not None]
        if self.arch == "gru" and (unused or self.norm_first):
            raise ValueError(f"train: --arch gru has no {', '.join(unused or ['norm_first'])} "
                             "(attention heads, feed-forward and norms are the Transformer's)")
        if self.schedule not in ("warmup", "constant"):
            raise ValueError(f"train: unknown schedule {self.schedule!r}; expected 'warmup' or "
                             "'constant'")
        if self.train_file is None and self.task not in data.TASKS:
            raise ValueError(f"train: unknown task {self.task!r}; expected one of "
                             f"{', '.join(data.TASKS)}, or --train FILE.tsv")
        for name in ("eval_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"train: {name} must be at least 1")
        if self.average_last < 0:
            raise ValueError(f"train: average_last must be 0 (off) or more, got "
                             f"{self.average_last}")
