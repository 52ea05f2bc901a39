"""The shared training loop every recipe drives (see ``recipes/README.md``).

- :mod:`~consistentzoo.training.config`: typed configs from YAML + ``--set`` overrides, checked before any work.
- :mod:`~consistentzoo.training.objectives`: one adapter per objective (views it needs, how a batch is called).
- :mod:`~consistentzoo.training.data`: per-objective views, the resumable sharded batch order.
- :mod:`~consistentzoo.training.checkpoint`: atomic, verified checkpoints and the resume rule.
- :mod:`~consistentzoo.training.outdir`: one run per output folder (lock, no silent overwrite).
- :mod:`~consistentzoo.training.loop`: ``train(cfg, hardware)`` under Accelerate.
- :mod:`~consistentzoo.training.recipe`: the command line the recipes share.

Heavy imports (accelerate, datasets) happen inside the functions that need them.
"""

from .checkpoint import CheckpointError, DiskFullError
from .config import ConfigError, TrainingConfig, load_config
from .outdir import OutputDirError

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DiskFullError",
    "OutputDirError",
    "TrainingConfig",
    "load_config",
    "train",
]


def train(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
    """See :func:`consistentzoo.training.loop.train` (imported lazily: it pulls in accelerate)."""
    from .loop import train as _train

    return _train(*args, **kwargs)
