"""The node's ingress proxy (Ingress, networking.k8s.io/v1): HTTP(S) routing by Host and path
to Services' ready endpoints.

Offers :class:`IngressServer` (fed with the desired Ingresses, their TLS Secrets and the node's
Service rules; listens on the node's HTTP/HTTPS ports while there is something to serve),
:class:`IngressSettings`, and the pure routing table (:func:`build_table`,
:class:`RouteTable`). See docs/workloads.md, "Ingress".
"""

from agent.ingress.routes import Backend, Certificate, PathRoute, RouteTable, build_table
from agent.ingress.server import IngressServer, IngressSettings

__all__ = [
    "Backend",
    "Certificate",
    "IngressServer",
    "IngressSettings",
    "PathRoute",
    "RouteTable",
    "build_table",
]
