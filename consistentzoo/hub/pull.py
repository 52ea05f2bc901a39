"""Fetching a whole published folder (weights, config, card, metrics, training config) from the Hub.

A tag's weights alone resolve through :func:`consistentzoo.models.resolve_weights_file` (``pretrained=True``).
:func:`pull` adds what that does not: any repository, not only registered tags, fetched whole into a folder that
``create_model(name, pretrained=folder)`` and ``timm.create_model("local-dir:...")`` read, with an explicit endpoint
and cache, every file verified against the hash the Hub reports for it, and the same eviction.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from ..models.errors import WeightsIntegrityError, WeightsUnavailableError
from ..models.weights import WEIGHTS_NAME, evict_cached, sha256sum, transport_errors

HUB_RECORD_NAME = "hub.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")

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
    """Download a repository's files at a revision (through the Hub cache) and verify every one of them.

    Each file is checked against the hash the Hub reports for it (``ETag``/``X-Linked-Etag``: the sha256 for LFS
    files such as the weights, the git blob id for regular files); ``huggingface_hub`` itself checks only the size.
    ``sha256`` pins the weights further. The hashes are recorded in ``<folder>/hub.json`` (repo, commit, endpoint and
    per-file hashes), which verifies the files again when pulled offline (``HF_HUB_OFFLINE=1``) from the cache.

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
        WeightsIntegrityError: a file differs from the hash the Hub reports (it is removed), or the weights' sha256
            differs from ``sha256``.
    """
    from huggingface_hub import HfApi, constants, snapshot_download

    offline = constants.is_offline_mode()
    try:
        if not offline:  # resolve the branch once, so the files and their hashes come from one commit
            revision = HfApi(endpoint=endpoint, token=token).repo_info(repo_id, revision=revision).sha or revision
        folder = Path(
            snapshot_download(
                repo_id, revision=revision, endpoint=endpoint, token=token, cache_dir=cache_dir, local_dir=local_dir
            )
        )
        hashes = _recorded_hashes(folder) if offline else _hub_hashes(repo_id, revision, endpoint, token)
    except transport_errors() as e:
        raise WeightsUnavailableError(
            f"could not get {repo_id}@{revision} from the Hub ({type(e).__name__}: {e}). Without a network, a "
            "revision downloaded before is read from the cache with HF_HUB_OFFLINE=1."
        ) from e
    except _hub_errors() as e:
        raise WeightsUnavailableError(f"could not get {repo_id}@{revision} from the Hub: {e}") from e
    where = f"{repo_id}@{revision}"
    _verify_folder(folder, hashes, sha256, where)
    if not offline:
        _record(folder, repo_id, revision, endpoint, hashes)
    _logger.info("pulled %s into %s (%d files verified)", where, folder, len(hashes))
    return folder


def _verify_folder(folder: Path, hashes: dict[str, str], sha256: str | None, where: str) -> None:
    """Every file against its Hub hash, the weights against ``sha256`` too; files without a hash are named."""
    for name, expected in sorted(hashes.items()):
        _verify(folder / name, expected, f"{where}: {name}", "the hash the Hub reports for it")
    weights = folder / WEIGHTS_NAME
    if sha256 is not None:
        if not weights.is_file():
            raise WeightsIntegrityError(f"{where} has no {WEIGHTS_NAME} to check against the sha256")
        if hashes.get(WEIGHTS_NAME) != f"sha256:{sha256}":  # else the loop above has just checked this very hash
            _verify(weights, f"sha256:{sha256}", f"{where}: {WEIGHTS_NAME}", "the expected sha256")
    unverified = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != HUB_RECORD_NAME and ".cache" not in p.relative_to(folder).parts
        and p.relative_to(folder).as_posix() not in hashes
    )  # fmt: skip
    if unverified:
        _logger.warning("%s: no hash to verify %s against (the Hub reported none)", where, ", ".join(unverified))


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    return (HfHubHTTPError, LocalEntryNotFoundError)


def _hub_hashes(repo_id: str, commit: str, endpoint: str | None, token: str | None) -> dict[str, str]:
    """``{path: "sha256:<hex>" | "git-sha1:<hex>"}`` from the ETag the Hub answers for each file at ``commit``."""
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url

    api = HfApi(endpoint=endpoint, token=token)
    hashes = {}
    for name in api.list_repo_files(repo_id, revision=commit):
        url = hf_hub_url(repo_id, name, revision=commit, endpoint=api.endpoint)
        etag = (get_hf_file_metadata(url, token=token, endpoint=api.endpoint).etag or "").lower()
        if _SHA256.fullmatch(etag):  # an LFS file: the sha256 of its content
            hashes[name] = f"sha256:{etag}"
        elif _GIT_SHA1.fullmatch(etag):  # a regular file: its git blob id
            hashes[name] = f"git-sha1:{etag}"
    return hashes


def _recorded_hashes(folder: Path) -> dict[str, str]:
    """The hashes an online pull recorded in ``hub.json`` (offline, the Hub cannot be asked)."""
    path = folder / HUB_RECORD_NAME
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text())["verified"])
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsIntegrityError(f"{path}: unreadable record of the pulled files' hashes ({e})") from e


def _verify(path: Path, expected: str, what: str, against: str) -> None:
    kind, _, digest = expected.partition(":")
    if not path.is_file():
        raise WeightsIntegrityError(f"{what} is missing from {path.parent}")
    actual = sha256sum(path) if kind == "sha256" else _git_blob_sha1(path)
    if actual != digest:
        evict_cached(path)
        raise WeightsIntegrityError(
            f"{what} has {kind} {actual}, not {against} ({digest}); the download was removed, pull again"
        )


def _git_blob_sha1(path: Path) -> str:
    from huggingface_hub.utils.sha import git_hash

    return git_hash(path.read_bytes())


def _record(folder: Path, repo_id: str, commit: str, endpoint: str | None, hashes: dict[str, str]) -> None:
    from huggingface_hub import constants

    weights = hashes.get(WEIGHTS_NAME, "")
    record = {
        "repo_id": repo_id,
        "revision": commit,
        "endpoint": endpoint or constants.ENDPOINT,
        "sha256": weights.removeprefix("sha256:") if weights.startswith("sha256:") else None,
        "filename": WEIGHTS_NAME,
        "verified": hashes,
    }
    try:
        (folder / HUB_RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    except OSError as e:  # a read-only cache: the files are verified, only the record is missing
        _logger.warning("could not record the verified hashes in %s: %s", folder / HUB_RECORD_NAME, e)
