"""Data-parallel training steps for the recipe: `mpiexec -n K tinygrad-tf train ARGS`.

Every rank builds the same global batch (the Batcher is seeded, so no communication is needed)
and trains on the rows `indices[rank::K]`. Each rank backpropagates its share of the global
loss, (its token sum) / (the global batch's tokens), so summing the gradients over the ranks
with one Allreduce gives exactly the gradient of the one-process loss: the mean over all target
tokens of the global batch, not a mean of per-rank means. Parameters, optimizer and schedule
states then stay identical on every rank without further communication.

Rules that keep K ranks from hanging: every rank reaches every collective (none sits inside a
rank-0 branch); every decision that ends the loop (time budget, Ctrl-C, NaN loss, the target
exact match) is taken from values all ranks agree on; only rank 0 writes files.
"""
import os
import sys
import time

import numpy as np

import tinygrad_tf
from tinygrad_tf import distributed

from .batching import make_batch
from .evaluation import loss_of


class ShardedStep:
    """Forward and backward on this rank's shard of the global batch, gradients summed over
    ranks. Built by Trainer only when world_size() > 1."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.rank, self.size = distributed.rank(), distributed.world_size()
        # Broadcasting rank 0's parameters makes a mismatch impossible even if initialisation
        # ever depended on the rank; after --resume every rank loaded the same file anyway.
        self.ddp = distributed.DistributedDataParallel(trainer.model,
                                                       optimizer=trainer.optimizer)
        # For bench/distributed.py: time in the gradient Allreduce, and (when measure_wait is
        # set, which adds a barrier) the part of it spent waiting for the slowest rank.
        self.allreduce_seconds = self.wait_seconds = 0.0
        self.measure_wait = False

    def loss_and_gradients(self, batch, step):
        """Leave the global batch's mean-loss gradient in every parameter's .grad on every rank;
        returns the global mean loss (the token-weighted sum over ranks / all tokens)."""
        trainer = self.trainer
        # Dropout masks: a stream per (seed, step, rank), so resuming under the same K redraws
        # them exactly without saving K generator states.
        tinygrad_tf.manual_seed([trainer.config.seed, step, self.rank])
        trainer.optimizer.zero_grad()
        shard = batch.indices[self.rank::self.size]
        total_tokens = batch.n_tokens
        local_sum = np.zeros(1, np.float64)
        if len(shard):  # a global batch of fewer rows than ranks leaves some ranks idle
            part = make_batch(trainer.corpus, shard)
            loss, _ = loss_of(trainer.model, part, trainer.config.label_smoothing)
            share = part.n_tokens / total_tokens
            local_sum[0] = loss.item() * part.n_tokens
            (loss * share).backward()
        if self.measure_wait:
            started = time.perf_counter()
            distributed.barrier()
            self.wait_seconds += time.perf_counter() - started
        started = time.perf_counter()
        self.ddp.sync_gradients(scale=1.0)  # the shares already sum to the global mean
        self.allreduce_seconds += time.perf_counter() - started
        distributed.all_reduce(local_sum, "sum")
        return float(local_sum[0]) / total_tokens

    def agree(self, elapsed, interrupted):
        """Rank 0's training time and whether any rank was interrupted, on every rank: the
        time budget and Ctrl-C must end the loop at the same step everywhere."""
        values = np.array([elapsed if self.rank == 0 else 0.0, float(interrupted)])
        distributed.all_reduce(values, "sum")
        return float(values[0]), bool(values[1] > 0)

    def agree_flag(self, flag):
        """Rank 0's value of a bool decided only there (e.g. after validation) on every rank."""
        value = np.array([1.0 if (flag and self.rank == 0) else 0.0])
        distributed.all_reduce(value, "sum")
        return bool(value[0] > 0)


def check_same_run(trainer):
    """Stop every rank with a clear error if the ranks disagree on the configuration, the
    vocabulary or the training data (e.g. different files on different hosts)."""
    import dataclasses
    import json
    config = json.dumps(dataclasses.asdict(trainer.config), sort_keys=True, default=str)
    corpus = trainer.corpus
    distributed.check_same("the configuration", config)
    distributed.check_same("the training data and vocabulary",
                           json.dumps(trainer.tokenizer.vocab.itos),
                           corpus.src, corpus.src_offsets, corpus.tgt, corpus.tgt_offsets)


def check_same_restore(path, info, model_state, optimizer_state):
    """After --resume, stop every rank with a clear error unless all restored the same step,
    weights and optimizer state (a rank that read an older copy of the run directory would train
    other steps than the others and leave them waiting in a collective, or silently diverge)."""
    steps = np.array([info["step"], -info["step"]], np.int64)
    distributed.all_reduce(steps, "min")
    if steps[0] != -steps[1]:
        raise ValueError(f"distributed: the ranks resumed from different steps ({steps[0]} to "
                         f"{-steps[1]}; rank {distributed.rank()} from {path}, step "
                         f"{info['step']}); every rank must see the same checkpoints (one shared "
                         "run directory, or identical copies)")
    import json
    distributed.check_same(f"the checkpoint of step {info['step']} (weights, optimizer state, "
                           "position in the data) they resumed from",
                           json.dumps(info, sort_keys=True, default=str),
                           *(model_state[name] for name in sorted(model_state)),
                           *_leaves(optimizer_state))


def _leaves(tree):
    """The arrays and values of a nested state (dicts in key order), for hashing."""
    if isinstance(tree, dict):
        for key in sorted(tree, key=str):
            yield str(key)
            yield from _leaves(tree[key])
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _leaves(item)
    elif isinstance(tree, np.ndarray):
        yield tree
    elif hasattr(tree, "array"):  # a Tensor
        yield tree.array
    else:
        yield repr(tree)


def launch_train(train_config, args):
    """The CLI's TrainConfig under K ranks: rank 0's run name (a default name holds the time,
    which may differ between ranks by a second) and a quiet stdout on ranks other than 0."""
    config = train_config(args)
    if distributed.init() == 1:
        return config
    import dataclasses
    config = dataclasses.replace(config, run_dir=distributed.broadcast_object(config.run_dir))
    if distributed.rank() != 0:
        sys.stdout = open(os.devnull, "w")
    return config
