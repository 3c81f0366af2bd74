"""What the nn.functional and loss tests share: the one value-and-gradcheck helper and the float64
references more than one of them uses."""
import numpy as np

from tinygrad_tf import Tensor, gradcheck


def check(fn, reference, *inputs, **gradcheck_kwargs):
    """fn's value matches the numpy reference (shape, dtype, values); then gradcheck fn."""
    out = fn(*inputs)
    expected = reference(*[x.array if isinstance(x, Tensor) else x for x in inputs])
    assert out.shape == np.shape(expected)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.array, expected, rtol=1e-10, atol=1e-12)
    assert gradcheck(fn, *inputs, **gradcheck_kwargs)


def ref_log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def reduced(loss, reduction):
    """A loss's elements reduced as torch's reduction= does ('none', 'sum' or 'mean')."""
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()
