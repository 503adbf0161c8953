"""Named registry of teacher/student architectures, parameter/MAC counts and model files.

Families (see :func:`list_models`): ``teacher_cnn`` (VGG-like teacher), ``fitnet`` (FitNets
thin-and-deep student) and ``cifar_resnet`` (He et al.'s 6n+2 ResNet). Each works on 8x8, 28x28
and 32x32 inputs, exports to ONNX, and names its layers (``features.block2.conv1``...) so that
distillation hints and channel pruning can address them.

Example:
    >>> from edgec.models import create_model, count_params, ModelSpec, save_model, load_model
    >>> spec = ModelSpec("fitnet", {}, in_channels=1, num_classes=10, input_size=8)
    >>> model = spec.build()
    >>> save_model(model, spec, "student.safetensors")
    >>> model, spec = load_model("student.safetensors")
"""

from edgec.models.registry import create_model, list_models, model_params, register_model

# Importing the family modules registers them.
from edgec.models import cifar_resnet as _cifar_resnet  # noqa: E402,F401
from edgec.models import fitnet as _fitnet  # noqa: E402,F401
from edgec.models import teacher_cnn as _teacher_cnn  # noqa: E402,F401
from edgec.models.counting import count_flops, count_params  # noqa: E402
from edgec.models.files import load_model, load_state_dict_file, save_model  # noqa: E402
from edgec.models.spec import ModelSpec  # noqa: E402

__all__ = [
    "ModelSpec",
    "count_flops",
    "count_params",
    "create_model",
    "list_models",
    "load_model",
    "load_state_dict_file",
    "model_params",
    "register_model",
    "save_model",
]
