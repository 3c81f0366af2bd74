"""torch.onnx: importing works; exporting is not supported (there is no tracer to ONNX here)."""


def export(model, args=None, f=None, *rest, **kwargs):
    raise NotImplementedError(
        "onnx.export: tinygrad_tf cannot export ONNX graphs. Save the weights with "
        "tinygrad_tf.save(model.state_dict(), path) (safetensors), load them into the same "
        "architecture in torch (model.load_state_dict(...)), and export from there")


def is_in_onnx_export():
    return False
