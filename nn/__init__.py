"""tinygrad_tf.nn: layers, losses, optimizers, schedules and state I/O with torch.nn's names.

    from tinygrad_tf import nn
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-2)
    nn.state.save("model.safetensors", model.state_dict())
"""
from . import functional, fused, init, optim, schedules, state, utils
from .layers import (GELU, CrossEntropyLoss, Dropout, Embedding, Identity, LayerNorm, Linear,
                     LogSoftmax, MSELoss, ReLU, Sigmoid, Softmax, Tanh)
from .module import Module, ModuleDict, ModuleList, Parameter, Sequential

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "Linear",
           "Embedding", "LayerNorm", "Dropout", "ReLU", "GELU", "Tanh", "Sigmoid", "Softmax",
           "LogSoftmax", "Identity", "CrossEntropyLoss", "MSELoss", "functional", "fused", "init",
           "optim", "schedules", "state", "utils"]
