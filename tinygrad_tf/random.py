"""One seeded random generator behind every random op, so `manual_seed(n)` reproduces a run."""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed the generator used by randn, rand, dropout and initialisation."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def generator():
    """The current numpy Generator (use it for any random draw that should follow manual_seed)."""
    return _generator


def get_state():
    """The generator's state, a JSON-friendly dict, for checkpoints."""
    return _generator.bit_generator.state


def set_state(state):
    _generator.bit_generator.state = state


class Generator:
    """torch.Generator: a random stream of its own, for `randperm(n, generator=g)`, a
    DataLoader's shuffling or `random_split`, that `manual_seed` of the global one leaves alone.
    Wraps a numpy Generator (`.numpy`); its numbers are not torch's."""

    def __init__(self, device="cpu"):
        from .device import check
        check(device, "Generator")
        self._seed = int(np.random.SeedSequence().entropy % 2**63)
        self.numpy = np.random.default_rng(self._seed)

    def manual_seed(self, seed):
        self._seed = int(seed)
        self.numpy = np.random.default_rng(self._seed)
        return self

    def seed(self):
        """Reseed from fresh entropy; returns the new seed."""
        return self.manual_seed(np.random.SeedSequence().entropy % 2**63).initial_seed()

    def initial_seed(self):
        return self._seed

    def get_state(self):
        return self.numpy.bit_generator.state

    def set_state(self, state):
        self.numpy.bit_generator.state = state
        return self

    @property
    def device(self):
        from .device import CPU
        return CPU


def generator_of(generator):
    """The numpy Generator behind a Generator argument (None: the global, seeded one)."""
    if generator is None:
        return _generator
    if isinstance(generator, Generator):
        return generator.numpy
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator: expected a tinygrad_tf.Generator, got {type(generator).__name__}")
