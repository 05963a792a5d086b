"""Contexts: commands find the cluster as kubectl does, flag > env > current context."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.api import Api
from reconciler.cli._app import cli
from reconciler.client import client_config_path, write_config
from reconciler.store import open_store


def state_dir_with_node(path: Path, node: str) -> Path:
    """What a stopped ``capstan up`` leaves: a state directory whose store has one node."""
    path.mkdir()
    store = open_store(f"sqlite:///{path / 'state.db'}")
    try:
        Api(store).create(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node},
                "spec": {"address": "local"},
            }
        )
    finally:
        store.close()
    return path


def capstan(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def nodes(*args: str, env: dict[str, str] | None = None) -> list[str]:
    result = capstan("get", "nodes", "-o", "json", *args, env=env)
    assert result.exit_code == 0, result.output
    return [item["metadata"]["name"] for item in json.loads(result.output)["items"]]


@pytest.fixture
def two_clusters(tmp_path: Path) -> tuple[Path, Path]:
    """Contexts ``lab`` and ``prod``, recorded as ``capstan up`` records itself; prod current."""
    lab = state_dir_with_node(tmp_path / "lab", "lab-node")
    prod = state_dir_with_node(tmp_path / "prod", "prod-node")
    write_config(client_config_path(), None, name="lab", state_dir=lab)
    write_config(client_config_path(), None, name="prod", state_dir=prod)
    return lab, prod


def test_commands_use_the_current_context(two_clusters: tuple[Path, Path]) -> None:
    lab, prod = two_clusters
    assert nodes() == ["prod-node"]  # no --state-dir: the current context
    assert capstan("config", "current-context").output == "prod\n"
    listed = capstan("config", "get-contexts").output.splitlines()
    assert listed[0].split() == ["CURRENT", "NAME", "SERVER", "STATE-DIR"]
    assert listed[1].split() == ["lab", "-", str(lab)]
    assert listed[2].split() == ["*", "prod", "-", str(prod)]
    switched = capstan("config", "use-context", "lab")
    assert switched.exit_code == 0, switched.output
    assert nodes() == ["lab-node"]
    assert capstan("config", "current-context").output == "lab\n"
    assert capstan("config", "get-contexts", "-o", "name").output == "lab\nprod\n"
    mode = stat.S_IMODE(os.stat(client_config_path()).st_mode)
    assert mode == 0o600


def test_flag_beats_env_beats_current_context(two_clusters: tuple[Path, Path]) -> None:
    lab, prod = two_clusters  # prod is current
    assert nodes("--context", "lab") == ["lab-node"]
    assert nodes(env={"CAPSTAN_STATE_DIR": str(lab)}) == ["lab-node"]
    assert nodes("--state-dir", str(prod), env={"CAPSTAN_STATE_DIR": str(lab)}) == ["prod-node"]
    assert nodes("--context", "prod", env={"CAPSTAN_STATE_DIR": str(lab)}) == ["prod-node"]
    status = json.loads(capstan("status", "-o", "json").output)
    assert status["nodes"][0]["name"] == "prod-node"


def test_unknown_context_is_a_clear_error_and_changes_nothing(
    two_clusters: tuple[Path, Path],
) -> None:
    before = client_config_path().read_bytes()
    result = capstan("config", "use-context", "staging")
    assert result.exit_code == 1
    assert "no context named 'staging'" in result.output
    assert "(contexts: lab, prod)" in result.output
    assert client_config_path().read_bytes() == before
    wrong = capstan("get", "nodes", "--context", "staging")
    assert wrong.exit_code == 1
    assert "no context named 'staging'" in wrong.output


def test_without_a_client_config_the_default_state_dir_is_used(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    state_dir_with_node(home / ".capstan", "home-node")
    assert nodes(env={"HOME": str(home)}) == ["home-node"]
    assert capstan("config", "get-contexts").output.startswith("No contexts in ")
    assert capstan("config", "current-context").exit_code == 1


def test_the_servers_own_config_in_a_state_dir_names_that_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~/.capstan/config as `capstan up --listen` with the default state directory left it:
    # the server's context, whose server is gone now that capstan up has stopped.
    from reconciler.cli.up import _context_name
    from reconciler.client import ClientConfig, contexts

    home = tmp_path / "home"
    home.mkdir()
    state = state_dir_with_node(home / ".capstan", "home-node")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CAPSTAN_CONFIG", str(state / "config"))
    write_config(state / "config", ClientConfig(server="https://127.0.0.1:9"))
    assert nodes() == ["home-node"]  # its store, not the dead server
    found, current = contexts()
    assert (current, found[0].state_dir) == ("capstan", state)
    # capstan up records itself under that same context, not a second one.
    known = {c.name: c.state_dir for c in found}
    assert _context_name(state.resolve(), known) == "capstan"
    assert _context_name((tmp_path / "lab").resolve(), known) == "lab"
    assert _context_name((tmp_path / "x" / "capstan").resolve(), known) == "capstan-2"


def test_status_shows_the_webhook_and_whether_it_is_armed(tmp_path: Path) -> None:
    from reconciler.runinfo import RunInfo, write_run_info

    state = state_dir_with_node(tmp_path / "up", "n1")
    hook = "https://127.0.0.1:6443/hooks/git"
    info = RunInfo(
        pid=1,
        store=f"sqlite:///{state / 'state.db'}",
        repo="r",
        branch="main",
        agent_socket="s",
        listen="127.0.0.1:6443",
        webhook_url=hook,
        webhook_armed=True,
        webhook_secret_from="file /etc/capstan/hook",
    )
    write_run_info(state, info)
    text = capstan("status", "--state-dir", str(state), "--store", info.store).output
    assert f"Webhook:  {hook} armed (secret from file /etc/capstan/hook)" in text
    data = json.loads(
        capstan("status", "--state-dir", str(state), "--store", info.store, "-o", "json").output
    )
    assert data["webhook"] == {"url": hook, "armed": True, "secretFrom": "file /etc/capstan/hook"}
    write_run_info(
        state, RunInfo(pid=1, store=info.store, repo="r", branch="main", agent_socket="s")
    )
    text = capstan("status", "--state-dir", str(state), "--store", info.store).output
    assert "Webhook:  none (capstan up serves no HTTP API: start it with --listen)" in text
