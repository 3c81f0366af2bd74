"""How the grad-mode context managers (`no_grad`, `enable_grad`, `set_grad_enabled`,
`inference_mode`) decorate a function, as torch's do: each call runs in a fresh context, and a
generator function runs in it at every resume (its body runs then, not when it is called: a plain
`with` around the call would switch the mode back before the first `next`)."""
import functools
import inspect
import sys


def decorate(make_context, function):
    """`function` wrapped so that it runs inside `make_context()`."""
    if inspect.isgeneratorfunction(function):
        return _decorate_generator(make_context, function)

    @functools.wraps(function)
    def call(*args, **kwargs):
        with make_context():
            return function(*args, **kwargs)
    return call


def _decorate_generator(make_context, function):
    @functools.wraps(function)
    def generator(*args, **kwargs):
        inner = function(*args, **kwargs)
        resume, value = inner.send, None  # how to resume `inner` next, and with what
        while True:
            try:
                with make_context():
                    value = resume(value)
            except StopIteration as stop:
                return stop.value
            try:
                sent = yield value
            except GeneratorExit:
                with make_context():
                    inner.close()
                raise
            except BaseException:  # thrown in by the caller: pass it on to `inner`
                resume, value = inner.throw, sys.exc_info()[1]
            else:
                resume, value = inner.send, sent
    return generator
