"""``capstan up`` as one object: every control-plane part in one process, started in order.

The whole data flow of docs/architecture.md in one place (like k3s' single server): the store, the
``Api`` on it, the ``ControllerManager`` running every controller, the scheduler and the
``NodeDispatcher``, the Git source with its ``SyncLoop``, the HTTP API when that part is
installed, and — for the one-machine default — this machine's agent daemon when none is
running. ``CapstanApp.start`` brings them up in dependency order, reporting each step to a
``progress`` callback; ``stop`` takes them down in reverse. Several replicas may share one
etcd: each serves the HTTP API, and a ``LeaderElector`` (``reconciler.store.election``)
decides which one runs the controllers, scheduler, node dispatch and sync loop, writing
through a ``FencedStore`` for its term; on the embedded store the one replica leads at once.
A replica that loses its leadership sets ``lost_leadership`` (``capstan up`` then exits).
A ``RunInfo`` file in the state directory tells the other ``capstan`` commands where this
instance keeps its store.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reconciler._private import private_dir
from reconciler.api import DATA_KEYS_FILE, Api, SystemClock, check_data_keys, seal_secrets
from reconciler.client import ClientConfig, write_config
from reconciler.controllers.manager import ControllerManager, default_components
from reconciler.controllers.node import (
    DEFAULT_EVICTION_TIMEOUT_S,
    DEFAULT_GRACE_PERIOD_S,
    NodeController,
)
from reconciler.controllers.runtime import ComponentFactory
from reconciler.nodes import DispatchSettings, NodeDispatcher
from reconciler.nodes.local_daemon import LocalAgentDaemon, LocalAgentOptions, socket_answers
from reconciler.nodes.logs import pod_log_source
from reconciler.runinfo import (
    CLIENT_CONFIG_FILE,
    RUN_INFO_FILE,
    RunInfo,
    default_state_dir,
    read_run_info,
    write_run_info,
)
from reconciler.secrets import AgeError, Identities, load_identities
from reconciler.source import BranchWatch
from reconciler.source.credentials import redact
from reconciler.source.git import GitSource
from reconciler.source.watch import DEFAULT_POLL_INTERVAL_S, FetchBackoff
from reconciler.store import Store, open_store
from reconciler.store.compactor import DEFAULT_COMPACTION_INTERVAL_S, Compactor
from reconciler.store.election import (
    ElectionSettings,
    FencedStore,
    LeaderElector,
    Leadership,
    default_identity,
    process_alive,
)
from reconciler.sync import SyncLoop, SyncOptions, SyncResult
from reconciler.sync.autorollback import AutoRollbackController
from schemas.datakeys import DataKeys
from schemas.protocol import AGENT_SOCKET_ENV, DEFAULT_AGENT_SOCKET, DEFAULT_HEARTBEAT_S

__all__ = [
    "CLIENT_CONFIG_FILE",
    "RUN_INFO_FILE",
    "AlreadyRunning",
    "CapstanApp",
    "RunInfo",
    "UpConfig",
    "control_plane_components",
    "default_state_dir",
    "read_run_info",
]

_log = logging.getLogger(__name__)

#: Shared secret for ``POST /hooks/git`` (GitHub HMAC or GitLab token); unset: hooks refused.
WEBHOOK_SECRET_ENV = "CAPSTAN_WEBHOOK_SECRET"  # noqa: S105 - a variable name
STATE_DIR_ENV = "CAPSTAN_STATE_DIR"
#: The control plane's age identity when ``--age-identity`` names none (docs/secrets.md).
DEFAULT_AGE_IDENTITY = "age-identity"


@dataclass(frozen=True, slots=True)
class UpConfig:
    repo: str
    state_dir: Path
    branch: str = "main"
    subdir: str | None = None
    env: str | None = None
    #: ``sqlite:///...`` or ``etcd://...``; default: ``sqlite:///<state_dir>/state.db``.
    store_url: str | None = None
    #: ``HOST:PORT`` for the HTTP API (when installed); None: no HTTP server.
    listen: str | None = None
    #: Plain HTTP (loopback only) instead of TLS with a self-signed CA.
    insecure_http: bool = False
    #: Start this machine's agent daemon when no agent answers (the one-machine default).
    local_agent: bool = True
    agent_node_name: str = "local"
    agent_bind_address: str = "127.0.0.1"
    agent_socket: Path | None = None
    agent_args: tuple[str, ...] = ()
    resync_s: float | None = None
    #: Seconds between polls of a remote repository (None: the watch's default, 60 s).
    poll_interval_s: float | None = None
    #: How a failed fetch is retried (doubling from ``initial_s`` up to ``max_s``).
    fetch_backoff: FetchBackoff = field(default_factory=FetchBackoff)
    #: A file holding the ``POST /hooks/git`` secret; None: ``$CAPSTAN_WEBHOOK_SECRET``.
    webhook_secret_file: Path | None = None
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    #: Leader election among the replicas sharing the store (one on the embedded default).
    election: ElectionSettings = field(default_factory=ElectionSettings)
    #: This replica's name in the election; default ``host_pid``.
    identity: str | None = None
    #: The node controller's timeouts (``None``: its defaults, 40 s and 300 s).
    node_monitor_grace_s: float | None = None
    pod_eviction_timeout_s: float | None = None
    #: age identity files that open sealed Secrets; () : ``<state_dir>/age-identity`` if any.
    age_identities: tuple[Path, ...] = ()
    #: Seconds between the leader's compactions of the store's history; 0: never compact.
    compaction_interval_s: float = DEFAULT_COMPACTION_INTERVAL_S

    @property
    def store(self) -> str:
        return self.store_url or f"sqlite:///{(self.state_dir / 'state.db').resolve()}"


def control_plane_components(
    *,
    local_agent_command: str,
    dispatch: DispatchSettings | None = None,
    rollback_git: GitSource | None = None,
    node_grace_s: float | None = None,
    pod_eviction_timeout_s: float | None = None,
) -> list[ComponentFactory]:
    """The manager's default components, the auto-rollback controller and the node dispatcher.

    ``rollback_git``: the auto-rollback controller's own Git source, so that it can commit and
    push the revert (not only pin the old template); without it, it pins and records.
    ``node_grace_s`` / ``pod_eviction_timeout_s``: the node controller's timeouts (None: its
    defaults); a grace also makes the dispatcher renew node leases every quarter of it.
    """
    rollback = (
        functools.partial(AutoRollbackController, git=rollback_git, push=True)
        if rollback_git is not None
        else AutoRollbackController
    )
    settings = dispatch or DispatchSettings()
    if node_grace_s is not None:
        # As the kubelet renews its lease every quarter of the grace: a node whose status
        # arrives on time must never look stale because its renewals are too far apart.
        settings = replace(
            settings,
            lease_renew_s=min(settings.lease_renew_s, node_grace_s / 4),
            lease_duration_s=max(1, math.ceil(node_grace_s)),
        )
    dispatcher = functools.partial(
        NodeDispatcher, local_agent_command=local_agent_command, settings=settings
    )
    components = default_components()
    if node_grace_s is not None or pod_eviction_timeout_s is not None:
        node = functools.partial(
            NodeController,
            grace_period_s=node_grace_s if node_grace_s is not None else DEFAULT_GRACE_PERIOD_S,
            eviction_timeout_s=(
                pod_eviction_timeout_s
                if pod_eviction_timeout_s is not None
                else DEFAULT_EVICTION_TIMEOUT_S
            ),
        )
        components = [node if factory is NodeController else factory for factory in components]
    return [*components, rollback, dispatcher]


Progress = Callable[[str], None]


def local_agent_args(args: tuple[str, ...], node_grace_s: float | None) -> tuple[str, ...]:
    """The local agent's extra arguments: under a node monitor grace shorter than four
    heartbeats, the agent beats a quarter of it (its lease is renewed when one arrives), unless
    the arguments already say how often."""
    if node_grace_s is None or any(a.startswith("--heartbeat") for a in args):
        return args
    heartbeat = min(DEFAULT_HEARTBEAT_S, node_grace_s / 4)
    return args if heartbeat == DEFAULT_HEARTBEAT_S else (*args, f"--heartbeat={heartbeat:g}")


class CapstanApp:
    """One ``capstan up``: ``start()``, then ``wait()`` until ``stop()`` (or Ctrl-C)."""

    def __init__(
        self,
        config: UpConfig,
        *,
        progress: Progress | None = None,
        on_sync: Callable[[SyncResult], None] | None = None,
    ) -> None:
        self.config = config
        self._progress = progress or (lambda message: None)
        self._on_sync = on_sync
        self._stopped = threading.Event()
        self._stopping = threading.Event()
        self._cleanups: list[tuple[str, Callable[[], None]]] = []
        self.store: Store | None = None
        self.api: Api | None = None
        self.manager: ControllerManager | None = None
        self.sync: SyncLoop | None = None
        self.agent: LocalAgentDaemon | None = None
        self.http: Any = None
        self._webhook_secret = ""
        #: Where the webhook secret came from ("file PATH", "$CAPSTAN_WEBHOOK_SECRET"), or
        #: None: no secret, every webhook is refused.
        self.webhook_secret_from: str | None = None
        self.elector: LeaderElector | None = None
        #: Set when this replica lost its leadership: ``capstan up`` exits then (as
        #: Kubernetes components do) and its supervisor starts a fresh follower.
        self.lost_leadership = threading.Event()
        self._leading_lock = threading.Lock()
        #: The leader's writes, fenced by its term (None while following).
        self._fenced: FencedStore | None = None
        #: The leader's store compactor (None while following, or with compaction off).
        self.compactor: Compactor | None = None
        self._age_identities = Identities()

    # -- start/stop ---------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        cfg = self.config
        # First: a secret file that cannot be read stops start-up before anything runs.
        self._webhook_secret, self.webhook_secret_from = _webhook_secret(cfg.webhook_secret_file)
        private_dir(cfg.state_dir)
        # A 0644 or broken identity file stops start-up before anything runs.
        self._age_identities = _age_identities(cfg)
        running = read_run_info(cfg.state_dir)
        if running is not None and running.pid != os.getpid() and process_alive(running.pid):
            # Two control planes on one store would fight over every object.
            raise AlreadyRunning(
                f"capstan up is already running for {cfg.state_dir} (pid {running.pid})"
            )
        agent_socket = self._agent_socket()
        self.agent = LocalAgentDaemon(
            LocalAgentOptions(
                state_dir=cfg.state_dir / "agent",
                socket_path=agent_socket,
                node_name=cfg.agent_node_name,
                bind_address=cfg.agent_bind_address,
                extra_args=local_agent_args(cfg.agent_args, cfg.node_monitor_grace_s),
            )
        )
        if cfg.local_agent:
            self._progress(f"local agent: checking {agent_socket}")
            if self.agent.ensure():
                self._progress(f"local agent: started (node {cfg.agent_node_name!r})")
                self._cleanups.append(("local agent", self.agent.stop))
            else:
                self._progress("local agent: already running")

        self._progress(f"store: opening {_redact(cfg.store)}")
        # Secret values are sealed with the local data key before they reach SQLite or etcd.
        keys = DataKeys.load_or_create(cfg.state_dir / DATA_KEYS_FILE)
        self.store = seal_secrets(open_store(cfg.store), keys)
        check_data_keys(self.store, keys_file=str(cfg.state_dir / DATA_KEYS_FILE))
        self._cleanups.append(("store", self.store.close))
        self.api = Api(self.store, clock=SystemClock())

        if cfg.listen is not None:
            self._start_http(cfg.listen)

        # Every replica serves the API; only the elected one runs the parts that write.
        identity = cfg.identity or default_identity()
        self.elector = LeaderElector(
            self.store,
            identity=identity,
            settings=cfg.election,
            listen=cfg.listen,
            on_started_leading=self._start_leading,
            on_stopped_leading=self._stop_leading,
        )
        self._progress(f"leader election: campaigning as {identity}")
        self.elector.start()
        self._cleanups.append(("leader election", self.elector.stop))
        if not self.elector.is_leader:
            self._progress("leader election: following; this replica serves the API only")

        info = RunInfo(
            pid=os.getpid(),
            store=cfg.store,
            repo=redact(cfg.repo),
            branch=cfg.branch,
            agent_socket=str(agent_socket),
            listen=cfg.listen,
            webhook_url=self.webhook_url,
            webhook_armed=self.http is not None and bool(self._webhook_secret),
            webhook_secret_from=self.webhook_secret_from,
        )
        run_file = write_run_info(cfg.state_dir, info)
        self._cleanups.append(("run info", lambda: run_file.unlink(missing_ok=True)))

    def _start_leading(self, leadership: Leadership) -> None:
        """Start the controllers, scheduler, node dispatch, sync loop and store compactor for
        one term.

        They write through a ``FencedStore``: once another replica holds the leader key,
        their writes fail instead of landing, and this replica steps down.
        """
        cfg = self.config
        store, elector = self.store, self.elector
        assert store is not None
        assert elector is not None
        self._progress(f"leader election: leading (term {leadership.term})")
        fenced = FencedStore(store, term=leadership.term, on_fenced=elector.lose)
        self._fenced = fenced
        api = Api(fenced, clock=SystemClock())
        assert self.agent is not None
        dispatch = replace(
            cfg.dispatch, connection=replace(cfg.dispatch.connection, term=leadership.term)
        )
        with self._leading_lock:
            self._progress("control plane: starting controllers, scheduler and node dispatcher")
            self.manager = ControllerManager(
                api,
                components=control_plane_components(
                    local_agent_command=self.agent.connect_command,
                    dispatch=dispatch,
                    rollback_git=self._rollback_git(),
                    node_grace_s=cfg.node_monitor_grace_s,
                    pod_eviction_timeout_s=cfg.pod_eviction_timeout_s,
                ),
            )
            self.manager.start()
            if cfg.compaction_interval_s > 0:
                self.compactor = Compactor(fenced, interval_s=cfg.compaction_interval_s)
                self.compactor.start()

            # WARNING: an https:// REPO may carry a token in its userinfo: shown and stored
            # only redacted (GitSource itself strips it from the URL it uses).
            self._progress(f"git: tracking {redact(cfg.repo)} branch {cfg.branch}")
            source = GitSource(cfg.repo, branch=cfg.branch, cache_dir=cfg.state_dir / "git")
            options = SyncOptions(
                env=cfg.env, subdir=cfg.subdir, age_identities=self._age_identities
            )
            if cfg.resync_s is not None:
                options = replace(options, resync_s=cfg.resync_s)
            watch = BranchWatch(
                source,
                poll_interval_s=cfg.poll_interval_s or DEFAULT_POLL_INTERVAL_S,
                backoff=cfg.fetch_backoff,
            )
            self.sync = SyncLoop(
                api,
                source,
                options=options,
                watch=watch,
                on_result=self._on_sync,
                cached=self.manager.ctx.informers.cached,
            )
            self.sync.start()

    def _stop_leading(self, leadership: Leadership) -> None:
        with self._leading_lock:
            sync, manager, self.sync, self.manager = self.sync, self.manager, None, None
            compactor, self.compactor = self.compactor, None
            parts = (("git sync", sync), ("store compactor", compactor), ("control plane", manager))
            for name, part in parts:
                if part is None:
                    continue
                self._progress(f"stopping {name}")
                try:
                    part.stop()
                except Exception:
                    _log.exception("stopping %s failed", name)
            fenced, self._fenced = self._fenced, None
        if fenced is not None and fenced.refused:
            self._progress(
                f"leader election: the store refused {fenced.refused} write(s) of term "
                f"{leadership.term} (fenced: another replica leads)"
            )
        if not self._stopping.is_set() and not self.lost_leadership.is_set():
            self._progress(f"leader election: lost leadership (term {leadership.term})")
            self.lost_leadership.set()

    def _rollback_git(self) -> GitSource:
        cfg = self.config
        # Its own cache: the sync loop's GitSource is busy on another thread.
        return GitSource(cfg.repo, branch=cfg.branch, cache_dir=cfg.state_dir / "git-autorollback")

    def _agent_socket(self) -> Path:
        if self.config.agent_socket is not None:
            return self.config.agent_socket
        configured = os.environ.get(AGENT_SOCKET_ENV)
        if configured:
            return Path(configured)
        # An agent installed as a service on this machine already owns the node: use it
        # rather than starting a second one that would fight it over the same containers.
        if socket_answers(Path(DEFAULT_AGENT_SOCKET)):
            return Path(DEFAULT_AGENT_SOCKET)
        return self.config.state_dir / "agent.sock"

    def _start_http(self, listen: str) -> None:
        # Imported here: the HTTP stack (uvicorn...) is only needed when asked for.
        from reconciler.api.server import ServeOptions, ServerHooks, serve
        from reconciler.plan.provider import plan_provider
        from reconciler.source.webhook import verify_webhook
        from reconciler.sync import list_sync_records
        from reconciler.ui import ui_sources, web_ui

        api, store = self.api, self.store
        assert api is not None
        assert store is not None
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        secret = self._webhook_secret

        def on_webhook(headers: Mapping[str, str], body: bytes) -> bool:
            verdict = verify_webhook(headers, body, secret=secret)
            if verdict:
                trigger_sync()
            else:
                _log.warning("refused a git webhook: %s", verdict.reason)
            return bool(verdict)

        def trigger_sync() -> None:
            # A follower has no sync loop; the leader's poll picks the push up.
            if (sync := self.sync) is not None:
                sync.trigger()

        def syncs() -> list[dict[str, Any]]:
            return [r.model_dump(mode="json") for r in list_sync_records(api, limit=100)]

        cfg = self.config
        plan = plan_provider(
            api,
            GitSource(cfg.repo, branch=cfg.branch, cache_dir=cfg.state_dir / "git-plan"),
            env=cfg.env,
            subdir=cfg.subdir,
        )

        ui = ui_sources(
            api,
            repo=cfg.repo,
            shown_repo=redact(cfg.repo),
            branch=cfg.branch,
            cache_dir=cfg.state_dir / "git-ui",
            env=cfg.env,
            subdir=cfg.subdir,
            trigger=trigger_sync,
            local_agent_command=self.agent.connect_command if self.agent else "",
        )
        options = ServeOptions(
            state_dir=self.config.state_dir,
            host=host,
            port=int(port),
            insecure_http=self.config.insecure_http,
        )
        self._progress(f"http: starting the API server on {listen}")
        self.http = serve(
            api,
            store,
            options=options,
            hooks=ServerHooks(
                on_git_webhook=on_webhook,
                syncs=syncs,
                plan=plan,
                ui=web_ui(ui),
                pod_logs=pod_log_source(
                    api, local_agent_command=self.agent.connect_command if self.agent else ""
                ),
            ),
        )
        self._cleanups.append(("http", self.http.stop))
        config = self.client_config()
        assert config is not None
        write_config(self.config.state_dir / CLIENT_CONFIG_FILE, config)
        self._progress(
            f"http: serving {self.http.url} (client config "
            f"{self.config.state_dir / CLIENT_CONFIG_FILE})"
        )

    def client_config(self) -> ClientConfig | None:
        """How a client reaches this instance's HTTP API: its URL, the admin token file and the
        CA to trust (None: no HTTP API)."""
        if self.http is None:
            return None
        tls = self.http.state.tls
        return ClientConfig(
            server=self.http.url,
            token_file=self.http.state.admin_token_file,
            ca_file=tls.ca_cert if tls is not None else None,
        )

    @property
    def webhook_url(self) -> str | None:
        """Where a Git forge sends push events (None: no HTTP API)."""
        return f"{self.http.url}/hooks/git" if self.http is not None else None

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until ``stop`` is called (True) or the timeout passes (False)."""
        return self._stopped.wait(timeout_s)

    def stop(self) -> None:
        """Stop every started part, newest first; safe to call twice."""
        self._stopping.set()
        while self._cleanups:
            name, cleanup = self._cleanups.pop()
            self._progress(f"stopping {name}")
            try:
                cleanup()
            except Exception:
                # Keep stopping the rest: a part that fails to stop must not keep others up.
                _log.exception("stopping %s failed", name)
        self._stopped.set()

    def __enter__(self) -> CapstanApp:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AlreadyRunning(RuntimeError):
    """Another ``capstan up`` uses this state directory."""


def _age_identities(cfg: UpConfig) -> Identities:
    # Named files must all load (a loose mode or a bad key stops start-up); the default file
    # is optional: without it a sealed Secret is refused at sync, saying so.
    default = cfg.state_dir / DEFAULT_AGE_IDENTITY
    paths = cfg.age_identities or ((default,) if default.exists() else ())
    try:
        return load_identities(paths)
    except AgeError as exc:
        raise ValueError(str(exc)) from None


def _webhook_secret(secret_file: Path | None) -> tuple[str, str | None]:
    """The webhook secret and where it came from: the file (whitespace around it dropped,
    as an editor leaves a newline), else ``$CAPSTAN_WEBHOOK_SECRET``, else none."""
    if secret_file is not None:
        try:
            secret = secret_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the webhook secret file {secret_file}: {exc}") from exc
        if not secret:
            raise ValueError(f"the webhook secret file {secret_file} is empty")
        return secret, f"file {secret_file}"
    secret = os.environ.get(WEBHOOK_SECRET_ENV, "")
    return secret, f"${WEBHOOK_SECRET_ENV}" if secret else None


def _redact(url: str) -> str:
    """A store URL for display: never userinfo (etcd URLs may carry credentials)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    hosts = ",".join(part.rpartition("@")[2] for part in rest.split(","))
    return f"{scheme}://{hosts}"
