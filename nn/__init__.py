"""tinygrad_tf.nn: layers, losses, optimizers, schedules and state I/O with torch.nn's names.

    from tinygrad_tf import nn
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-2)
    nn.state.save("model.safetensors", model.state_dict())
"""
from . import functional, fused, init, optim, schedules, state, utils
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d
from .activations import (CELU, ELU, GLU, SELU, CosineSimilarity, Hardsigmoid, Hardswish,
                          Hardtanh, LogSigmoid, Mish, PairwiseDistance, PReLU, ReLU6, Softmin,
                          Softsign, Tanhshrink)
from .containers import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .layers import (GELU, Dropout, Embedding, Flatten, Identity, LayerNorm, LeakyReLU, Linear,
                     LogSoftmax, ReLU, RMSNorm, Sigmoid, SiLU, Softmax, Softplus, Tanh, Unflatten)
from .loss_modules import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss,
                           L1Loss, MSELoss, NLLLoss, SmoothL1Loss)
from .module import Module, Parameter
from .multihead import MultiheadAttention
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from .transformer import (Transformer, TransformerDecoder, TransformerDecoderLayer,
                          TransformerEncoder, TransformerEncoderLayer)

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "ParameterList",
           "ParameterDict", "Linear", "Embedding", "LayerNorm", "RMSNorm", "Dropout", "ReLU",
           "GELU", "SiLU", "LeakyReLU", "Softplus", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
           "Identity", "Flatten", "MultiheadAttention", "Transformer", "TransformerEncoder",
           "TransformerDecoder", "TransformerEncoderLayer", "TransformerDecoderLayer", "RNNBase",
           "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell", "CrossEntropyLoss", "NLLLoss", "MSELoss",
           "L1Loss", "SmoothL1Loss", "KLDivLoss", "BCELoss", "BCEWithLogitsLoss", "functional",
           "fused", "init", "optim", "schedules", "state", "utils", "ELU", "SELU", "CELU",
           "Hardtanh", "ReLU6", "Hardsigmoid", "Hardswish", "Mish", "LogSigmoid", "Softsign",
           "Tanhshrink", "Softmin", "GLU", "PReLU", "CosineSimilarity", "PairwiseDistance",
           "Unflatten", "HuberLoss", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]
