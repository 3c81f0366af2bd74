"""Where a training step's time goes: a profiler for Function forwards and backwards, kernels,
the engine's graph walk, named regions (the optimizer) and the Python around them.

    from tinygrad_tf import profiler

    with profiler.profile() as prof:
        loss = model(x).sum()
        loss.backward()
        with profiler.record("Optimizer.step"):
            optimizer.step()
    print(prof.table(sort_by="self", row_limit=20))

Each event has a name and a kind:
    forward   "<Function>.forward": one op's whole `apply` (forward plus recording the graph)
    backward  "<Function>.backward": the op's backward
    kernel    "kernel:<name>": a call into the kernel layer (`kernels.matmul`, ...), nested in
              the op that made it
    engine    "autograd.backward": the graph walk itself (ordering, accumulating gradients)
    record    any `profiler.record(name)` region (e.g. the optimizer step)
    python    "[python]": the block's wall time that no event covers (model code, Tensor method
              dispatch, the loss's .item(), ...)
An event's total time includes the events nested in it; its self time does not, so the self
times add up to the block's wall time and the self percentages to 100.

When no profile is active the only cost is one `is not None` test per op and per kernel call.
While one is, each event costs about a microsecond of its own, counted in the events' times.
"""
import contextlib
import time

from . import plugins as _plugins

_clock = time.perf_counter


class _Stat:
    __slots__ = ("name", "kind", "count", "total", "self_time")

    def __init__(self, name, kind):
        self.name, self.kind = name, kind
        self.count, self.total, self.self_time = 0, 0.0, 0.0


class _Recorder:
    """The hooks the engine and the kernel layer call while a profile is active."""

    def __init__(self):
        self.stats = {}
        self.stack = []  # open events: [stat, start, time of the events nested in it]

    def begin(self, name, kind):
        stat = self.stats.get(name)
        if stat is None:
            stat = self.stats[name] = _Stat(name, kind)
        self.stack.append([stat, _clock(), 0.0])

    def end(self):
        stat, start, nested = self.stack.pop()
        elapsed = _clock() - start
        stat.count += 1
        stat.total += elapsed
        stat.self_time += elapsed - nested
        if self.stack:
            self.stack[-1][2] += elapsed

    # Called by autograd.Function.apply: time the op with the hook off, so the op's own
    # apply runs unchanged (ops do not call apply from inside forward).
    def apply(self, cls, inputs, kwargs):
        self.begin(cls.__name__ + ".forward", "forward")
        _plugins.profiler = None
        try:
            return cls.apply(*inputs, **kwargs)
        finally:
            _plugins.profiler = self
            self.end()

    # Called by autograd.backward for each op.
    def backward(self, ctx, grad):
        self.begin(type(ctx).__name__ + ".backward", "backward")
        try:
            return ctx.backward(ctx, grad)
        finally:
            self.end()

    # Called by the kernel layer for each kernel call.
    def kernel(self, name, function, args, kwargs):
        self.begin("kernel:" + name, "kernel")
        try:
            return function(*args, **kwargs)
        finally:
            self.end()


class Row:
    """One line of `key_averages()`: times in seconds."""

    def __init__(self, name, kind, count, total, self_time):
        self.name, self.kind, self.count, self.total, self.self_time = \
            name, kind, count, total, self_time

    def __repr__(self):
        return (f"Row({self.name!r}, {self.kind}, count={self.count}, "
                f"total={self.total * 1e3:.3f} ms, self={self.self_time * 1e3:.3f} ms)")


_SORT_KEYS = {
    "self": lambda row: -row.self_time,
    "total": lambda row: -row.total,
    "count": lambda row: -row.count,
    "name": lambda row: row.name,
}


class profile:
    """Record every op, kernel, backward walk and `record` region run inside the block.

    After the block: `key_averages()` gives the rows, `table()` prints them, `wall` is the
    block's wall time in seconds. One profile at a time (profiles do not nest)."""

    def __init__(self):
        self._recorder = None
        self.wall = 0.0

    def __enter__(self):
        if _plugins.profiler is not None or _active[0] is not None:
            raise RuntimeError("profiler.profile: a profile is already active; they do not nest")
        self._recorder = _Recorder()
        _active[0] = self._recorder
        _plugins.profiler = _plugins.kernel_profiler = self._recorder
        self._start = _clock()
        return self

    def __exit__(self, *exc):
        while self._recorder.stack:  # events left open by an exception (e.g. in backward)
            self._recorder.end()
        self.wall = _clock() - self._start
        _active[0] = _plugins.profiler = _plugins.kernel_profiler = None
        return False

    def key_averages(self):
        """One Row per event name, plus "[python]" for the wall time no event covers."""
        if self._recorder is None:
            raise RuntimeError("profiler.profile: key_averages() needs a finished profile block")
        rows = [Row(s.name, s.kind, s.count, s.total, s.self_time)
                for s in self._recorder.stats.values()]
        covered = sum(row.self_time for row in rows)
        rows.append(Row("[python]", "python", 0, self.wall - covered, self.wall - covered))
        return rows

    def by_kind(self):
        """Self seconds per kind (forward, backward, kernel, engine, record, python)."""
        kinds = {}
        for row in self.key_averages():
            kinds[row.kind] = kinds.get(row.kind, 0.0) + row.self_time
        return kinds

    def table(self, sort_by="self", row_limit=None, per=1):
        """The rows as text, like torch.profiler's key_averages().table(). sort_by: "self",
        "total", "count" or "name"; per: divide times and counts by this (e.g. the number of
        steps profiled, for per-step figures)."""
        if sort_by not in _SORT_KEYS:
            raise ValueError(f"profiler.table: sort_by must be one of "
                             f"{', '.join(map(repr, _SORT_KEYS))}, got {sort_by!r}")
        rows = sorted(self.key_averages(), key=_SORT_KEYS[sort_by])
        shown = rows if row_limit is None else rows[:row_limit]
        wall = self.wall or 1.0
        width = max([len(row.name) for row in shown] + [20])
        header = (f"{'Name':<{width}}  {'Kind':<8}{'Self ms':>10}{'Self %':>8}{'Total ms':>10}"
                  f"{'Total %':>8}{'Calls':>8}{'Self us/call':>13}")
        lines = [header, "-" * len(header)]
        for row in shown:
            if row.kind == "python":  # not a counted event: no calls, no time per call
                lines.append(f"{row.name:<{width}}  {row.kind:<8}{row.self_time * 1e3 / per:>10.3f}"
                             f"{100 * row.self_time / wall:>7.1f}%{'':>18}{'-':>8}{'-':>13}")
                continue
            lines.append(
                f"{row.name:<{width}}  {row.kind:<8}{row.self_time * 1e3 / per:>10.3f}"
                f"{100 * row.self_time / wall:>7.1f}%{row.total * 1e3 / per:>10.3f}"
                f"{100 * row.total / wall:>7.1f}%{row.count / per:>8.0f}"
                f"{row.self_time * 1e6 / max(row.count, 1):>13.1f}")
        lines.append("-" * len(header))
        by_kind = sorted(self.by_kind().items(), key=lambda kv: -kv[1])
        kinds = "  ".join(f"{kind} {100 * seconds / wall:.1f}%" for kind, seconds in by_kind)
        lines.append(f"wall {self.wall * 1e3 / per:.3f} ms" + (f" per step ({per} steps)"
                                                              if per != 1 else "")
                     + f"; self time by kind: {kinds}")
        if row_limit is not None and len(rows) > row_limit:
            lines.append(f"({len(rows) - row_limit} more rows not shown)")
        return "\n".join(lines)


_active = [None]  # the running recorder, for `record`


@contextlib.contextmanager
def record(name):
    """Time a named region (kind "record") in the active profile; does nothing without one."""
    recorder = _active[0]
    if recorder is None:
        yield
        return
    recorder.begin(name, "record")
    try:
        yield
    finally:
        recorder.end()
