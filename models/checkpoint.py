"""Checkpoints of a training run: one safetensors file each, with its JSON state in the header.

A checkpoint holds the model's parameters, the optimizer's moments, and as JSON the step, the
schedule, the random generator's state and the position in the data, so that training resumes
exactly. One file per checkpoint, written atomically by `nn.state.save` (temporary file +
rename), means a save killed half-way leaves every earlier checkpoint intact. A small `.json`
beside each file repeats the header's state for people and tools; loading never needs it.

    RUN/checkpoints/step_00001200.safetensors   (+ .json)   every --save-every steps, last N kept
    RUN/checkpoints/best.safetensors            (+ .json)   best validation score so far
    RUN/checkpoints/average.safetensors         (+ .json)   `tinygrad-tf average`
"""
import json
import os
import re

import numpy as np

from tinygrad_tf import Tensor
from tinygrad_tf.nn import state as nn_state

FORMAT = "tinygrad_tf-seq2seq-checkpoint-1"
_STEP_FILE = re.compile(r"^step_(\d+)\.safetensors$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or used, with the file and the reason."""


# ---------------------------------------------------------------------------- files

def write_json(path, value):
    """A JSON file of the run directory, written atomically (nn.state.atomic_write)."""
    nn_state.atomic_write(path, json.dumps(value, indent=2, ensure_ascii=False))


def save(path, model_state, optimizer_state=None, info=None):
    """Write one checkpoint file (atomically) and its human-readable JSON beside it."""
    tree = {"model": {name: (value.array if isinstance(value, Tensor) else value)
                      for name, value in model_state.items()}}
    if optimizer_state is not None:
        tree["optimizer"] = optimizer_state
    info = dict(info or {})
    nn_state.save(path, tree, metadata={"format": FORMAT, "info": json.dumps(info)})
    write_json(os.path.splitext(path)[0] + ".json", info)


def load(path):
    """-> (model_state {name: array}, optimizer_state or None, info dict)."""
    try:
        tree, metadata = nn_state.load(path, with_metadata=True)  # one read of the file
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as error:  # a truncated or foreign file: say which and why
        raise CheckpointError(f"{path}: not a readable checkpoint ({error})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tinygrad_tf seq2seq checkpoint (format "
                              f"{metadata.get('format')!r}, expected {FORMAT!r})")
    model = {name: value.array for name, value in tree["model"].items()}
    return model, tree.get("optimizer"), json.loads(metadata["info"])


def read_info(path):
    """A checkpoint's JSON state (step, best, ...) from its header alone, without the arrays."""
    try:
        metadata = nn_state.load_metadata(path)
        if metadata.get("format") == FORMAT:
            return json.loads(metadata["info"])
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({error})") from None
    raise CheckpointError(f"{path}: not a tinygrad_tf seq2seq checkpoint")


def remove(path):
    """Delete a checkpoint file and the .json beside it (either may be missing)."""
    for file in (path, os.path.splitext(path)[0] + ".json"):
        if os.path.exists(file):
            os.remove(file)


def step_path(directory, step):
    return os.path.join(directory, f"step_{step:08d}.safetensors")


def step_checkpoints(directory):
    """[(step, path)] of the step checkpoints in `directory`, oldest first."""
    if not os.path.isdir(directory):
        return []
    found = [(int(m.group(1)), os.path.join(directory, name))
             for name in os.listdir(directory) if (m := _STEP_FILE.match(name))]
    return sorted(found)


def latest(directory, warn=print):
    """The newest step checkpoint that loads, skipping (with a warning) any that do not."""
    for step, path in reversed(step_checkpoints(directory)):
        try:
            return path, load(path)
        except CheckpointError as error:
            warn(f"warning: skipping {error}")
    raise CheckpointError(f"{directory}: no readable step checkpoint to resume from")


def prune(directory, keep):
    """Delete all but the newest `keep` step checkpoints."""
    for _, path in step_checkpoints(directory)[:-keep] if keep > 0 else []:
        remove(path)


def average(directory, last, out_path, warn=print):
    """Average the parameters of the newest `last` readable step checkpoints (the paper averaged
    the last 5 for base models, 20 for big) into `out_path`, skipping (with a warning) any that
    do not load; returns the steps averaged."""
    total, info, dtypes, steps = None, None, None, []
    for step, path in reversed(step_checkpoints(directory)):
        if len(steps) == last:
            break
        try:
            model, _, found_info = load(path)
        except CheckpointError as error:
            warn(f"warning: not averaging {error}")
            continue
        if total is None:  # the newest: its info and dtypes describe the average
            info, dtypes = found_info, {name: value.dtype for name, value in model.items()}
            total = {name: value.astype(np.float64) for name, value in model.items()}
        elif set(model) != set(total):
            raise CheckpointError(f"{path}: its parameters differ from the other checkpoints'")
        else:
            for name, value in model.items():
                total[name] += value
        steps.insert(0, step)
    if not steps:
        raise CheckpointError(f"{directory}: no readable step checkpoints to average")
    averaged = {name: (value / len(steps)).astype(dtypes[name]) for name, value in total.items()}
    save(out_path, averaged, None, {**info, "averaged_steps": steps})
    return steps


# ---------------------------------------------------------------------------- resuming

def forget_after(run_dir, checkpoint_dir, step, best, note):
    """Resuming at `step` discards what the run did after it, so that the best checkpoint
    and the average come from this timeline only: step checkpoints after it (unreadable
    ones, which the resume skipped), and a best or average checkpoint or final.json made
    after it. A best checkpoint overwritten after `step` is restored from its step
    checkpoint if that is kept; otherwise the best is chosen again from later validations.
    `best` is the run's best validation record at `step` (or None); returns it, or None when
    its checkpoint is no longer kept. `note(text)` reports each change."""
    def step_of(path):
        try:
            return read_info(path)["step"]
        except (CheckpointError, KeyError):
            return None  # unreadable: it cannot be trusted either

    for found, path in step_checkpoints(checkpoint_dir):
        if found > step:
            remove(path)
            note(f"removed {path} (after the resume point)")
    average = os.path.join(checkpoint_dir, "average.safetensors")
    if os.path.exists(average) and (step_of(average) is None or step_of(average) > step):
        remove(average)
        note(f"removed {average}, an average of steps after {step}")
    final = os.path.join(run_dir, "final.json")
    if os.path.exists(final) and not _final_before(run_dir, final, step):
        os.remove(final)  # the next end of training writes it again
        note(f"removed {final}, written after step {step}")
    best_path = os.path.join(checkpoint_dir, "best.safetensors")
    live = best["step"] if best else None
    if not os.path.exists(best_path) or step_of(best_path) == live:
        return best
    try:
        if live is None:
            raise CheckpointError("no best score at the resume point")
        source = step_path(checkpoint_dir, live)
        save(best_path, *load(source))
        note(f"best checkpoint restored from {source} (step {live}); the one there was "
             "saved after the resume point")
        return best
    except CheckpointError:
        remove(best_path)
        note(f"removed {best_path}, saved after the resume point"
             + (f"; the best of step {live} is no longer kept, so the best checkpoint is "
                "chosen again from the validations to come" if live is not None else ""))
        return None


def _final_before(run_dir, path, step):
    """Whether final.json chose among checkpoints of step `step` or earlier only."""
    try:
        with open(path, encoding="utf-8") as file:
            final = json.load(file)
        scores = final["scores"]
        steps = [scores.get("best", {}).get("step", 0),
                 *scores.get("average", {}).get("steps", [])]
        return max(steps) <= step and os.path.exists(os.path.join(run_dir, final["path"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
