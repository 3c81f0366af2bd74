"""The plug-in table: the only way code outside the core reaches into it.

The core (tensor.py, autograd.py, the Functions) imports nothing from `optim/`, `profiler.py` or
`distributed.py`. Those plug in here, and the core calls what is set, nothing else. Each slot is
None (the core does its plain work) or set by one plug-in:

`profiler`         Set by `tinygrad_tf.profiler` while a profile block runs. `Function.apply`
                   hands each op to `profiler.apply(cls, inputs, kwargs)`; `backward` times each
                   op's backward with `profiler.backward(ctx, grad)` and the walk itself with
                   `profiler.begin(name, kind)` / `profiler.end()`. Timing only: each call must
                   return what the plain call returns.
`kernel_profiler`  The same recorder, for the kernel layer: `kernel(name, function, args, kwargs)`.
`grad_buffer`      Set by `tinygrad_tf.optim` (its flat arena). When backward is about to create a
                   leaf's `.grad` (it is None), it calls `grad_buffer(leaf)`: an array of the
                   leaf's shape and dtype to hold the new gradient, or None for a fresh one. The
                   lender promises that nothing else holds that memory (no kept `.grad`, no view
                   of one): from then on it belongs to the new `.grad`, and the lender may read it
                   but not write it until that `.grad` is gone (docs/autograd.md, section 10).

Whatever is plugged in, the core keeps its rules: a lent array of the wrong shape, dtype or
writability is ignored (a fresh one is used); an existing `.grad` is only ever accumulated into,
never replaced; saved arrays are version-checked; plug-ins see no tensor the user could not.
Distributed training needs no slot: it reads and writes `.grad` by the public rules.
"""

profiler = None
kernel_profiler = None
grad_buffer = None
