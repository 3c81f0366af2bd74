"""Draw the graph autograd recorded for a result, as Graphviz DOT text or a picture."""
import shutil
import subprocess


def _label(tensor, name):
    grad = ", requires_grad" if tensor.requires_grad else ""
    return f"{name}\\n{tuple(tensor.shape)} {tensor.dtype}{grad}"


def to_dot(tensor):
    """The recorded graph behind `tensor` as DOT text: a box per tensor (shape, dtype, whether it
    requires grad) and an ellipse per op, arrows in the forward direction."""
    lines = ["digraph tinygrad_tf {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    seen, stack = set(), [tensor]
    while stack:  # iterative, like backward, so deep graphs draw too
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        kind = "leaf" if t._ctx is None else "tensor"
        lines.append(f'  t{id(t)} [shape=box, label="{_label(t, kind)}"];')
        ctx = t._ctx
        if ctx is None or ctx.parents is None:
            continue
        lines.append(f'  f{id(ctx)} [shape=ellipse, label="{type(ctx).__name__}"];')
        lines.append(f"  f{id(ctx)} -> t{id(t)};")
        for parent in ctx.parents:
            lines.append(f"  t{id(parent)} -> f{id(ctx)};")
            stack.append(parent)
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(tensor, path):
    """Render the graph to `path` (.svg or .png) with Graphviz's `dot` program."""
    fmt = str(path).rsplit(".", 1)[-1].lower()
    if fmt not in ("svg", "png"):
        raise ValueError(f"viz.draw: path must end in .svg or .png, got {path!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("viz.draw needs Graphviz's `dot` program, which is not installed "
                           "(e.g. `apt-get install graphviz`); viz.to_dot(tensor) gives the text")
    subprocess.run([dot, f"-T{fmt}", "-o", str(path)], input=to_dot(tensor), text=True,
                   check=True)
    return path
