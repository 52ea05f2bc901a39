"""torch.hub entry points: every zoo name, e.g. ``torch.hub.load(repo, "resnet50_cgc", pretrained=False)``.

Each entry point is ``consistentzoo.create_model(name, pretrained, **kwargs)``, so every argument of timm's
``create_model`` works through torch.hub too (``features_only``, ``in_chans``, ``pretrained_cfg_overlay``,
``checkpoint_path``, ...). ``pretrained=True`` loads the name's first weight tag; ``pretrained_cfg="fashion_scenes"``
picks another tag; ``pretrained="<folder>"`` loads a weights folder.
"""

dependencies = ["torch", "timm", "safetensors", "huggingface_hub"]

import timm as _timm  # noqa: E402

import consistentzoo as _consistentzoo  # noqa: E402  (registers the zoo names with timm)


def _entrypoint(name):
    def entrypoint(pretrained=False, **kwargs):
        return _consistentzoo.create_model(name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = _timm.models.model_entrypoint(name).__doc__  # what torch.hub.help prints
    return entrypoint


globals().update({_name: _entrypoint(_name) for _name in _consistentzoo.list_models()})
