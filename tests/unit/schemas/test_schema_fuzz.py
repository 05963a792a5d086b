"""Generated and mutated manifests: parse_object raises only its two documented errors."""

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import KubeObject, UnsupportedKindError, parse_object

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["100m", "1e3", "Ki", "http", "25%", "-1", "latest"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=12), inner, max_size=3),
    ),
    max_leaves=8,
)

_BASE = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "x:1",
                        "ports": [{"name": "http", "containerPort": 80}],
                        "livenessProbe": {"httpGet": {"port": "http"}},
                        "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "2"}},
                        "env": [{"name": "A", "value": "1"}],
                    }
                ],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
        },
    },
}


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


_ALL_PATHS = [p for p in _paths(_BASE) if p]


def _set(doc, path, value):
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _parse(doc):
    try:
        obj = parse_object(doc)
    except (ValidationError, UnsupportedKindError):
        return
    assert isinstance(obj, KubeObject)
    assert parse_object(obj.to_dict()) == obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_ALL_PATHS), _VALUES), min_size=1, max_size=3))
def test_mutated_deployments(mutations):
    doc = copy.deepcopy(_BASE)
    for path, value in mutations:
        try:
            _set(doc, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent of this path
    _parse(doc)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["apiVersion", "kind", "metadata", "spec", "data", "status", "type"]),
        _VALUES,
        max_size=5,
    ),
    st.sampled_from(
        [
            "Pod",
            "Service",
            "Secret",
            "ConfigMap",
            "Node",
            "Namespace",
            "ReplicaSet",
            "Deployment",
            "ServiceAccount",
        ]
    ),
)
def test_generated_documents(doc, kind):
    doc.setdefault("kind", kind)
    doc.setdefault("apiVersion", "apps/v1" if kind in ("Deployment", "ReplicaSet") else "v1")
    _parse(doc)
