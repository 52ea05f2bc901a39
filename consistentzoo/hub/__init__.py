"""Publishing and fetching zoo weights: one-commit pushes, whole-folder pulls, and generated model cards.

Single weights files resolve through :func:`consistentzoo.models.resolve_weights_file` (``pretrained=True``); this
package adds :func:`push` (weights + timm config + training config + metrics + card in one commit),
:func:`pull` (a whole repository folder, sha256-checked) and :func:`build_card` / :func:`write_card`.
"""

from .card import CARD_IMAGE_NAME, METRICS_NAME, MeasuredMetric, build_card, load_metrics, metric_key, write_card
from .cli import add_hub_parsers, run_card, run_push
from .errors import HubAuthError, HubPushError, InvalidWeightsError
from .pull import pull
from .push import HUB_RECORD_NAME, PushResult, push

__all__ = [
    "CARD_IMAGE_NAME",
    "HUB_RECORD_NAME",
    "METRICS_NAME",
    "HubAuthError",
    "HubPushError",
    "InvalidWeightsError",
    "MeasuredMetric",
    "PushResult",
    "add_hub_parsers",
    "build_card",
    "load_metrics",
    "metric_key",
    "pull",
    "push",
    "run_card",
    "run_push",
    "write_card",
]
