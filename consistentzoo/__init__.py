"""consistentzoo: image classifiers trained so that their explanations can be trusted.

Importing the package registers every zoo model with timm, so ``timm.create_model("resnet50_cgc")`` works.
"""

from .models import create_model, get_weights, list_models, list_weights

__version__ = "0.1.0.dev0"

__all__ = ["create_model", "get_weights", "list_models", "list_weights", "__version__"]
