"""Fetching a whole published folder (weights, config, card, metrics, training config) from the Hub.

A tag's weights alone resolve through :func:`consistentzoo.models.resolve_weights_file` (``pretrained=True``).
:func:`pull` adds what that does not: any repository, not only registered tags, fetched whole into a folder that
``create_model(name, pretrained=folder)`` and ``timm.create_model("local-dir:...")`` read, with an explicit endpoint
and cache, and the same sha256 check and eviction.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..models.errors import WeightsIntegrityError, WeightsUnavailableError
from ..models.weights import WEIGHTS_NAME, evict_cached, sha256sum, transport_errors

_logger = logging.getLogger(__name__)


def pull(
    repo_id: str,
    revision: str = "main",
    *,
    sha256: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
) -> Path:
    """Download a repository's files at a revision (through the Hub cache) and verify the weights.

    Works offline (``HF_HUB_OFFLINE=1``) once the revision is cached.

    Args:
        repo_id: ``owner/name``.
        revision: branch, tag or commit oid; pin a commit oid for reproducible loads.
        sha256: expected sha256 of ``model.safetensors``; a mismatch evicts the cached file and raises.
        endpoint: Hub URL; default ``HF_ENDPOINT`` / huggingface.co.
        token: read token for private repositories.
        cache_dir: Hub cache folder; default ``$HF_HUB_CACHE``.
        local_dir: copy the files to this folder instead of returning the cache snapshot.

    Returns:
        The folder holding the files.

    Raises:
        WeightsUnavailableError: the repository or revision cannot be reached and is not cached.
        WeightsIntegrityError: the weights' sha256 differs from ``sha256``.
    """
    from huggingface_hub import snapshot_download

    try:
        folder = Path(
            snapshot_download(
                repo_id, revision=revision, endpoint=endpoint, token=token, cache_dir=cache_dir, local_dir=local_dir
            )
        )
    except transport_errors() as e:
        raise WeightsUnavailableError(
            f"could not get {repo_id}@{revision} from the Hub ({type(e).__name__}: {e}). Without a network, a "
            "revision downloaded before is read from the cache with HF_HUB_OFFLINE=1."
        ) from e
    weights = folder / WEIGHTS_NAME
    if sha256 is not None:
        if not weights.is_file():
            raise WeightsIntegrityError(f"{repo_id}@{revision} has no {WEIGHTS_NAME} to check against the sha256")
        if (actual := sha256sum(weights)) != sha256:
            evict_cached(weights)
            raise WeightsIntegrityError(
                f"{repo_id}@{revision}: {WEIGHTS_NAME} has sha256 {actual}, not the expected {sha256}; "
                "the download was removed"
            )
    _logger.info("pulled %s@%s into %s", repo_id, revision, folder)
    return folder
