"""``capstan up REPO``: run the whole control plane in this process until Ctrl-C.

The command people start first. It builds a ``reconciler.app.CapstanApp`` from the flags,
prints each start-up step, waits for the first sync and the pods to come up (showing how far
they are), then prints one line per sync (commit, outcome, what changed) until it is stopped.
Ctrl-C or SIGTERM stop every part in reverse order; containers keep running and are adopted,
not restarted, by the next ``capstan up``. Once started it records itself as a context of
the client config (``reconciler.client``) and makes it current, so the other commands find
it without ``--state-dir``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from reconciler.api import Api, ApiError
from reconciler.cli.kubeconfig import write_kubeconfig
from reconciler.client import (
    SERVER_CONTEXT,
    ConfigError,
    client_config_path,
    contexts,
    write_config,
)
from reconciler.runinfo import default_state_dir
from schemas import Node, Pod, Service

if TYPE_CHECKING:
    from reconciler.app import CapstanApp
    from reconciler.source.watch import FetchBackoff
    from reconciler.store.election import ElectionSettings
    from reconciler.sync import SyncResult

__all__ = ["LOST_LEADERSHIP_EXIT", "up"]

#: ``capstan up``'s exit status when it stopped leading (a supervisor should restart it).
LOST_LEADERSHIP_EXIT = 3


def _say(message: str) -> None:
    click.echo(f"{time.strftime('%H:%M:%S')}  {message}", err=True)


def _describe_sync(result: SyncResult) -> str:
    commit = result.commit
    subject = commit.message.splitlines()[0] if commit.message else ""
    if not result.succeeded:
        first = result.errors[0] if result.errors else "failed"
        more = f" (+{len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
        return f"sync {commit.short} {subject!r}: FAILED: {first}{more}"
    if not result.applied:
        return f"sync {commit.short} {subject!r}: in sync, nothing to change"
    changes = ", ".join(f"{change.action} {change.key}" for change in result.applied[:6])
    more = f" (+{len(result.applied) - 6} more)" if len(result.applied) > 6 else ""
    return f"sync {commit.short} {subject!r}: {changes}{more}"


def _pods_and_nodes(app: CapstanApp, api: Api) -> tuple[Sequence[Pod], Sequence[Node]]:
    """Every pod and node: from the controllers' informer caches when this process runs
    them (nothing is read or decoded), else through the API (a follower)."""
    manager = app.manager
    if manager is not None:
        pods, nodes = manager.ctx.informers.informer(Pod), manager.ctx.informers.informer(Node)
        if pods.has_synced() and nodes.has_synced():
            return pods.list(), nodes.list()
    return api.list(Pod).items, api.list(Node).items


def _pods_progress(all_pods: Sequence[Pod]) -> tuple[int, int]:
    pods = [p for p in all_pods if p.metadata.deletion_timestamp is None]
    ready = sum(1 for p in pods if p.status is not None and p.status.ready)
    return ready, len(pods)


def _wait_for_workloads(app: CapstanApp, *, timeout_s: float) -> None:
    """Show the first sync landing and pods becoming ready; give up quietly at the timeout."""
    api = app.api
    assert api is not None
    deadline = time.monotonic() + timeout_s
    last = ""
    pause = 0.5
    while time.monotonic() < deadline and not app.wait(pause):
        try:
            all_pods, nodes = _pods_and_nodes(app, api)
            ready, total = _pods_progress(all_pods)
            # Each look goes over every pod: on a big fleet look less often (5,000 pods: 5 s).
            pause = max(0.5, total / 1000)
        except ApiError:
            continue
        ready_nodes = sum(
            1
            for n in nodes
            if n.status is not None
            and (c := n.status.condition("Ready")) is not None
            and c.status == "True"
        )
        sync = app.sync  # None on a follower: it shows what the leader does
        live = sync.last_good if sync is not None else None
        line = (
            f"commit {live.short if live else '-'} live; nodes {ready_nodes}/{len(nodes)} "
            f"ready; pods {ready}/{total} ready"
        )
        if line != last:
            _say(line)
            last = line
        if live is not None and total and ready == total and ready_nodes == len(nodes):
            return


def _show_progress(app: CapstanApp, *, timeout_s: float) -> None:
    _wait_for_workloads(app, timeout_s=timeout_s)
    if app.api is not None and not app.wait(0):
        try:
            _show_entry_points(app.api)
        except ApiError:
            return


def _show_entry_points(api: Api) -> None:
    addresses = []
    for node in api.list(Node).items:
        for address in node.status.addresses if node.status else []:
            if address.type == "InternalIP":
                addresses.append(address.address)
    where = addresses[0] if addresses else "127.0.0.1"
    for service in api.list(Service).items:
        for port in service.spec.ports:
            if service.spec.proxy_type == "NodePort" and port.node_port:
                _say(
                    f"service {service.namespace}/{service.name}: "
                    f"http://{where}:{port.node_port}/ ({service.spec.type}, on every node)"
                )


def _record_context(app: CapstanApp, name: str | None) -> None:
    """Record this instance in the client config as the current context: its state
    directory, and its server, CA and token file when it serves the API."""
    path = client_config_path()
    state_dir = app.config.state_dir
    try:
        found, _ = contexts(path)
        if name is None:
            name = _context_name(state_dir, {c.name: c.state_dir for c in found})
        config = app.client_config()
        write_config(path, config, name=name, state_dir=state_dir)
    except (ConfigError, OSError) as exc:
        _say(f"client config: not recorded ({exc}); other commands need --state-dir {state_dir}")
        return
    _say(f"client config: context {name!r} in {path} is current")


def _context_name(state_dir: Path, known: dict[str, Path | None]) -> str:
    """The context already naming ``state_dir``, else ``capstan`` for ``~/.capstan``, else the
    directory's name — with a number added while another state directory has it."""
    for name, other in known.items():
        if other is not None and other.resolve() == state_dir:
            return name
    default = (Path.home() / ".capstan").resolve()
    base = SERVER_CONTEXT if state_dir == default else (state_dir.name or SERVER_CONTEXT)
    name, number = base, 1
    while name in known:
        number += 1
        name = f"{base}-{number}"
    return name


def _describe_webhook(app: CapstanApp) -> str:
    if app.webhook_url is None:
        return "webhook: none (serve the HTTP API with --listen to take Git forge push events)"
    if app.webhook_secret_from is None:
        return (
            f"webhook: {app.webhook_url} NOT armed, every push event is refused "
            "(give --webhook-secret-file)"
        )
    return f"webhook: {app.webhook_url} armed (secret from {app.webhook_secret_from})"


@click.command("up")
@click.argument("repo")
@click.option("--branch", default="main", show_default=True, help="Branch to track.")
@click.option(
    "--path",
    "subdir",
    default=None,
    metavar="SUBDIR",
    help="Manifests live in this directory of the repository.",
)
@click.option(
    "--env",
    "-e",
    default=None,
    metavar="ENV",
    help="Overlay values.yaml with environments/ENV.yaml.",
)
@click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help="sqlite:///ABS/PATH or etcd://HOST:PORT[,...] (default: sqlite in the state directory).",
)
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="Serve the HTTP API here (e.g. 127.0.0.1:6443).",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Serve plain HTTP instead of TLS (loopback addresses only).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the store, Git cache and local agent live "
    "(default: $CAPSTAN_STATE_DIR or ~/.capstan).",
)
@click.option(
    "--no-local-agent",
    is_flag=True,
    help="Never start an agent on this machine (nodes run their own).",
)
@click.option(
    "--agent-node-name",
    default="local",
    show_default=True,
    help="Node name the local agent labels its containers with.",
)
@click.option(
    "--agent-bind-address",
    default="127.0.0.1",
    show_default=True,
    help="Address the local agent publishes pod ports on.",
)
@click.option(
    "--agent-arg",
    "agent_args",
    multiple=True,
    metavar="ARG",
    help="Extra argument for the local `capstan-agent serve` (repeatable), "
    "e.g. --agent-arg=--proxy-table=capstan2.",
)
@click.option(
    "--resync",
    type=float,
    default=None,
    help="Seconds between re-applies of the live commit (drift repair).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Seconds between fetches of a remote repository (default 60; a webhook "
    "makes a push live at once).",
)
@click.option(
    "--fetch-backoff",
    type=(click.FloatRange(min=0, min_open=True), click.FloatRange(min=0, min_open=True)),
    default=(1.0, 300.0),
    show_default=True,
    metavar="INITIAL MAX",
    help="A failed fetch is retried after INITIAL seconds, doubling with each failure in "
    "a row up to MAX (instead of at the poll interval); `capstan status` shows it.",
)
@click.option(
    "--webhook-secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Arm POST /hooks/git (with --listen) with the secret in FILE: GitHub's "
    "X-Hub-Signature-256 or GitLab's X-Gitlab-Token (default: "
    "$CAPSTAN_WEBHOOK_SECRET; neither: webhooks refused). See docs/gitops.md.",
)
@click.option(
    "--age-identity",
    "age_identities",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="An age identity (mode 0600) that opens sealed Secrets; repeatable for rotation "
    "(default: <state-dir>/age-identity if present). See docs/secrets.md.",
)
@click.option(
    "--context",
    "context_name",
    default=None,
    metavar="NAME",
    help="Record this instance in the client config under NAME (default: the "
    "context already naming its state directory, else the directory's name).",
)
@click.option(
    "--wait-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="How long start-up shows pods coming up before going quiet.",
)
@click.option(
    "--leader-elect-lease-duration",
    "lease_duration",
    type=float,
    default=15.0,
    show_default=True,
    help="Seconds a follower waits after the leader's last renewal before taking over.",
)
@click.option(
    "--leader-elect-renew-deadline",
    "renew_deadline",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds the leader keeps trying to renew before it gives up (and exits).",
)
@click.option(
    "--leader-elect-retry-period",
    "retry_period",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between renewals and between campaign attempts.",
)
@click.option(
    "--leader-elect-identity",
    "identity",
    default=None,
    metavar="NAME",
    help="This replica's name in the leader election (default: HOST_PID).",
)
@click.option(
    "--node-monitor-grace-period",
    "node_grace",
    type=float,
    default=None,
    metavar="SECONDS",
    help="A node whose agent is silent this long turns Unknown and its pods leave "
    "every Service's endpoints (default 40).",
)
@click.option(
    "--pod-eviction-timeout",
    "eviction_timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Pods of an Unknown node are deleted (and replaced elsewhere) after this (default 300).",
)
@click.option(
    "--store-compaction-interval",
    "compaction_interval",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="The leader compacts the store's history older than this every this often "
    "(as kube-apiserver's --etcd-compaction-interval); 0: never.",
)
@click.option("--log-level", default="WARNING", show_default=True)
def up(
    repo: str,
    branch: str,
    subdir: str | None,
    env: str | None,
    store_url: str | None,
    listen: str | None,
    insecure_http: bool,
    state_dir: Path | None,
    no_local_agent: bool,
    agent_node_name: str,
    agent_bind_address: str,
    agent_args: tuple[str, ...],
    resync: float | None,
    poll_interval: float | None,
    fetch_backoff: tuple[float, float],
    webhook_secret_file: Path | None,
    age_identities: tuple[Path, ...],
    context_name: str | None,
    wait_timeout: float,
    lease_duration: float,
    renew_deadline: float,
    retry_period: float,
    identity: str | None,
    node_grace: float | None,
    eviction_timeout: float | None,
    compaction_interval: float,
    log_level: str,
) -> None:
    """Run Capstan for REPO (a path, file://, ssh:// or https:// URL) until Ctrl-C.

    A push to a remote REPO is fetched at the next poll, or at once when its forge sends a
    push webhook to POST /hooks/git: serve the API with --listen, arm the hook with
    --webhook-secret-file, and `capstan status` shows its URL (docs/gitops.md, "Push
    webhooks"). capstan up becomes the current context of the client config.
    """
    # Imported here: the whole control plane loads only for `up`, not for every CLI call.
    from reconciler.app import CapstanApp, UpConfig
    from reconciler.controllers.runtime import limit_malloc_arenas

    limit_malloc_arenas()

    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if "://" not in repo and Path(repo).exists():
        repo = str(Path(repo).resolve())
    config = UpConfig(
        repo=repo,
        state_dir=(state_dir or default_state_dir()).expanduser().resolve(),
        branch=branch,
        subdir=subdir,
        env=env,
        store_url=store_url,
        listen=listen,
        insecure_http=insecure_http,
        local_agent=not no_local_agent,
        agent_node_name=agent_node_name,
        agent_bind_address=agent_bind_address,
        agent_args=agent_args,
        resync_s=resync,
        poll_interval_s=poll_interval,
        fetch_backoff=_fetch_backoff(*fetch_backoff),
        webhook_secret_file=webhook_secret_file.expanduser() if webhook_secret_file else None,
        election=_election_settings(lease_duration, renew_deadline, retry_period),
        identity=identity,
        node_monitor_grace_s=node_grace,
        pod_eviction_timeout_s=eviction_timeout,
        compaction_interval_s=compaction_interval,
        age_identities=tuple(path.expanduser() for path in age_identities),
    )
    stop = threading.Event()
    lost = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    _few_malloc_arenas()
    _open_files_up_to_the_hard_limit()
    app = CapstanApp(config, progress=_say, on_sync=lambda result: _say(_describe_sync(result)))
    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            app.start()
        except Exception as exc:
            raise click.ClickException(f"capstan up failed to start: {exc}") from exc
        _record_context(app, context_name)
        _say(_describe_webhook(app))
        _say(f"capstan is up (state in {config.state_dir}); Ctrl-C stops it")
        write_kubeconfig(config.state_dir, say=_say)
        threading.Thread(
            target=_show_progress,
            args=(app,),
            kwargs={"timeout_s": wait_timeout},
            name="up-progress",
            daemon=True,
        ).start()
        # A timed wait, so Ctrl-C (KeyboardInterrupt) reaches this thread between waits.
        while not stop.wait(0.5):
            if app.lost_leadership.is_set():
                # As Kubernetes components do: a deposed leader exits, its supervisor
                # restarts it as a follower with fresh state.
                _say("lost leadership: exiting")
                lost = True
                break
    except KeyboardInterrupt:
        _say("interrupted")
    finally:
        signal.signal(signal.SIGTERM, previous)
        _say("stopping")
        app.stop()
        _say("stopped")
    if lost:
        sys.exit(LOST_LEADERSHIP_EXIT)


def _fetch_backoff(initial: float, maximum: float) -> FetchBackoff:
    from reconciler.source.watch import FetchBackoff

    try:
        return FetchBackoff(initial_s=initial, max_s=maximum)
    except ValueError as exc:
        raise click.ClickException(f"--fetch-backoff: {exc}") from None


def _election_settings(lease: float, renew: float, retry: float) -> ElectionSettings:
    from reconciler.store.election import ElectionSettings

    try:
        return ElectionSettings(
            lease_duration_s=lease, renew_deadline_s=renew, retry_period_s=retry
        )
    except ValueError as exc:
        raise click.ClickException(
            f"--leader-elect-retry-period, --leader-elect-renew-deadline, "
            f"--leader-elect-lease-duration: {exc}"
        ) from None


def _open_files_up_to_the_hard_limit() -> None:
    """Raise the soft limit on open files to the hard one, as Go programs do at start.

    Each node's connection holds four descriptors (the SSH socket, paramiko's channel pipe,
    the session thread's wakeup): the soft limit many systems start services with (1,024)
    would end a fleet at about 230 nodes.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Unlimited (-1 here) is not a number the kernel takes for open files: left alone.
    if resource.RLIM_INFINITY not in (soft, hard) and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


#: mallopt's parameter number for the arena cap (glibc's malloc.h).
_M_ARENA_MAX = -8


def _few_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at two before the control plane starts its threads.

    glibc gives threads their own arenas (up to eight per core), and memory freed in one is
    not returned while any of its blocks live: with a few hundred threads (several per node)
    the process keeps far more than it uses. Two arenas is what MALLOC_ARENA_MAX=2 sets; an
    environment that already sets it, and non-glibc systems, are left alone.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        return  # musl and friends: no mallopt, and no per-thread arenas to cap
