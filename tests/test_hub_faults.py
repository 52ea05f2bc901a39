"""Pushing under faults: refused tokens, 5xx answers, lost responses, and bad input; what the repo looks like after.

What happens, by fault (the client under test is the real huggingface_hub):
- wrong or read-only token: :class:`HubAuthError` before any file is sent; the branch is unchanged;
- 5xx on preupload: the client retries it itself; the push succeeds with one commit;
- 5xx on the commit: ``push`` retries (``retries``), pinned to the head it started from; the push succeeds;
- 5xx on every attempt: :class:`HubPushError` saying the branch is unchanged, which it is;
- a commit that lands but whose response is lost: no duplicate commit. The retry either finds every file already
  at the head (the client skips the commit) or, pinned to the old head, is refused (412) and ``push`` recognises
  its own files at the new head; either way the landed commit is returned.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest
from hub_server import HubServer

from consistentzoo.hub import HubAuthError, HubPushError, add_hub_parsers, push

TOKEN = "hf_test_write"
push_module = importlib.import_module("consistentzoo.hub.push")  # the package's `push` attribute is the function


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch, hub: HubServer) -> None:
    monkeypatch.setattr(push_module, "_RETRY_WAIT_S", 0.0)
    hub.clear()


def _posts(hub: HubServer, start: int, what: str) -> list[int]:
    return [status for method, path, status in hub.requests[start:] if method == "POST" and f"/{what}/" in path]


def _first_push(hub: HubServer, folder: Path, repo: str) -> str:
    return push(folder, repo, token=TOKEN, endpoint=hub.url).revision


def test_wrong_token_is_refused_and_the_repo_is_unchanged(hub: HubServer, folder: Path) -> None:
    repo = "zoo/auth"
    head = _first_push(hub, folder, repo)
    start = len(hub.requests)
    with pytest.raises(HubAuthError, match=r"refused the token \(401"):
        push(folder, repo, token="hf_wrong", endpoint=hub.url)
    with pytest.raises(HubAuthError, match=r"denied write access \(403\)"):
        push(folder, repo, token="hf_test_read", endpoint=hub.url, commit_message="again")
    assert hub.head(repo).oid == head
    assert _posts(hub, start, "commit") == []
    with pytest.raises(HubAuthError):  # a new repository is not created either
        push(folder, "zoo/never", token="hf_wrong", endpoint=hub.url)
    assert ("model", "zoo/never") not in hub.state.repos


def test_5xx_on_preupload_is_retried_by_the_client(hub: HubServer, folder: Path) -> None:
    hub.fail(r"/preupload/main$", 503, times=1)
    start = len(hub.requests)
    result = push(folder, "zoo/flaky", token=TOKEN, endpoint=hub.url)
    assert _posts(hub, start, "preupload") == [503, 200]
    assert hub.head("zoo/flaky").oid == result.revision


def test_5xx_on_commit_is_retried_once_and_commits_once(hub: HubServer, folder: Path) -> None:
    repo = "zoo/commit-retry"
    hub.fail(r"/commit/", 500, times=1)
    start = len(hub.requests)
    result = push(folder, repo, token=TOKEN, endpoint=hub.url)
    assert _posts(hub, start, "commit") == [500, 200]
    assert hub.head(repo).oid == result.revision
    assert len(hub.state.repos[("model", repo)].commits) == 2  # the repo's first commit and ours


def test_5xx_on_every_attempt_raises_and_leaves_the_repo_unchanged(hub: HubServer, folder: Path) -> None:
    repo = "zoo/down"
    head = _first_push(hub, folder, repo)
    (folder / "metrics.json").write_text(json.dumps({"top1": 50.0}))  # something new to commit
    try:
        hub.fail(r"/commit/", 500, times=10)
        with pytest.raises(HubPushError, match=rf"failed after 3 attempts .*unchanged at {head}"):
            push(folder, repo, token=TOKEN, endpoint=hub.url, retries=2)
    finally:
        (folder / "metrics.json").unlink()
    assert hub.head(repo).oid == head
    assert "metrics.json" not in hub.head(repo).files


@pytest.mark.parametrize("report_oids", [True, False])
def test_lost_commit_response_is_recognised_not_duplicated(hub: HubServer, folder: Path, report_oids: bool) -> None:
    repo = f"zoo/lost-{report_oids}"
    hub.state.report_oids = report_oids
    hub.fail(r"/commit/", 502, times=1, apply_first=True)
    start = len(hub.requests)
    result = push(folder, repo, token=TOKEN, endpoint=hub.url)
    # with oids, the client sees the files already there and skips the commit; without, the retry pinned to the
    # old head is refused (412) and push finds its files at the new head
    assert _posts(hub, start, "commit") == ([502] if report_oids else [502, 412])
    assert result.revision == hub.head(repo).oid
    assert len(hub.state.repos[("model", repo)].commits) == 2


def test_unreachable_hub_is_a_clear_error(folder: Path) -> None:
    with HubServer() as gone:
        url = gone.url
    with pytest.raises(HubPushError, match="could not reach the Hub"):
        push(folder, "zoo/x", token=TOKEN, endpoint=url)


def test_bad_input_is_refused_before_anything_is_sent(hub: HubServer, folder: Path, tmp_path: Path) -> None:
    start = len(hub.requests)
    with pytest.raises(ValueError, match="owner/name"):
        push(folder, "no-owner", token=TOKEN, endpoint=hub.url)
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        push(tmp_path, "zoo/x", token=TOKEN, endpoint=hub.url)
    (tmp_path / "grid.png").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG"):
        push(folder, "zoo/x", token=TOKEN, endpoint=hub.url, image=tmp_path / "grid.png")
    (tmp_path / "metrics.json").write_text('{"top1": 1,\n broken')
    with pytest.raises(ValueError, match=r"metrics\.json: not valid JSON: line 2, column 2"):  # issue 17: file + line
        push(folder, "zoo/x", token=TOKEN, endpoint=hub.url, metrics=tmp_path / "metrics.json")
    with pytest.raises(FileNotFoundError, match="training config"):
        push(folder, "zoo/x", token=TOKEN, endpoint=hub.url, training_config=tmp_path / "nope.yaml")
    assert hub.requests[start:] == []


def test_push_command(hub: HubServer, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="consistentzoo")
    add_hub_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["push", str(folder), "zoo/cli", "--token", TOKEN, "--endpoint", hub.url, "--tag", "resnet18_ce.in1k"]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["revision"] == hub.head("zoo/cli").oid and "README.md" in out["files"]
