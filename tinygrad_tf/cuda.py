"""torch.cuda as a CPU-only build of torch has it: nothing is available, seeding is harmless, and
anything that would need a GPU raises saying so."""
from . import amp  # noqa: F401 (torch.cuda.amp.GradScaler / autocast)



def is_available():
    return False


def device_count():
    return 0


def is_initialized():
    return False


def manual_seed(seed):
    """Seeds nothing on a GPU (there is none); harmless, as torch's on a CPU build."""


def manual_seed_all(seed):
    """Seeds nothing on a GPU (there is none); harmless, as torch's on a CPU build."""


def seed():
    pass


def seed_all():
    pass


def synchronize(device=None):
    pass


def empty_cache():
    pass


def is_bf16_supported(including_emulation=True):
    return False


def _no_gpu(name):
    def function(*args, **kwargs):
        raise RuntimeError(f"torch.cuda.{name}: tinygrad_tf has no CUDA (cuda.is_available() is "
                           "False); run on the CPU")
    function.__name__ = name
    return function


current_device = _no_gpu("current_device")
set_device = _no_gpu("set_device")
get_device_name = _no_gpu("get_device_name")
get_device_properties = _no_gpu("get_device_properties")
memory_allocated = _no_gpu("memory_allocated")
max_memory_allocated = _no_gpu("max_memory_allocated")

