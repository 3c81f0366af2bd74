"""torch.linalg's norms (vector_norm, matrix_norm with 'fro', norm), composed of Tensor.norm, so
their gradients come with them. Other torch.linalg functions (inv, solve, svd...) are not here."""


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """The ord-norm of x's elements (flattened when dim is None): sum(|x|^ord)^(1/ord), max|x|
    for inf, min|x| for -inf, the count of nonzeros for 0."""
    x = x if dtype is None else x.to(dtype)
    if dim is None and not keepdim:
        x = x.reshape(-1)
    return x.norm(ord, dim, keepdim)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """The Frobenius norm over the two dims `dim` (other orders are not supported)."""
    if ord != "fro":
        raise NotImplementedError(f"linalg.matrix_norm: ord={ord!r} is not supported, only 'fro'")
    return vector_norm(A, 2, tuple(dim), keepdim, dtype=dtype)


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """ord None: the 2-norm of the elements (of `dim`); 'fro': matrix_norm; a number with a
    vector (or one dim): vector_norm."""
    if ord is None:
        return vector_norm(A, 2, dim, keepdim, dtype=dtype)
    if ord == "fro":
        return matrix_norm(A, ord, (-2, -1) if dim is None else dim, keepdim, dtype=dtype)
    if isinstance(dim, int) or (dim is None and A.ndim == 1):
        return vector_norm(A, ord, dim, keepdim, dtype=dtype)
    raise NotImplementedError(f"linalg.norm: matrix norms of order {ord!r} are not supported "
                              "(use 'fro', or vector_norm)")


