"""The recorded graph as torch shows it: `grad_fn.name()` and `grad_fn.next_functions`.

Every recorded op (an `ArrayFunction`, which inherits `GraphNode`) is a node; `t.grad_fn` is
the node that made `t`. `next_functions` holds one `(node, output_index)` pair per input of the
op, as torch: the node that made that input, an `AccumulateGrad` node for a leaf that requires
grad, `(None, 0)` for an input that needs no gradient. Walking these pairs from `loss.grad_fn`
visits the graph `backward` will run (viz.py draws the same graph from the tensors' side).
"""
import weakref


class GraphNode:
    """The read-only graph view every recorded op has (a mixin of ArrayFunction)."""

    def name(self):
        """The node's name, torch's style: "MulBackward" (torch: "MulBackward0")."""
        name = type(self).__name__
        return name if name.endswith("Backward") else f"{name}Backward"

    @property
    def next_functions(self):
        """((node, output_index), ...): one pair per input, as torch's grad_fn.next_functions."""
        parents = getattr(self, "parents", None)
        if parents is None:  # torch keeps the edges after backward; we free the node
            raise RuntimeError(f"{self.name()}.next_functions: the node was freed by backward; "
                               "pass retain_graph=True to keep walking the graph after it")
        return tuple(edge_to(parent) for parent in parents)

    def _edge(self):
        # (the node a consumer sees, which of its outputs): a node with one output is itself
        return self, 0


def edge_to(tensor):
    """The (node, output_index) pair an op's input contributes to next_functions."""
    if not tensor.requires_grad:
        return None, 0
    if tensor._ctx is None:
        return accumulate_grad(tensor), 0
    return tensor._ctx._edge()


class AccumulateGrad:
    """The node a leaf's gradient ends at (torch's AccumulateGrad): `variable` is the leaf."""

    next_functions = ()

    def __init__(self, leaf):
        self._leaf = weakref.ref(leaf)

    @property
    def variable(self):
        return self._leaf()

    def name(self):
        return "torch::autograd::AccumulateGrad"

    def __repr__(self):
        return "<AccumulateGrad>"


# id(leaf) -> its AccumulateGrad, one per leaf while it lives, so a walk that meets a leaf twice
# meets one node (as torch's, kept on the tensor).
_accumulators = {}


def accumulate_grad(leaf):
    node = _accumulators.get(id(leaf))
    if node is None or node.variable is not leaf:
        node = _accumulators[id(leaf)] = AccumulateGrad(leaf)
        weakref.finalize(leaf, _accumulators.pop, id(leaf), None)
    return node
