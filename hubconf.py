"""torch.hub entry points: every zoo name, e.g. ``torch.hub.load(repo, "resnet50_cgc", pretrained=False)``.

``pretrained=True`` loads the name's first weight tag; ``pretrained_cfg="fashion_scenes"`` picks another tag.
"""

dependencies = ["torch", "timm", "safetensors", "huggingface_hub"]

import timm as _timm  # noqa: E402

import consistentzoo as _consistentzoo  # noqa: E402  (registers the zoo names with timm)

globals().update({_name: _timm.models.model_entrypoint(_name) for _name in _consistentzoo.list_models()})
