"""Publishing weights: one Hub commit with the weights, timm config, training config, metrics and model card.

The commit holds ``model.safetensors``, timm's ``config.json`` (the stock architecture + ``model_args`` such as
``global_pool="max"``, so ``timm.create_model("hf-hub:org/repo", pretrained=True)`` rebuilds a ResNet without this
package), the resolved training config(s) (``*.yaml``), ``metrics.json``, the overlay figure and ``README.md``.
Everything goes in **one** commit through :meth:`huggingface_hub.HfApi.create_commit`, so a failed push leaves the
branch as it was.

Faults: a refused token raises :class:`HubAuthError` before anything is uploaded. A 5xx on the commit is retried
(``retries`` times) with ``parent_commit`` pinned to the branch head read before the push, so a commit that landed
although its response was lost is recognised instead of duplicated; when the retries run out,
:class:`HubPushError` says whether the branch is verified unchanged. (The client itself already retries the
preupload call on 5xx.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..models.errors import UnknownModelError, WeightsConfigError
from ..models.metadata import HubLocation, ZooWeights, get_weights
from ..models.weights import CONFIG_NAME, WEIGHTS_NAME, read_config, save_pretrained, sha256sum, transport_errors
from .card import CARD_IMAGE_NAME, CARD_NAME, METRICS_NAME, build_card, check_png, read_json, record_from_config
from .errors import HubAuthError, HubPushError, InvalidWeightsError
from .pull import HUB_RECORD_NAME

_logger = logging.getLogger(__name__)

_REPO_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+$")
_RETRY_WAIT_S = 1.0


@dataclass(frozen=True)
class PushResult:
    """Where a push landed.

    Attributes:
        repo_id: the Hub repository.
        revision: the commit oid holding the files (pin it in :class:`~consistentzoo.models.HubLocation`).
        sha256: sha256 of ``model.safetensors``.
        commit_url: URL of the commit.
        files: paths committed.
        endpoint: the Hub endpoint pushed to.
    """

    repo_id: str
    revision: str
    sha256: str
    commit_url: str
    files: tuple[str, ...]
    endpoint: str

    @property
    def hub(self) -> HubLocation:
        """The location to record in the tag's metadata (``dataclasses.replace(rec, hub=result.hub)``)."""
        return HubLocation(repo_id=self.repo_id, revision=self.revision, sha256=self.sha256, filename=WEIGHTS_NAME)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (what ``hub.json`` and ``consistentzoo push`` write)."""
        out = asdict(self)
        out["files"] = list(self.files)
        out["filename"] = WEIGHTS_NAME
        return out


def _record_for(tag: ZooWeights | str | None, cfg: dict[str, Any], num_params: int) -> ZooWeights | None:
    """The record the card is generated from: given; else the registered tag ``config.json`` names when the weights
    are that tag's (same dataset and class count); else one built from ``config.json``'s own facts (fine-tuning)."""
    if isinstance(tag, ZooWeights):
        return tag
    if isinstance(tag, str):
        return get_weights(tag)
    info = cfg.get("consistentzoo") or {}
    rec = None
    if info.get("zoo_name") and info.get("tag"):
        try:
            rec = get_weights(f"{info['zoo_name']}.{info['tag']}")
        except UnknownModelError:
            rec = None
    if (
        rec is not None
        and rec.num_classes == cfg.get("num_classes")
        and info.get("dataset", rec.dataset) == rec.dataset
    ):
        if rec.label_names is None and info.get("label_names"):
            rec = dataclasses.replace(rec, label_names=tuple(info["label_names"]))
        return rec
    if rec is not None:
        _logger.warning(
            "config.json names %s but holds %s classes of %s (the tag: %d of %s): the card describes the weights "
            "from config.json's facts, not from that tag",
            rec.name, cfg.get("num_classes"), info.get("dataset"), rec.num_classes, rec.dataset,
        )  # fmt: skip
    return record_from_config(cfg, num_params)


def validate_weights(folder: Path, cfg: dict[str, Any]) -> nn.Module:
    """Build the model ``config.json`` describes and load the folder's weights into it, as a user's load would.

    The loading functions of :mod:`consistentzoo.models` check that the file is safetensors and whole, that its
    tensors are finite and of the expected kinds, and that they fit the architecture and class count.

    Returns:
        The loaded model.

    Raises:
        InvalidWeightsError: any of these fails (nothing has been uploaded).
    """
    from ..models import CheckpointMismatchError, WeightsIntegrityError, create_model

    info = cfg.get("consistentzoo") or {}
    name = info.get("zoo_name") or cfg.get("architecture")
    if not name:
        raise InvalidWeightsError(f"{folder / CONFIG_NAME} names no architecture; nothing was uploaded")
    try:
        return create_model(name, pretrained=folder)
    except (WeightsIntegrityError, CheckpointMismatchError, UnknownModelError, KeyError, TypeError, ValueError) as e:
        raise InvalidWeightsError(
            f"{folder / WEIGHTS_NAME} does not load as the {name} that {CONFIG_NAME} describes: {e}; nothing was "
            "uploaded"
        ) from e


def _collect(
    folder: Path,
    metrics: str | Path | None,
    training_config: str | Path | Sequence[str | Path] | None,
    image: str | Path | None,
) -> dict[str, Path]:
    """Files to commit (path in repo -> local path), explicit arguments first, then what the folder holds."""
    files = {WEIGHTS_NAME: folder / WEIGHTS_NAME, CONFIG_NAME: folder / CONFIG_NAME}
    if not files[WEIGHTS_NAME].is_file():
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME} (only safetensors weights are pushed)")
    metrics_path = Path(metrics) if metrics is not None else folder / METRICS_NAME
    if metrics is not None and not metrics_path.is_file():
        raise FileNotFoundError(f"metrics file {metrics_path} does not exist")
    if metrics_path.is_file():
        read_json(metrics_path)  # a broken JSON fails here, before anything is sent
        files[METRICS_NAME] = metrics_path
    if training_config is None:
        configs = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    else:
        configs = (
            [Path(training_config)] if isinstance(training_config, (str, Path)) else list(map(Path, training_config))
        )
    for path in configs:
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} does not exist")
        files[path.name] = path
    image_path = Path(image) if image is not None else folder / CARD_IMAGE_NAME
    if image is not None or image_path.is_file():
        check_png(image_path)
        files[CARD_IMAGE_NAME] = image_path
    return files


def push(
    model_dir_or_model: str | Path | nn.Module,
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    tag: ZooWeights | str | None = None,
    metrics: str | Path | None = None,
    training_config: str | Path | Sequence[str | Path] | None = None,
    image: str | Path | None = None,
    private: bool = False,
    commit_message: str | None = None,
    retries: int = 2,
    half: bool = False,
) -> PushResult:
    """Upload a weights folder (or a model) with its configs, metrics and a generated card, in one commit.

    Args:
        model_dir_or_model: a folder with ``config.json`` + ``model.safetensors`` (from a recipe or
            :func:`~consistentzoo.models.save_pretrained`), or a model to save first.
        repo_id: ``owner/name``; created if missing.
        revision: branch to commit to (it must exist); default ``main``.
        token: write token; default the locally saved one / ``HF_TOKEN``.
        endpoint: Hub URL; default ``HF_ENDPOINT`` / huggingface.co.
        tag: the weight tag the card describes (record or ``name.tag``); default the tag named in ``config.json``
            when its class count matches. Without one no card is pushed (a warning says so).
        metrics: metrics JSON; default ``metrics.json`` in the folder if present.
        training_config: resolved training config(s); default every ``*.yaml``/``*.yml`` in the folder.
        image: PNG grid of Grad-CAM overlays for the card; default ``gradcam_overlays.png`` in the folder.
        private: create the repository private.
        commit_message: commit summary; default names the tag and the weights' sha256.
        retries: extra attempts of the commit after a 5xx answer.
        half: when saving a model, store fp16 weights.

    Returns:
        The commit's :class:`PushResult`. For a folder it is also written to ``<folder>/hub.json``.

    Raises:
        ValueError: a malformed ``repo_id`` or a broken input file.
        InvalidWeightsError: the weights do not load into the model ``config.json`` describes (truncated, not
            safetensors, non-finite, another architecture or class count); checked before anything is sent.
        FileNotFoundError: the folder is not a weights folder, or a named file is missing.
        HubAuthError: the token was refused; nothing was uploaded.
        HubPushError: the server failed (after retries) or the branch moved during the push.
    """
    if not _REPO_ID_RE.match(repo_id):
        raise ValueError(f"repo_id must look like 'owner/name', got {repo_id!r}")
    if isinstance(model_dir_or_model, nn.Module):
        with tempfile.TemporaryDirectory(prefix="cz-push-") as tmp:
            save_pretrained(model_dir_or_model, tmp, half=half)
            return _push_folder(Path(tmp), repo_id, False, revision, token, endpoint, tag, metrics,
                                training_config, image, private, commit_message, retries)  # fmt: skip
    return _push_folder(Path(model_dir_or_model), repo_id, True, revision, token, endpoint, tag, metrics,
                        training_config, image, private, commit_message, retries)  # fmt: skip


def _push_folder(
    folder: Path,
    repo_id: str,
    record_result: bool,
    revision: str | None,
    token: str | None,
    endpoint: str | None,
    tag: ZooWeights | str | None,
    metrics: str | Path | None,
    training_config: str | Path | Sequence[str | Path] | None,
    image: str | Path | None,
    private: bool,
    commit_message: str | None,
    retries: int,
) -> PushResult:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        cfg = read_config(folder)
    except WeightsConfigError as e:
        raise InvalidWeightsError(f"{e}; nothing was uploaded") from e
    files = _collect(folder, metrics, training_config, image)
    model = validate_weights(folder, cfg)
    rec = _record_for(tag, cfg, sum(p.numel() for p in model.parameters()))
    sha = sha256sum(files[WEIGHTS_NAME])
    payload: dict[str, Path | bytes] = dict(files)
    if rec is not None:
        card = build_card(
            rec, files.get(METRICS_NAME), image=CARD_IMAGE_NAME if CARD_IMAGE_NAME in files else None,
            repo_id=repo_id, sha256=sha,
        )  # fmt: skip
        payload[CARD_NAME] = str(card).encode()
    else:
        _logger.warning("no weight tag known for %s: pushing without a model card (pass tag=...)", folder)
    name = rec.name if rec else cfg.get("architecture", "model")
    message = commit_message or f"Upload {name} (model.safetensors sha256 {sha[:12]})"

    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    with _explained(repo_id, api.endpoint, "before uploading anything"):
        try:
            parent = api.repo_info(repo_id, revision=branch).sha
        except RepositoryNotFoundError:
            # create only when missing: huggingface_hub 2.4's create_repo(exist_ok=True) on an existing repo with a
            # token that may not create builds its RepoUrl without the custom endpoint and fails to parse it
            api.create_repo(repo_id, private=private, exist_ok=True)
            parent = api.repo_info(repo_id, revision=branch).sha
    if parent is None:
        raise HubPushError(f"the Hub at {api.endpoint} did not report the head of {repo_id}@{branch}")
    commit = _commit_with_retries(api, repo_id, branch, parent, payload, message, retries)
    result = PushResult(repo_id, commit[0], sha, commit[1], tuple(sorted(payload)), api.endpoint)
    _logger.info("pushed %s to %s@%s (sha256 %s)", name, repo_id, result.revision, sha)
    if record_result:
        (folder / HUB_RECORD_NAME).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return result


def _commit_with_retries(
    api: Any, repo_id: str, branch: str, parent: str, payload: dict[str, Path | bytes], message: str, retries: int
) -> tuple[str, str]:
    """Create the commit on ``branch`` whose head is ``parent``; returns (commit oid, commit URL)."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    failures: list[str] = []
    for attempt in range(retries + 1):
        # operations are mutated by create_commit and cannot be reused across attempts
        ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=src) for p, src in payload.items()]
        try:
            info = api.create_commit(
                repo_id, ops, commit_message=message, revision=branch, parent_commit=parent, num_threads=1
            )
            return info.oid, info.commit_url
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status in (401, 403):
                raise HubAuthError(_auth_message(repo_id, api.endpoint, status, "nothing was committed")) from e
            if status == 412 and failures and (landed := _landed(api, repo_id, branch, parent, payload)):
                # the retry of a commit whose response was lost: the first attempt did land
                _logger.warning("the commit landed although the server answered %s; using it", failures[-1])
                return landed
            failures.append(f"{status}: {_server_message(e)}")
            retryable = status is not None and status >= 500
            error: Exception = e
        except transport_errors() as e:  # connection refused or dropped: the response may be lost
            failures.append(f"{type(e).__name__}: {e}")
            retryable, error = True, e
        if not retryable or attempt == retries:
            raise HubPushError(_failed_message(api, repo_id, branch, parent, payload, failures)) from error
        _logger.warning("commit to %s failed (%s); retrying (%d/%d)", repo_id, failures[-1], attempt + 1, retries)
        time.sleep(_RETRY_WAIT_S * (attempt + 1))
    raise AssertionError("unreachable")


def _local_oid(src: Path | bytes) -> str:
    from huggingface_hub.utils.sha import git_hash

    return git_hash(src if isinstance(src, bytes) else src.read_bytes())


def _landed(
    api: Any, repo_id: str, branch: str, parent: str, payload: dict[str, Path | bytes]
) -> tuple[str, str] | None:
    """(oid, url) of the branch head if it is a child of ``parent`` holding exactly our files, else None."""
    head = api.repo_info(repo_id, revision=branch).sha
    if head == parent:
        return None
    remote = {f.path: f for f in api.get_paths_info(repo_id, list(payload), revision=head)}
    if all(p in remote and _same_content(remote[p], src) for p, src in payload.items()):
        return head, f"{api.endpoint}/{repo_id}/commit/{head}"
    return None


def _same_content(remote: Any, src: Path | bytes) -> bool:
    """Whether a Hub file holds ``src``: by its LFS sha256 for LFS files (weights), else by its git blob id."""
    import hashlib

    if getattr(remote, "lfs", None) is not None:
        data = src if isinstance(src, bytes) else src.read_bytes()
        return remote.lfs.sha256 == hashlib.sha256(data).hexdigest()
    return remote.blob_id == _local_oid(src)


def _failed_message(
    api: Any, repo_id: str, branch: str, parent: str, payload: dict[str, Path | bytes], failures: list[str]
) -> str:
    tries = f"{len(failures)} attempt{'s' if len(failures) > 1 else ''}"
    try:
        head = api.repo_info(repo_id, revision=branch).sha
    except Exception as e:  # noqa: BLE001 - the push error is the one to report
        state = f"the branch could not be read back ({type(e).__name__}), so its state is unknown"
    else:
        if head == parent:
            state = f"the branch {branch!r} is unchanged at {parent}"
        elif _landed(api, repo_id, branch, parent, payload):
            state = f"but the files did land, as commit {head}"
        else:
            state = f"and the branch {branch!r} moved from {parent} to {head} during the push (not by this push)"
    return f"push to {repo_id} at {api.endpoint} failed after {tries} ({'; '.join(failures)}); {state}"


def _server_message(e: Exception) -> str:
    response = getattr(e, "response", None)
    try:
        return str(response.json().get("error")) if response is not None else str(e)
    except Exception:  # noqa: BLE001 - a non-JSON body
        return str(e).splitlines()[0]


def _auth_message(repo_id: str, endpoint: str, status: int | None, state: str) -> str:
    why = "refused the token (401: missing or invalid)" if status == 401 else "denied write access (403)"
    return (
        f"the Hub at {endpoint} {why} for {repo_id}; {state}. Pass a write token with token=..., set HF_TOKEN, "
        "or run `hf auth login`."
    )


class _explained:
    """Turn the client's HTTP errors during the set-up calls into :class:`HubAuthError` / :class:`HubPushError`."""

    def __init__(self, repo_id: str, endpoint: str, state: str):
        self.repo_id, self.endpoint, self.state = repo_id, endpoint, state

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        from huggingface_hub.errors import HfHubHTTPError

        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise HubAuthError(_auth_message(self.repo_id, self.endpoint, status, self.state)) from exc
            raise HubPushError(
                f"the Hub at {self.endpoint} answered {status} for {self.repo_id} ({_server_message(exc)}); "
                f"{self.state}"
            ) from exc
        if isinstance(exc, transport_errors()):
            raise HubPushError(f"could not reach the Hub at {self.endpoint} ({exc}); {self.state}") from exc
        return False
