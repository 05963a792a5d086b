"""type: LoadBalancer as k3s' ServiceLB serves it: Services loaded from a manifest (status and
all) get node ports and the Ready nodes' addresses, on a real store and Api."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reconciler.api import Api
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.servicelb import ServiceLoadBalancerController
from reconciler.nodes.desired import service_rule
from reconciler.source import load_repository
from schemas import Condition, Node, Service
from schemas.meta import ObjectMeta
from schemas.node import NodeAddress, NodeSpec, NodeStatus
from tests.unit.source.source_testdata import write_files

# As `kubectl get svc -o yaml` exports it, and as Online Boutique writes its frontend.
FRONTEND = """\
apiVersion: v1
kind: Service
metadata:
  name: frontend-external
spec:
  type: LoadBalancer
  selector: {app: frontend}
  ports:
    - name: http
      port: 80
      targetPort: 8080
    - name: admin
      port: 81
      nodePort: 30000
status:
  loadBalancer: {}
"""
SECOND = """\
apiVersion: v1
kind: Service
metadata:
  name: second
spec:
  type: NodePort
  selector: {app: second}
  ports:
    - port: 80
"""
INTERNAL = "apiVersion: v1\nkind: Service\nmetadata:\n  name: internal\nspec:\n  ports:\n"
INTERNAL += "    - port: 80\n"


def add_node(api: Api, name: str, address: str, *, ready: bool) -> None:
    created = api.create(Node(metadata=ObjectMeta(name=name), spec=NodeSpec(address=address)))
    status = NodeStatus(
        addresses=[NodeAddress(type="InternalIP", address=address)],
        conditions=[Condition(type="Ready", status="True" if ready else "False")],
    )
    api.update_status(created.model_copy(update={"status": status}))


def ingress(api: Api) -> list[str | None]:
    service = api.get(Service, "frontend-external", namespace="default")
    if service.status is None or service.status.load_balancer is None:
        return []
    return [entry.ip for entry in service.status.load_balancer.ingress]


def test_load_balancer_services_get_node_ports_and_the_ready_nodes_addresses(
    api: Api,
    tmp_path: Path,
    start_manager: Callable[..., ControllerManager],
    wait_for: Callable[..., None],
) -> None:
    root = write_files(tmp_path, {"a.yaml": FRONTEND, "b.yaml": SECOND, "c.yaml": INTERNAL})
    loaded = [item.obj for item in load_repository(root).objects]
    add_node(api, "n1", "10.0.0.2", ready=True)
    add_node(api, "n2", "10.0.0.1", ready=True)
    add_node(api, "down", "10.0.0.9", ready=False)
    start_manager([ServiceLoadBalancerController])
    for obj in loaded:
        api.create(obj)

    wait_for(lambda: ingress(api) == ["10.0.0.1", "10.0.0.2"], what="ingress of Ready nodes")
    frontend = api.get(Service, "frontend-external", namespace="default")
    second = api.get(Service, "second", namespace="default")
    internal = api.get(Service, "internal", namespace="default")
    wait_for(
        lambda: api.get(Service, "second", namespace="default").spec.ports[0].node_port,
        what="second's node port",
    )
    second = api.get(Service, "second", namespace="default")
    ports = [p.node_port for p in frontend.spec.ports] + [second.spec.ports[0].node_port]
    assert ports[1] == 30000, "a nodePort written in Git is kept"
    assert len(set(ports)) == 3, f"every Service port gets its own node port: {ports}"
    assert all(port is not None and 30000 <= port <= 32767 for port in ports)
    assert internal.spec.ports[0].node_port is None, "ClusterIP Services get none"

    rule = service_rule(frontend, None)
    assert rule.type == "NodePort", "node proxies serve a LoadBalancer as a NodePort"
    assert [p.node_port for p in rule.ports] == ports[:2]

    add_node(api, "n3", "10.0.0.3", ready=True)
    wait_for(
        lambda: ingress(api) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        what="a new Ready node joins the ingress",
    )
