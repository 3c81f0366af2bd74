"""Saving and loading nested structures of tensors in the safetensors format: other tools open
the files, and loading never runs code (no pickle).

    tinygrad_tf.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 100,
                      "config": {"d_model": 64}}, "ckpt.pt")      # torch.save's argument order
    checkpoint = tinygrad_tf.load("ckpt.pt")

    nn.state.save("model.safetensors", model.state_dict())         # the path first (save_file)
    model.load_state_dict(nn.state.load("model.safetensors"))

A file holds named arrays plus a string->string metadata dict. The arrays are stored under
dotted names ("model.encoder.weight", "optimizer.state.0.exp_avg") and the nesting (dicts,
lists, tuples) and plain values (None, bools, ints, floats, strings) as JSON in the metadata
(the manifest), so `load` gives the same structure back. Writes are atomic: an interrupted save
leaves the previous file.

Tensors that are one array under several names (a tied embedding/output matrix) are stored once,
under the first name; the tree records the other names as aliases of it (also listed in the
`tinygrad_tf.aliases` metadata entry for other tools), and `load` gives all of them the same
Tensor back, so the tie survives a round trip.
"""
import json
import os
import secrets
import struct

import numpy as np
from safetensors.numpy import load as _safetensors_load
from safetensors.numpy import save as _safetensors_save

from .device import check as check_device, device
from .tensor import Tensor

_TREE_KEY = "tinygrad_tf.tree"  # metadata entry holding the nested structure
_ALIAS_KEY = "tinygrad_tf.aliases"  # {alias: stored name}, for readers other than `load`


class CheckpointError(ValueError):
    """A file that is not a readable safetensors checkpoint (truncated, foreign, corrupt)."""


# ---------------------------------------------------------------------------- structure <-> JSON

def _memory_key(array):
    """Arrays with equal keys are the same elements in memory (the same array, or views alike)."""
    return (array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str)


def _flatten(value, path, arrays, seen):
    """The JSON skeleton of `value`, moving every array into `arrays` under its dotted path; an
    array already stored (`seen`: memory key -> name) becomes a reference to that name."""
    if isinstance(value, (Tensor, np.ndarray)):
        array = value.array if isinstance(value, Tensor) else value
        name = ".".join(path)
        if name in arrays or name in seen.values():
            raise ValueError(f"save: two entries are both named {name!r} once flattened")
        key = _memory_key(array) if array.size else None
        if key in seen:
            return {"tensor": seen[key]}
        if key is not None:
            seen[key] = name
        # C order for the file; not np.ascontiguousarray, which turns a 0-d array into (1,).
        arrays[name] = array if array.flags.c_contiguous else np.array(array, order="C")
        return {"tensor": name}
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"save: dict keys must be str or int, got {key!r} at "
                                f"{'.'.join(path) or 'top level'}")
            items.append([key, _flatten(item, path + [str(key)], arrays, seen)])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_flatten(item, path + [str(i)], arrays, seen)
                       for i, item in enumerate(value)]}
    if hasattr(value, "state_dict") and callable(value.state_dict):
        kind = "Module" if hasattr(value, "parameters") else type(value).__name__
        raise TypeError(f"save: cannot store a whole {kind} ({type(value).__name__}) at "
                        f"{'.'.join(path) or 'top level'}: files hold data, never pickled "
                        f"objects. Save its .state_dict() instead and rebuild the object, then "
                        "call load_state_dict(load(path))")
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"save: cannot store a {type(value).__name__} at "
                    f"{'.'.join(path) or 'top level'}; use arrays, numbers, strings, lists, dicts")


def _unflatten(node, arrays, path, tensors):
    """The structure `node` describes; `tensors` (name -> Tensor) makes aliases one Tensor."""
    kind, body = next(iter(node.items()))
    if kind == "tensor":
        if body not in tensors:
            tensors[body] = Tensor(arrays[body])
        return tensors[body]
    if kind == "dict":
        return {key: _unflatten(item, arrays, path, tensors) for key, item in body}
    if kind == "list":
        return [_unflatten(item, arrays, path, tensors) for item in body]
    if kind == "tuple":
        return tuple(_unflatten(item, arrays, path, tensors) for item in body)
    if kind == "value":
        return body
    raise CheckpointError(f"load: {path}: unknown entry {kind!r} in the {_TREE_KEY} metadata")


# ---------------------------------------------------------------------------- save

def save_file(path, state_dict, metadata=None):
    """Write `state_dict` (a dict of Tensors/arrays, possibly nested) to `path` as safetensors.

    metadata: an optional {str: str} stored in the file's header. Written by atomic_write, so
    readers see either the old file or the complete new one.
    """
    if not isinstance(state_dict, dict):
        raise TypeError(f"save: expected a dict of tensors, got {type(state_dict).__name__}")
    atomic_write(path, _encode(state_dict, metadata))


def _encode(obj, metadata=None):
    """The safetensors bytes holding `obj` (any structure `_flatten` takes)."""
    metadata = dict(metadata or {})
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save: metadata must map str to str, got {key!r}: {value!r}")
    for reserved in (_TREE_KEY, _ALIAS_KEY):
        if reserved in metadata:
            raise ValueError(f"save: the metadata key {reserved!r} is reserved")
    arrays, seen = {}, {}
    tree = _flatten(obj, [], arrays, seen)
    metadata[_TREE_KEY] = json.dumps(tree)
    aliases = dict(_aliases(tree, []))
    if aliases:
        metadata[_ALIAS_KEY] = json.dumps(aliases)
    return _safetensors_save(arrays, metadata=metadata)


def save(obj, f, pickle_module=None, pickle_protocol=None, _use_new_zipfile_serialization=True):
    """torch.save: write `obj` -- tensors, numbers, strings, None, and dicts, lists and tuples
    of them (a state_dict, an optimizer's state_dict, a checkpoint dict with model, optimizer,
    step and config) -- to `f` (a path, written atomically, or a binary file object) as
    safetensors plus a JSON manifest of the structure. Never pickles: a whole Module, an
    optimizer or any other object raises, naming what to save instead."""
    if pickle_module is not None:
        raise TypeError("save: pickle_module is not supported; files are safetensors, never "
                        "pickle")
    payload = _encode(obj)
    if hasattr(f, "write"):
        f.write(payload)
    else:
        atomic_write(f, payload)


def _aliases(node, path):
    """(alias, stored name) for each tensor reference whose own path is not the stored name."""
    kind, body = next(iter(node.items()))
    if kind == "tensor":
        name = ".".join(path)
        if name != body:
            yield name, body
    elif kind == "dict":
        for key, item in body:
            yield from _aliases(item, path + [str(key)])
    elif kind in ("list", "tuple"):
        for i, item in enumerate(body):
            yield from _aliases(item, path + [str(i)])


def atomic_write(path, data, encoding="utf-8"):
    """Write `data` (bytes, or str encoded with `encoding`) to `path` so that readers, and a
    crash at any point, see either the old file or the complete new one: a temporary file in
    the same directory, fsync'd, renamed over `path`, then the directory fsync'd so the rename
    itself is durable. The new file gets the usual permissions (0666 less the umask)."""
    path = os.fspath(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    directory = os.path.dirname(os.path.abspath(path))
    temp_path = os.path.join(directory, f".tmp-{secrets.token_hex(6)}-{os.path.basename(path)}")
    # os.open with mode 0o666 lets the kernel apply the umask (mkstemp would force 0600)
    handle = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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

def _read_header(path, blob, data_len=None):
    """Validate the safetensors layout ourselves, so a bad file gets an error that says what
    is wrong and where, before the library sees it; returns the __metadata__ dict. `blob` holds
    the whole file, or only its header when `data_len` gives the data section's length."""
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
    if data_len is None:
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
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise CheckpointError(f"load: {path}: its __metadata__ must be a JSON object of strings "
                              f"(safetensors' format), got {json.dumps(metadata)[:80]}")
    return metadata


def _user_metadata(metadata):
    return {k: v for k, v in metadata.items() if k not in (_TREE_KEY, _ALIAS_KEY)}


def load_metadata(path):
    """The {str: str} metadata stored by save(path, ..., metadata=...). Reads only the header;
    to get the tensors too, use load(path, with_metadata=True) (one read of the file)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        blob = head + f.read(length)
        # the tensor checks in _read_header need the data length: take it from the file size
        data_len = os.fstat(f.fileno()).st_size - len(blob)
    return _user_metadata(_read_header(path, blob, data_len))


def load_file(path, with_metadata=False):
    """Read a safetensors file: the structure given to `save` (Tensors at the leaves; aliased
    names share one Tensor), or, for a file written by another tool, a flat {name: Tensor}.
    with_metadata=True returns (structure, metadata) from the same single read. Raises
    CheckpointError naming the path for a truncated or foreign file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    metadata = _read_header(path, blob)
    tree = _load_tree(path, blob, metadata)
    return (tree, _user_metadata(metadata)) if with_metadata else tree


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None,
         **pickle_load_args):
    """torch.load of a file written by `save` (or any safetensors file: a flat {name: Tensor}).
    `f` is a path or a binary file object. map_location may name the CPU (or be a function or
    dict, as torch's; everything loads to the CPU anyway); weights_only is accepted either way:
    loading never runs code."""
    if isinstance(map_location, (str, device)):
        check_device(map_location, "load: map_location")
    elif isinstance(map_location, dict):
        for target in map_location.values():
            check_device(target, "load: map_location")
    if hasattr(f, "read"):
        path, blob = getattr(f, "name", "<file object>"), f.read()
    else:
        path = os.fspath(f)
        with open(path, "rb") as handle:
            blob = handle.read()
    if blob[:2] == b"PK" or blob[:1] == b"\x80":  # a zip (torch.save) or a pickle
        raise CheckpointError(f"load: {path} is a torch pickle/zip checkpoint; tinygrad_tf reads "
                              "only safetensors (it never unpickles). In torch, write the state "
                              "dict with safetensors.torch.save_file(sd, 'model.safetensors') "
                              "and load that file here")
    return _load_tree(path, blob, _read_header(path, blob))


def _load_tree(path, blob, metadata):
    try:
        arrays = _safetensors_load(blob)
    except Exception as error:  # the library raises its own error types; name the file
        raise CheckpointError(f"load: {path} is not a valid safetensors file: {error}") from None
    tree = metadata.get(_TREE_KEY)
    if tree is None:
        return {name: Tensor(array) for name, array in arrays.items()}
    try:
        return _unflatten(json.loads(tree), arrays, path, {})
    except (json.JSONDecodeError, KeyError, StopIteration, AttributeError, TypeError) as error:
        raise CheckpointError(f"load: {path}: the {_TREE_KEY} metadata does not match the "
                              f"stored tensors ({type(error).__name__}: {error})") from None
