"""torch.utils.checkpoint: `checkpoint(fn, *args)` runs fn and keeps its graph, so gradients are
the same as torch's; nothing is recomputed (torch trades memory for a second forward; here the
memory is spent as without checkpointing). `checkpoint_sequential` runs the modules in order."""


def checkpoint(function, *args, use_reentrant=None, context_fn=None, determinism_check=None,
               debug=None, preserve_rng_state=True, **kwargs):
    return function(*args, **kwargs)


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    modules = list(functions.children()) if hasattr(functions, "children") else list(functions)
    for module in modules:
        input = module(input)
    return input
