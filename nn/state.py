"""Checkpoints in the safetensors format (tinygrad_tf/serialization.py), path first:

    nn.state.save("model.safetensors", model.state_dict())
    model.load_state_dict(nn.state.load("model.safetensors"))

`tinygrad_tf.save(obj, f)` / `tinygrad_tf.load(f)` are the same files in torch's argument
order.
"""
from tinygrad_tf.serialization import (CheckpointError, atomic_write, load_file as load,  # noqa: F401
                                       load_metadata, save_file as save)

__all__ = ["save", "load", "load_metadata", "atomic_write", "CheckpointError"]
