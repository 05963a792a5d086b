"""A Service's endpoints as stored: the ConfigMap ``<service>.endpoints`` and its JSON.

Written by the endpoints controller (:mod:`reconciler.controllers.endpoints`), read by the node
dispatcher (:mod:`reconciler.nodes.dispatch`), which turns each into a
``schemas.protocol.ServiceRule`` for the node proxies with
:meth:`ServiceEndpoints.to_service_rule`. Kept apart from the controller, as Kubernetes keeps
its Endpoints type apart from the controller that fills it, so readers import no controller.

Where they are stored: ``schemas`` has no Endpoints kind, so each Service's endpoints are kept
in a ConfigMap named ``<service>.endpoints`` in the Service's namespace: label
``endpoints.capstan.io/service: <service>``, annotation ``capstan.io/managed-by:
endpoints-controller``, a controller ownerReference to the Service (the garbage collector
removes it with the Service), and one key ``endpoints.json`` holding a
:class:`ServiceEndpoints` as JSON. Git sync leaves ConfigMaps with that label alone (they are
derived state, like Kubernetes' Endpoints objects).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from schemas import ConfigMap, ObjectMeta, OwnerReference, Service
from schemas.meta import KubeModel
from schemas.protocol import (
    Endpoint,
    ServicePortRule,
    ServiceRule,
    node_address_problem,
    wire_cluster_ip,
)

__all__ = [
    "ENDPOINTS_DATA_KEY",
    "ENDPOINTS_LABEL",
    "ENDPOINTS_MANAGED_BY",
    "EndpointTarget",
    "EndpointsPort",
    "ServiceEndpoints",
    "endpoints_config_map",
    "endpoints_config_map_name",
    "read_endpoints",
]

ENDPOINTS_LABEL = "endpoints.capstan.io/service"
ENDPOINTS_DATA_KEY = "endpoints.json"
ENDPOINTS_MANAGED_BY = {"capstan.io/managed-by": "endpoints-controller"}


class EndpointTarget(KubeModel):
    """One ready pod behind one Service port."""

    pod: str
    namespace: str
    node: str
    address: str
    host_port: int = Field(ge=1, le=65535)
    hostname: str | None = None
    """Set for a headless Service's pod whose ``subdomain`` is the Service: its own name."""


class EndpointsPort(KubeModel):
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: int
    node_port: int | None = None
    targets: list[EndpointTarget] = Field(default_factory=list)


class ServiceEndpoints(KubeModel):
    """A Service's ready endpoints, per Service port."""

    namespace: str
    name: str
    type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    ports: list[EndpointsPort] = Field(default_factory=list)

    def to_service_rule(self) -> ServiceRule:
        """What a node's proxy programs for this Service (``Sync.services``)."""
        return ServiceRule(
            namespace=self.namespace,
            name=self.name,
            type=self.type,
            cluster_ip=wire_cluster_ip(self.cluster_ip),
            ports=[
                ServicePortRule(
                    name=port.name,
                    protocol=port.protocol,
                    port=port.port,
                    node_port=port.node_port,
                    # An address a node reported that is not one never reaches the wire.
                    endpoints=[
                        Endpoint(address=t.address, port=t.host_port, hostname=t.hostname)
                        for t in port.targets
                        if node_address_problem(t.address) is None
                    ],
                )
                for port in self.ports
            ],
        )


def endpoints_config_map_name(service_name: str) -> str:
    return f"{service_name}.endpoints"


def endpoints_config_map(service: Service, endpoints: ServiceEndpoints) -> ConfigMap:
    """The ConfigMap that stores ``endpoints`` (see the module docstring for why a ConfigMap)."""
    return ConfigMap(
        metadata=ObjectMeta(
            name=endpoints_config_map_name(service.name),
            namespace=service.namespace,
            labels={ENDPOINTS_LABEL: service.name},
            annotations=dict(ENDPOINTS_MANAGED_BY),
            owner_references=[
                OwnerReference(
                    api_version="v1",
                    kind="Service",
                    name=service.name,
                    uid=service.metadata.uid or "",
                    controller=True,
                )
            ],
        ),
        data={ENDPOINTS_DATA_KEY: _encode(endpoints)},
    )


def read_endpoints(config_map: ConfigMap) -> ServiceEndpoints | None:
    """The endpoints a ConfigMap written by the endpoints controller holds; None for any other."""
    if ENDPOINTS_LABEL not in config_map.labels or ENDPOINTS_DATA_KEY not in config_map.data:
        return None
    return ServiceEndpoints.model_validate_json(config_map.data[ENDPOINTS_DATA_KEY])


def _encode(endpoints: ServiceEndpoints) -> str:
    # Sorted keys and no whitespace: an unchanged set encodes to the same text, so a
    # reconcile that finds nothing new writes nothing.
    return json.dumps(
        endpoints.model_dump(mode="json", by_alias=True, exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
    )
