"""torch.einsum, composed of Tensor ops: each pair of operands is contracted with one batched
matmul (never broadcast-multiply-sum, whose temporaries are the product of every size), so its
gradient, and the gradient of that, come from permute, reshape, matmul, sum and indexing.

    einsum("bhqd,bhkd->bhqk", q, k)    einsum("ij,jk", a, b)    einsum("ii", m)    "...ij,...jk"
"""
import string

import numpy as np

from .tensor import Tensor


def _parse(equation, operands):
    """([letters of each operand], output letters), the ellipsis spelled out as letters the
    equation does not use (its dims broadcast, right-aligned, as numpy's); an implicit output is
    the ellipsis dims, then the letters used once in alphabetical order, as torch's."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: {equation!r} names {len(terms)} operands, got {len(operands)}")
    width = max((t.ndim - len(term) + 3 for term, t in zip(terms, operands) if "..." in term),
                default=0)
    free = [c for c in string.ascii_letters if c not in equation]
    ellipsis = "".join(free[:width])
    spelled = []
    for term, t in zip(terms, operands):
        if "..." in term:
            term = term.replace("...", ellipsis[width - (t.ndim - len(term) + 3):])
        if (term and not term.isalpha()) or len(term) != t.ndim:
            raise ValueError(f"einsum: operand {term!r} does not match a tensor of shape {t.shape}")
        spelled.append(term)
    if arrow:
        return spelled, rhs.replace("...", ellipsis)
    letters = "".join(spelled)
    once = sorted(c for c in set(letters) if c not in ellipsis and letters.count(c) == 1)
    return spelled, ellipsis + "".join(once)


def _diagonal(t, term):
    """Take the diagonal of a letter repeated within one operand ('ii' -> 'i')."""
    while len(set(term)) < len(term):
        letter = next(c for c in term if term.count(c) > 1)
        first, second = [i for i, c in enumerate(term) if c == letter][:2]
        t = t.diagonal(0, first, second)  # the diagonal becomes the last dim
        term = "".join(c for i, c in enumerate(term) if i not in (first, second)) + letter
    return t, term


def _sum_out(t, term, keep):
    """Sum over the letters of `term` not in `keep`."""
    dims = tuple(i for i, c in enumerate(term) if c not in keep)
    if not dims:
        return t, term
    return t.sum(dims), "".join(c for c in term if c in keep)


def _contract(a, la, b, lb, keep):
    """a (letters la) times b (letters lb), summed over the shared letters not in `keep`."""
    batch = [c for c in la if c in lb and c in keep]
    summed = [c for c in la if c in lb and c not in keep]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]
    size = {}
    for t, term in ((a, la), (b, lb)):
        for c, n in zip(term, t.shape):
            size[c] = n if size.get(c, 1) == 1 else size[c]
    a = a.permute(*[la.index(c) for c in batch + left + summed])
    b = b.permute(*[lb.index(c) for c in batch + summed + right])
    a = a.expand(*[size[c] for c in batch + left + summed])  # size-1 (ellipsis) dims broadcast
    b = b.expand(*[size[c] for c in batch + summed + right])
    count = lambda letters: int(np.prod([size[c] for c in letters]))  # noqa: E731
    out = a.reshape(count(batch), count(left), count(summed)) @ \
        b.reshape(count(batch), count(summed), count(right))   # (batch, left, right)
    return out.reshape(*[size[c] for c in batch + left + right]), "".join(batch + left + right)


def einsum(equation, *operands):
    """Sum of products over the letters of `equation` missing from its output (torch.einsum):
    "ij,jk->ik" is a matrix product, "ii" a trace, "bi,bj->bij" an outer product per row."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    operands = [t if isinstance(t, Tensor) else Tensor(t) for t in operands]
    terms, output = _parse(equation, operands)
    if len(set(output)) != len(output) or set(output) - set("".join(terms)):
        raise ValueError(f"einsum: output {output!r} repeats a letter or has one no input has")
    pending = []
    for index, (t, term) in enumerate(zip(operands, terms)):
        t, term = _diagonal(t, term)
        elsewhere = output + "".join(terms[:index] + terms[index + 1:])
        pending.append(_sum_out(t, term, elsewhere))
    result, letters = pending[0]
    for index, (t, term) in enumerate(pending[1:], start=1):
        later = output + "".join(term for _, term in pending[index + 1:])
        result, letters = _contract(result, letters, t, term, later)
    result, letters = _sum_out(result, letters, output)
    return result.permute(*[letters.index(c) for c in output]) if output else result
