"""The zoo's models: timm registration of every zoo name, AlexNet, and weight metadata.

Importing this package registers ``{resnet18,resnet50}[_gmp]_{objective}`` and ``alexnet_{objective}`` with timm.
"""

from . import alexnet, resnet  # noqa: F401  (registers the entry points with timm)
from .errors import (
    CheckpointMismatchError,
    UnknownModelError,
    WeightsConfigError,
    WeightsIntegrityError,
    WeightsUnavailableError,
)
from .factory import create_model, label_names, list_models, load_model, zoo_model_names
from .metadata import HubLocation, Paper, Reported, ZooWeights, get_weights, list_weights
from .weights import load_state_dict, read_config, resolve_weights_file, save_pretrained

__all__ = [
    "CheckpointMismatchError",
    "HubLocation",
    "Paper",
    "Reported",
    "UnknownModelError",
    "WeightsConfigError",
    "WeightsIntegrityError",
    "WeightsUnavailableError",
    "ZooWeights",
    "create_model",
    "get_weights",
    "label_names",
    "list_models",
    "list_weights",
    "load_model",
    "load_state_dict",
    "read_config",
    "resolve_weights_file",
    "save_pretrained",
    "zoo_model_names",
]
