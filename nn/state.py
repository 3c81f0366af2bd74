"""Checkpoints in the safetensors format: other tools open them, and loading never runs code.

    nn.state.save("model.safetensors", model.state_dict())
    model.load_state_dict(nn.state.load("model.safetensors"))

A file holds named arrays plus a string->string metadata dict. `save` also takes nested dicts
and lists (e.g. {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 100}): the
arrays are stored under dotted names ("model.encoder.weight", "optimizer.state.0.exp_avg") and
the nesting and plain values (ints, floats, strings) as JSON in the metadata, so `load` gives
the same structure back. Writes are atomic: an interrupted save leaves the previous file.
"""
import json
import os
import struct
import tempfile

import numpy as np
from safetensors.numpy import load as _safetensors_load
from safetensors.numpy import save as _safetensors_save

from tinygrad_tf import Tensor

_TREE_KEY = "tinygrad_tf.tree"  # metadata entry holding the nested structure


class CheckpointError(ValueError):
    """A file that is not a readable safetensors checkpoint (truncated, foreign, corrupt)."""


# ---------------------------------------------------------------------------- structure <-> JSON

def _flatten(value, path, arrays):
    """The JSON skeleton of `value`, moving every array into `arrays` under its dotted path."""
    if isinstance(value, (Tensor, np.ndarray)):
        array = value.data if isinstance(value, Tensor) else value
        name = ".".join(path)
        if name in arrays:
            raise ValueError(f"save: two entries are both named {name!r} once flattened")
        arrays[name] = np.ascontiguousarray(array)
        return {"tensor": name}
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"save: dict keys must be str or int, got {key!r} at "
                                f"{'.'.join(path) or 'top level'}")
            items.append([key, _flatten(item, path + [str(key)], arrays)])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_flatten(item, path + [str(i)], arrays) for i, item in enumerate(value)]}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"save: cannot store a {type(value).__name__} at "
                    f"{'.'.join(path) or 'top level'}; use arrays, numbers, strings, lists, dicts")


def _unflatten(node, arrays, path):
    kind, body = next(iter(node.items()))
    if kind == "tensor":
        return Tensor(arrays[body])
    if kind == "dict":
        return {key: _unflatten(item, arrays, path) for key, item in body}
    if kind == "list":
        return [_unflatten(item, arrays, path) for item in body]
    if kind == "tuple":
        return tuple(_unflatten(item, arrays, path) for item in body)
    if kind == "value":
        return body
    raise CheckpointError(f"load: {path}: unknown entry {kind!r} in the {_TREE_KEY} metadata")


# ---------------------------------------------------------------------------- save

def save(path, state_dict, metadata=None):
    """Write `state_dict` (a dict of Tensors/arrays, possibly nested) to `path` as safetensors.

    metadata: an optional {str: str} stored in the file's header. The file is written to a
    temporary file in the same directory, flushed to disk, then renamed over `path`, so readers
    see either the old file or the complete new one.
    """
    if not isinstance(state_dict, dict):
        raise TypeError(f"save: expected a dict of tensors, got {type(state_dict).__name__}")
    metadata = dict(metadata or {})
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save: metadata must map str to str, got {key!r}: {value!r}")
    if _TREE_KEY in metadata:
        raise ValueError(f"save: the metadata key {_TREE_KEY!r} is reserved")
    arrays = {}
    metadata[_TREE_KEY] = json.dumps(_flatten(state_dict, [], arrays))
    payload = _safetensors_save(arrays, metadata=metadata)
    _atomic_write(os.fspath(path), payload)


def _atomic_write(path, payload):
    directory = os.path.dirname(os.path.abspath(path))
    handle, temp_path = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                                         suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_path, path)
    except BaseException:
        try:
            os.unlink(temp_path)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not every platform can open a directory
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------------- load

def _read_header(path, blob):
    """Validate the safetensors layout ourselves, so a bad file gets an error that says what
    is wrong and where, before the library sees it."""
    if len(blob) < 8:
        raise CheckpointError(f"load: {path} is not a safetensors file: it has {len(blob)} "
                              "bytes, fewer than the 8-byte header length (truncated or empty?)")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > len(blob) - 8:
        raise CheckpointError(f"load: {path} is truncated or not a safetensors file: its header "
                              f"claims {header_len} bytes but only {len(blob) - 8} follow")
    try:
        header = json.loads(blob[8:8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"load: {path} is not a safetensors file: its header is not JSON "
                              f"({error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"load: {path} is not a safetensors file: its header is not a "
                              "JSON object")
    data_len = len(blob) - 8 - header_len
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise CheckpointError(f"load: {path}: tensor {name!r} has no valid data_offsets")
        if offsets[1] > data_len:
            raise CheckpointError(f"load: {path} is truncated: tensor {name!r} needs bytes up to "
                                  f"{offsets[1]} of the data section, which has {data_len}")
    return header.get("__metadata__") or {}


def load_metadata(path):
    """The {str: str} metadata stored by save(path, ..., metadata=...)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    metadata = dict(_read_header(path, blob))
    metadata.pop(_TREE_KEY, None)
    return metadata


def load(path):
    """Read a safetensors file: the structure given to `save` (Tensors at the leaves), or, for a
    file written by another tool, a flat {name: Tensor}. Raises CheckpointError naming the path
    for a truncated or foreign file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    metadata = _read_header(path, blob)
    try:
        arrays = _safetensors_load(blob)
    except Exception as error:  # the library raises its own error types; name the file
        raise CheckpointError(f"load: {path} is not a valid safetensors file: {error}") from None
    tree = metadata.get(_TREE_KEY)
    if tree is None:
        return {name: Tensor(array) for name, array in arrays.items()}
    try:
        return _unflatten(json.loads(tree), arrays, path)
    except (json.JSONDecodeError, KeyError, StopIteration, AttributeError, TypeError) as error:
        raise CheckpointError(f"load: {path}: the {_TREE_KEY} metadata does not match the "
                              f"stored tensors ({type(error).__name__}: {error})") from None
