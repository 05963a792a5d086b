"""Deployment and ReplicaSet controllers on a real store, with pods marked Ready by a stand-in
for kubelets (the scheduler + hollow node versions are in tests/integration/controlplane)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

from reconciler.api import Api, Conflict, ManualClock
from reconciler.controllers.deployment import DeploymentController
from reconciler.controllers.replicaset import ReplicaSetController, _deletion_rank
from reconciler.workloads.deployment import HASH_LABEL, REVISION_ANNOTATION, pod_template_hash
from schemas import Condition, Deployment, Namespace, ObjectKey, Pod, PodStatus, ReplicaSet
from tests.fixtures.reconciles import Reconciles

WEB = ObjectKey("Deployment", "default", "web")


def deployment(
    name: str = "web",
    *,
    replicas: int = 4,
    image: str = "img:1",
    strategy: dict | None = None,
    **spec: object,
) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **({"strategy": strategy} if strategy else {}),
            **spec,
        },
    }


def edit(api: Api, name: str, change, kind=Deployment):
    """Read-modify-write with retry on Conflict, as every API client must (the controllers
    write status and annotations concurrently)."""
    for _ in range(50):
        d = api.get(kind, name)
        try:
            return api.update(change(d))
        except Conflict:
            continue
    raise AssertionError("kept conflicting")


def set_image(api: Api, name: str, image: str) -> Deployment:
    def change(d: Deployment) -> Deployment:
        container = d.spec.template.spec.containers[0].model_copy(update={"image": image})
        template = d.spec.template.model_copy(
            update={"spec": d.spec.template.spec.model_copy(update={"containers": [container]})}
        )
        return d.model_copy(update={"spec": d.spec.model_copy(update={"template": template})})

    return edit(api, name, change)


def patch_spec(api: Api, name: str, **changes: object) -> Deployment:
    return edit(
        api, name, lambda d: d.model_copy(update={"spec": d.spec.model_copy(update=changes)})
    )


def rolled_out(api: Api, name: str, replicas: int) -> bool:
    d = api.get(Deployment, name)
    s = d.status
    if s is None or s.observed_generation != d.metadata.generation:
        return False
    pods = api.list(Pod, label_selector={"app": name}).items
    return (
        s.updated_replicas == s.replicas == s.available_replicas == replicas
        and len(pods) == replicas
    )


def replicasets(api: Api, name: str) -> list[ReplicaSet]:
    return [rs for rs in api.list(ReplicaSet).items if rs.name.startswith(f"{name}-")]


class PodMonitor:
    """Follows every pod change in the store, in order, and records the extremes, each with
    the pods (by template hash and readiness) at the change that reached it."""

    def __init__(self, api: Api) -> None:
        self.api = api
        listed = api.list(Pod)
        self.pods = {p.name: p for p in listed.items}
        self.max_total = len(self.pods)
        self.min_ready = self.ready()
        self.at_max_total = self.at_min_ready = self.summary(listed.resource_version)
        self.mixed = False
        self._changed = threading.Condition()
        self._stream = api.watch(Pod, from_revision=listed.resource_version)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def ready(self) -> int:
        return sum(1 for p in self.pods.values() if p.status and p.status.ready)

    def summary(self, revision: object) -> str:
        counts = Counter(
            f"{p.labels.get(HASH_LABEL)} {'ready' if p.status and p.status.ready else 'not ready'}"
            for p in self.pods.values()
        )
        return f"at revision {revision}: {dict(sorted(counts.items()))}"

    def _run(self) -> None:
        for event in self._stream:
            with self._changed:
                if event.type == "DELETED":
                    self.pods.pop(event.object.name, None)
                else:
                    self.pods[event.object.name] = event.object
                if len(self.pods) > self.max_total:
                    self.max_total = len(self.pods)
                    self.at_max_total = self.summary(event.revision)
                if self.ready() < self.min_ready:
                    self.min_ready = self.ready()
                    self.at_min_ready = self.summary(event.revision)
                hashes = {p.labels.get(HASH_LABEL) for p in self.pods.values()}
                self.mixed |= len(hashes) > 1
                self._changed.notify_all()

    def catch_up(self) -> None:
        """Return once this monitor has followed every pod change made before the call: the
        extremes then cover the whole rollout, not only what its thread had reached."""
        listed = {p.name: p.metadata.resource_version for p in self.api.list(Pod).items}

        def followed() -> bool:
            return {n: p.metadata.resource_version for n, p in self.pods.items()} == listed

        with self._changed:
            assert self._changed.wait_for(followed, timeout=60), "the monitor fell behind"

    def stop(self) -> None:
        self._stream.close()
        self._thread.join(timeout=5)


def test_deployment_creates_replicaset_creates_pods(
    api: Api, start_manager, readier, wait_for
) -> None:
    start_manager()
    readier()
    created = api.create(deployment(replicas=3))
    wait_for(lambda: rolled_out(api, "web", 3), what="rolled out")
    (rs,) = replicasets(api, "web")
    template_hash = pod_template_hash(created.spec.template)
    assert rs.name == f"web-{template_hash}"
    assert rs.spec.selector.match_labels == {"app": "web", HASH_LABEL: template_hash}
    assert rs.spec.template.metadata.labels[HASH_LABEL] == template_hash
    assert rs.metadata.annotations[REVISION_ANNOTATION] == "1"
    owner = rs.metadata.owner_references[0]
    assert (owner.kind, owner.uid, owner.controller) == ("Deployment", created.metadata.uid, True)
    for pod in api.list(Pod).items:
        assert pod.name.startswith(f"{rs.name}-")
        assert len(pod.name) == len(rs.name) + 6
        ref = pod.metadata.owner_references[0]
        assert (ref.kind, ref.name, ref.controller) == ("ReplicaSet", rs.name, True)
    d = api.get(Deployment, "web")
    assert d.metadata.annotations[REVISION_ANNOTATION] == "1"
    conditions = {c.type: c for c in d.status.conditions}
    assert conditions["Available"].status == "True"
    assert conditions["Progressing"].reason == "NewReplicaSetAvailable"

    def rs_counts():
        st = api.get(ReplicaSet, rs.name).status
        return (st.replicas, st.ready_replicas, st.available_replicas) if st else None

    wait_for(lambda: rs_counts() == (3, 3, 3), what="replicaset status counts")


def test_scale_up_and_down(api: Api, start_manager, readier, wait_for) -> None:
    start_manager()
    readier()
    api.create(deployment(replicas=2))
    wait_for(lambda: rolled_out(api, "web", 2))
    patch_spec(api, "web", replicas=6)
    wait_for(lambda: rolled_out(api, "web", 6), what="scaled up")
    patch_spec(api, "web", replicas=1)
    wait_for(lambda: rolled_out(api, "web", 1), what="scaled down")
    assert len(replicasets(api, "web")) == 1


def test_rolling_update_stays_within_surge_and_unavailability(
    api: Api, start_manager, readier, wait_for
) -> None:
    start_manager()
    readier(per_tick=2)  # slow kubelets: a few pods become ready per tick
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}}
    api.create(deployment(replicas=10, strategy=strategy))
    wait_for(lambda: rolled_out(api, "web", 10))
    monitor = PodMonitor(api)
    try:
        set_image(api, "web", "img:2")
        wait_for(lambda: rolled_out(api, "web", 10), what="rolled to img:2")
        monitor.catch_up()
    finally:
        monitor.stop()
    assert monitor.max_total <= 12, monitor.at_max_total
    assert monitor.min_ready >= 9, monitor.at_min_ready
    assert monitor.mixed  # it really rolled (old and new pods side by side)
    images = {p.spec.containers[0].image for p in api.list(Pod).items}
    assert images == {"img:2"}


def test_rollback_reuses_the_old_replicaset(api: Api, start_manager, readier, wait_for) -> None:
    start_manager()
    readier()
    api.create(deployment(replicas=3))
    wait_for(lambda: rolled_out(api, "web", 3))
    (original,) = replicasets(api, "web")
    set_image(api, "web", "img:2")
    wait_for(
        lambda: (
            rolled_out(api, "web", 3)
            and {p.spec.containers[0].image for p in api.list(Pod).items} == {"img:2"}
        )
    )
    set_image(api, "web", "img:1")
    wait_for(
        lambda: (
            rolled_out(api, "web", 3)
            and {p.spec.containers[0].image for p in api.list(Pod).items} == {"img:1"}
        )
    )
    sets = {rs.name: rs for rs in replicasets(api, "web")}
    assert len(sets) == 2  # no third ReplicaSet
    reused = sets[original.name]
    assert reused.metadata.uid == original.metadata.uid
    assert reused.spec.replicas == 3
    assert reused.metadata.annotations[REVISION_ANNOTATION] == "3"
    assert {p.labels[HASH_LABEL] for p in api.list(Pod).items} == {original.labels[HASH_LABEL]}
    assert api.get(Deployment, "web").metadata.annotations[REVISION_ANNOTATION] == "3"


def test_recreate_stops_old_pods_before_starting_new(
    api: Api, start_manager, readier, wait_for
) -> None:
    start_manager()
    readier()
    api.create(deployment(replicas=3, strategy={"type": "Recreate"}))
    wait_for(lambda: rolled_out(api, "web", 3))
    monitor = PodMonitor(api)
    try:
        set_image(api, "web", "img:2")
        wait_for(
            lambda: (
                rolled_out(api, "web", 3)
                and {p.spec.containers[0].image for p in api.list(Pod).items} == {"img:2"}
            )
        )
        monitor.catch_up()
    finally:
        monitor.stop()
    assert not monitor.mixed
    assert monitor.max_total <= 3, monitor.at_max_total


def test_revision_history_limit_deletes_oldest_scaled_down_sets(
    api: Api, start_manager, readier, wait_for
) -> None:
    start_manager()
    readier()
    api.create(deployment(replicas=1, revisionHistoryLimit=1))
    for image in ("img:2", "img:3", "img:4"):
        wait_for(lambda: rolled_out(api, "web", 1))
        set_image(api, "web", image)
    wait_for(
        lambda: rolled_out(api, "web", 1) and len(replicasets(api, "web")) == 2,
        what="history trimmed to one old set",
    )
    revisions = sorted(
        int(rs.metadata.annotations[REVISION_ANNOTATION]) for rs in replicasets(api, "web")
    )
    assert revisions == [3, 4]


def test_progress_deadline_exceeded_by_the_clock(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    manager = start_manager()  # no kubelets: pods never become ready
    reconciles = Reconciles(manager.component(DeploymentController))
    api.create(deployment(replicas=2, progressDeadlineSeconds=30))

    def progressing() -> Condition | None:
        status = api.get(Deployment, "web").status
        return next(
            (c for c in (status.conditions if status else []) if c.type == "Progressing"), None
        )

    wait_for(lambda: progressing() is not None and progressing().reason == "ReplicaSetUpdated")
    wait_for(lambda: api.get(Deployment, "web").status.replicas == 2)
    clock.advance(10)
    # A reconcile that reads the advanced clock: 10 s into a 30 s deadline is still progress.
    reconciles.fresh_pass(WEB)
    assert progressing().status == "True"
    # The deadline runs from the condition's last progress. A reconcile whose cache had not
    # yet seen the second replica records it as progress at +10 s (as Kubernetes would):
    # step past 30 s from whichever time the condition holds.
    last = progressing().last_update_time
    assert last is not None
    clock.advance(last.timestamp() + 31 - clock.time())
    wait_for(
        lambda: progressing().reason == "ProgressDeadlineExceeded",
        what=f"deadline {api.get(Deployment, 'web').status}",
    )
    assert progressing().status == "False"
    wait_for(
        lambda: any(
            e.reason == "ProgressDeadlineExceeded" and e.type == "Warning"
            for e in api.list_events()
        ),
        what="warning event",
    )


def test_min_ready_seconds_delays_availability(
    api: Api, clock: ManualClock, start_manager, readier, wait_for
) -> None:
    manager = start_manager()
    deployments = Reconciles(manager.component(DeploymentController))
    sets = Reconciles(manager.component(ReplicaSetController))
    readier()
    api.create(deployment(replicas=2, minReadySeconds=10))

    def status():
        return api.get(Deployment, "web").status

    wait_for(lambda: status() and status().ready_replicas == 2)
    (rs,) = replicasets(api, "web")
    # Both controllers reconcile once more after the pods are Ready: still not available.
    sets.fresh_pass(rs.key)
    deployments.fresh_pass(WEB)
    assert api.get(ReplicaSet, rs.name).status.available_replicas == 0
    assert status().available_replicas == 0
    clock.advance(10)
    wait_for(lambda: status().available_replicas == 2, what="available after minReadySeconds")
    (rs,) = replicasets(api, "web")
    wait_for(lambda: api.get(ReplicaSet, rs.name).status.available_replicas == 2)


def test_paused_deployment_does_not_roll(api: Api, start_manager, readier, wait_for) -> None:
    start_manager()
    readier()
    api.create(deployment(replicas=2))
    wait_for(lambda: rolled_out(api, "web", 2))
    patch_spec(api, "web", paused=True)
    set_image(api, "web", "img:2")
    wait_for(
        lambda: any(
            c.reason == "DeploymentPaused" for c in api.get(Deployment, "web").status.conditions
        )
    )
    assert len(replicasets(api, "web")) == 1
    patch_spec(api, "web", replicas=3)  # scaling still applies while paused
    wait_for(lambda: len(api.list(Pod).items) == 3, what="paused deployment scaled")
    assert {p.spec.containers[0].image for p in api.list(Pod).items} == {"img:1"}
    assert len(replicasets(api, "web")) == 1
    patch_spec(api, "web", paused=False)
    wait_for(lambda: rolled_out(api, "web", 3) and len(replicasets(api, "web")) == 2)


def test_dropped_events_are_recovered_by_resync_and_duplicates_are_free(
    api: Api, clock: ManualClock, start_manager, readier, wait_for
) -> None:
    # Only the two workload controllers: nothing else writes once the rollout is done.
    manager = start_manager([DeploymentController, ReplicaSetController])
    readier()
    api.create(deployment(replicas=2))
    wait_for(lambda: rolled_out(api, "web", 2))
    wait_for(lambda: all(c.queue.idle for c in manager.components), what="quiet")
    controller = manager.component(DeploymentController)
    # Drop every Deployment event from now on (the informer cache still updates).
    for informer, handler in list(controller._handlers):
        if informer.kind is Deployment:
            informer.remove_handler(handler)
    # A handler added last runs after every other handler of the same event: once it has
    # seen the patch, the event was delivered (to nobody in the Deployment controller).
    delivered: list[int] = []
    informer = next(i for i, _ in controller._handlers if i.kind is Deployment)
    informer.add_handler(lambda e: delivered.append(int(e.object.metadata.resource_version)))
    patched = patch_spec(api, "web", replicas=4)
    revision = int(patched.metadata.resource_version or 0)
    wait_for(lambda: delivered and max(delivered) >= revision, what="the patch delivered")
    wait_for(lambda: all(c.queue.idle for c in manager.components), what="quiet")
    (rs,) = replicasets(api, "web")
    assert rs.spec.replicas == 2  # the event was lost
    clock.advance(controller.resync_period_s or 0)
    wait_for(lambda: rolled_out(api, "web", 4), what="resync converged")
    # Duplicated events cost nothing: a converged system writes nothing more.
    wait_for(lambda: all(c.queue.idle for c in manager.components))
    deployments = Reconciles(controller)
    sets = Reconciles(manager.component(ReplicaSetController))
    (rs,) = replicasets(api, "web")
    before = _versions(api)
    for _ in range(20):
        controller.enqueue(WEB)
        manager.component(ReplicaSetController).resync()
    deployments.fresh_pass(WEB)
    sets.fresh_pass(rs.key)
    wait_for(lambda: all(c.queue.idle for c in manager.components))
    assert _versions(api) == before


def _versions(api: Api) -> dict[tuple[str, str], str | None]:
    """Every workload object's resourceVersion (Events, written asynchronously, left out)."""
    return {
        (type(obj).__name__, obj.name): obj.metadata.resource_version
        for kind in (Deployment, ReplicaSet, Pod)
        for obj in api.list(kind).items
    }


def _pod(
    name: str, *, node: str | None, ready: bool, created: float, ready_at: float | None = None
) -> Pod:
    conditions = []
    if ready:
        conditions.append(
            Condition(
                type="Ready",
                status="True",
                last_transition_time=datetime.fromtimestamp(ready_at or created, UTC),
            )
        )
    return Pod.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": "default",
                "creationTimestamp": datetime.fromtimestamp(created, UTC).isoformat(),
            },
            "spec": {
                "containers": [{"name": "c", "image": "i"}],
                **({"nodeName": node} if node else {}),
            },
        }
    ).model_copy(update={"status": PodStatus(conditions=conditions)})


def test_scale_down_order_unscheduled_then_not_ready_then_youngest() -> None:
    now = 1_000.0
    pods = [
        _pod("old-ready", node="n", ready=True, created=100),
        _pod("young-ready", node="n", ready=True, created=500),
        _pod("not-ready", node="n", ready=False, created=50),
        _pod("unscheduled", node=None, ready=False, created=10),
        _pod("ready-not-available", node="n", ready=True, created=20, ready_at=995),
    ]
    order = sorted(pods, key=lambda p: _deletion_rank(p, 10, now))
    assert [p.name for p in order] == [
        "unscheduled",
        "not-ready",
        "ready-not-available",
        "young-ready",
        "old-ready",
    ]


def test_replicaset_deletes_unscheduled_and_unready_pods_first(
    api: Api, start_manager, wait_for
) -> None:
    start_manager()
    created = api.create(
        ReplicaSet.model_validate(
            {
                "metadata": {"name": "rs", "namespace": "default"},
                "spec": {
                    "replicas": 4,
                    "selector": {"matchLabels": {"app": "x"}},
                    "template": {
                        "metadata": {"labels": {"app": "x"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                    },
                },
            }
        )
    )
    wait_for(lambda: len(api.list(Pod).items) == 4)
    pods = sorted(api.list(Pod).items, key=lambda p: p.name)
    keep = api.bind(pods[0], "node-a")
    api.update_status(
        keep.model_copy(
            update={
                "status": PodStatus(
                    phase="Running", conditions=[Condition(type="Ready", status="True")]
                )
            }
        )
    )
    bound_unready = api.bind(pods[1], "node-a")
    edit(
        api,
        "rs",
        lambda rs: rs.model_copy(update={"spec": rs.spec.model_copy(update={"replicas": 2})}),
        kind=ReplicaSet,
    )
    wait_for(lambda: len(api.list(Pod).items) == 2)
    assert {p.name for p in api.list(Pod).items} == {keep.name, bound_unready.name}
    wait_for(lambda: api.get(ReplicaSet, "rs").status.replicas == 2)
    status = api.get(ReplicaSet, "rs").status
    assert (status.ready_replicas, status.observed_generation) == (1, 2)
    assert created.metadata.uid == api.get(ReplicaSet, "rs").metadata.uid


def test_name_taken_by_a_foreign_replicaset_rehashes(
    api: Api, start_manager, readier, wait_for
) -> None:
    doc = deployment(replicas=1)
    taken = f"web-{pod_template_hash(Deployment.model_validate(doc).spec.template)}"
    api.create(
        ReplicaSet.model_validate(
            {
                "metadata": {"name": taken, "namespace": "default"},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "other"}},
                    "template": {
                        "metadata": {"labels": {"app": "other"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                    },
                },
            }
        )
    )
    start_manager()
    readier()
    api.create(doc)
    wait_for(lambda: rolled_out(api, "web", 1), what="rolled out under another name")
    owned = [rs for rs in replicasets(api, "web") if rs.metadata.owner_references]
    assert len(owned) == 1
    assert owned[0].name != taken
    assert api.get(Deployment, "web").status.collision_count == 1
    assert api.get(ReplicaSet, taken).spec.replicas == 0  # untouched


def test_pods_the_namespace_level_forbids_are_a_failed_create_event(
    api: Api, start_manager, wait_for
) -> None:
    start_manager([DeploymentController, ReplicaSetController])
    api.create(deployment(replicas=2))
    wait_for(lambda: len(api.list(Pod).items) == 2, what="pods under baseline")
    namespace = api.get(Namespace, "default")
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    api.update(
        namespace.model_copy(
            update={"metadata": namespace.metadata.model_copy(update={"labels": labels})}
        )
    )
    # Scaling leaves the pod spec alone, so the Deployment is not judged again; its new pods
    # are, and the ReplicaSet says why they are missing.
    patch_spec(api, "web", replicas=3)
    (rs,) = replicasets(api, "web")

    def failed_create() -> list[str]:
        return [
            e.message
            for e in api.list_events(involved=api.get(ReplicaSet, rs.name))
            if e.reason == "FailedCreate"
        ]

    wait_for(failed_create, what="a FailedCreate event")
    assert 'violates PodSecurity "restricted:latest"' in failed_create()[0]
    assert len(api.list(Pod).items) == 2
