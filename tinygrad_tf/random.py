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
