"""The OpenAPI 3.1 document of the HTTP API, generated from the resource table and the
``schemas`` models (request bodies in their validation form, responses in their serialized
form), served whole at ``/openapi.json``, and as Kubernetes serves its OpenAPI v3 for kubectl
(validation, ``explain``): an index at ``/openapi/v3`` and one document per group-version at
``/openapi/v3/api/v1``, ``/openapi/v3/apis/<group>/<version>``.

Built once per app. Watching (``?watch=true``) is described in the list operations' text but
is not a declared parameter: its response is a stream of JSON lines, which OpenAPI cannot
type, and generated clients and fuzzers would hang on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic.json_schema import JsonSchemaMode, models_json_schema

from reconciler.api.server._resources import RESOURCES, Resource
from reconciler.diff import OVERRIDE_HEADER

__all__ = ["openapi_document", "openapi_v3_group_version", "openapi_v3_index"]

_REF = "#/components/schemas/{model}"
_STATUS_REF = {"$ref": "#/components/schemas/Status"}
_JSON = "application/json"


def _status_schema() -> dict[str, Any]:
    cause = {
        "type": "object",
        "properties": {
            "field": {"type": "string"},
            "reason": {"type": "string"},
            "message": {"type": "string"},
        },
        "required": ["field", "reason", "message"],
    }
    return {
        "type": "object",
        "required": ["kind", "apiVersion", "status", "message", "reason", "code"],
        "properties": {
            "kind": {"const": "Status"},
            "apiVersion": {"const": "v1"},
            "metadata": {"type": "object"},
            "status": {"enum": ["Success", "Failure"]},
            "message": {"type": "string"},
            "reason": {"type": "string"},
            "code": {"type": "integer"},
            "details": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"type": "string"},
                    "causes": {"type": "array", "items": cause},
                },
            },
        },
    }


def _event_schema() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "involvedObject", "reason", "message"],
        "properties": {
            "apiVersion": {"const": "v1"},
            "kind": {"const": "Event"},
            "metadata": {
                "type": "object",
                "properties": {"name": text, "namespace": text, "resourceVersion": text},
            },
            "involvedObject": {"type": "object"},
            "reason": text,
            "message": text,
            "type": {"enum": ["Normal", "Warning"]},
            "count": {"type": "integer"},
            "firstTimestamp": text,
            "lastTimestamp": text,
            "source": {"type": "object", "properties": {"component": text}},
        },
    }


def _list_schema(item: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"const": kind},
            "metadata": {"type": "object", "properties": {"resourceVersion": {"type": "string"}}},
            "items": {"type": "array", "items": item},
        },
    }


def _json_body(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _errors() -> dict[str, Any]:
    described = {
        "400": "Bad request (query or body)",
        "401": "No or invalid bearer token",
        "403": "Denied by RBAC",
        "404": "Not found",
        "409": "Conflict: stale resourceVersion, already exists, or a Git-managed object",
        "413": "Body too large",
        "415": "Not JSON",
        "422": "Invalid object (details.causes)",
        "429": "Overloaded; see Retry-After",
        "503": "Store unavailable",
        "507": "The store's disk is full; nothing was written",
    }
    errors: dict[str, Any] = {
        code: _json_body(_STATUS_REF, text) for code, text in described.items()
    }
    errors["default"] = _json_body(_STATUS_REF, "Any other error")
    return errors


def _param(
    name: str,
    where: str,
    description: str,
    schema: Mapping[str, Any] | None = None,
    *,
    required: bool = False,
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "description": description,
        "schema": dict(schema or {"type": "string"}),
    }


_DNS_LABEL = {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
_DNS_SUBDOMAIN = {"type": "string", "maxLength": 253, "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}
_SELECTOR = _param(
    "labelSelector", "query", "Kubernetes label selector: a=b,c!=d,e in (x,y),f notin (z),g,!h"
)
_FORCE = _param(
    "force", "query", "Emergency override of the Git-is-truth guard", {"type": "boolean"}
)
_OVERRIDE = _param(
    OVERRIDE_HEADER,
    "header",
    "Emergency override of the Git-is-truth guard",
    {"enum": ["drift"]},
)


def _operation(
    summary: str,
    op_id: str,
    responses: Mapping[str, Any],
    *,
    parameters: Iterable[Mapping[str, Any]] = (),
    body: Mapping[str, Any] | None = None,
    tag: str,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": op_id,
        "tags": [tag],
        "responses": {**responses, **_errors()},
    }
    params = list(parameters)
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    return op


def _resource_paths(
    resource: Resource, refs: Mapping[tuple[Any, Any], Any]
) -> dict[str, dict[str, Any]]:
    plural, kind = resource.plural, resource.kind
    tag = f"{resource.api_version} {kind}"
    base = resource.base_path
    ns_param = _param("namespace", "path", "Namespace", _DNS_LABEL)
    name_param = _param("name", "path", f"{kind} name", _DNS_SUBDOMAIN)
    scope = (
        f"{base}/namespaces/{{namespace}}/{plural}" if resource.namespaced else f"{base}/{plural}"
    )
    scope_params = [ns_param] if resource.namespaced else []
    op_base = f"{resource.group.split('.')[0] or 'core'}_{resource.version}_{kind}"
    paths: dict[str, dict[str, Any]] = {}
    if resource.model is None:
        item: Mapping[str, Any] = {"$ref": "#/components/schemas/Event"}
        paths[scope] = {
            "get": _operation(
                f"List {plural}",
                f"list_{op_base}",
                {"200": _json_body(_list_schema(item, "EventList"), "The events")},
                parameters=scope_params,
                tag=tag,
            )
        }
        paths[f"{scope}/{{name}}"] = {
            "get": _operation(
                f"Read one of the {plural}",
                f"read_{op_base}",
                {"200": _json_body(item, "The event")},
                parameters=[*scope_params, name_param],
                tag=tag,
            )
        }
        return paths
    model = resource.model
    input_ref, output_ref = refs[(model, "validation")], refs[(model, "serialization")]
    listed = _json_body(_list_schema(output_ref, resource.list_kind), f"The {plural}")
    one = _json_body(output_ref, f"The {kind}")
    list_doc = (
        f"List {plural}. Add ?watch=true[&resourceVersion=N][&timeoutSeconds=S] to "
        "stream changes after revision N, one JSON event per line: "
        '{"type": "ADDED|MODIFIED|DELETED|ERROR", "object": {...}}.'
    )
    guard = [_FORCE, _OVERRIDE]
    paths[scope] = {
        "get": _operation(
            list_doc,
            f"list_{op_base}",
            {"200": listed},
            parameters=[*scope_params, _SELECTOR],
            tag=tag,
        ),
        "post": _operation(
            f"Create a {kind}",
            f"create_{op_base}",
            {"201": _json_body(output_ref, f"The created {kind}")},
            parameters=scope_params,
            tag=tag,
            body={"required": True, "content": {_JSON: {"schema": input_ref}}},
        ),
    }
    item_params = [*scope_params, name_param]
    paths[f"{scope}/{{name}}"] = {
        "get": _operation(
            f"Read a {kind}", f"read_{op_base}", {"200": one}, parameters=item_params, tag=tag
        ),
        "put": _operation(
            f"Replace a {kind} (needs metadata.resourceVersion)",
            f"replace_{op_base}",
            # Kinds Kubernetes creates on update (Services, RBAC) answer 201 when they do.
            {"200": one, "201": _json_body(output_ref, f"The created {kind}")}
            if resource.create_on_update
            else {"200": one},
            parameters=[*item_params, *guard],
            tag=tag,
            body={"required": True, "content": {_JSON: {"schema": input_ref}}},
        ),
        "patch": _operation(
            f"Merge-patch a {kind} (RFC 7386)",
            f"patch_{op_base}",
            {"200": one},
            parameters=[*item_params, *guard],
            tag=tag,
            body={
                "required": True,
                "content": {"application/merge-patch+json": {"schema": {"type": "object"}}},
            },
        ),
        "delete": _operation(
            f"Delete a {kind}",
            f"delete_{op_base}",
            {"200": _json_body(output_ref, f"The deleted {kind}")},
            parameters=[*item_params, *guard],
            tag=tag,
        ),
    }
    if resource.has_status:
        paths[f"{scope}/{{name}}/status"] = {
            "get": _operation(
                f"Read a {kind}'s status",
                f"read_{op_base}_status",
                {"200": one},
                parameters=item_params,
                tag=tag,
            ),
            "put": _operation(
                f"Replace a {kind}'s status",
                f"replace_{op_base}_status",
                {"200": one},
                parameters=item_params,
                tag=tag,
                body={"required": True, "content": {_JSON: {"schema": input_ref}}},
            ),
        }
    if resource.namespaced:
        paths[f"{base}/{plural}"] = {
            "get": _operation(
                f"List {plural} in all namespaces",
                f"list_{op_base}_all_namespaces",
                {"200": listed},
                parameters=[_SELECTOR],
                tag=tag,
            )
        }
    return paths


def _plain(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _fixed_paths() -> dict[str, dict[str, Any]]:
    public: list[dict[str, Any]] = []
    any_object = {"type": "object"}
    return {
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "security": public,
                "tags": ["health"],
                "responses": {"200": _plain("ok")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the store answers",
                "operationId": "readyz",
                "security": public,
                "tags": ["health"],
                "responses": {"200": _plain("ok"), "503": _json_body(_STATUS_REF, "Not ready")},
            }
        },
        "/version": {
            "get": {
                "summary": "Kubernetes-shaped version.Info",
                "operationId": "version",
                "security": public,
                "tags": ["health"],
                "responses": {"200": _json_body(any_object, "The version")},
            }
        },
        "/metrics": {
            "get": _operation(
                "Prometheus text exposition",
                "metrics",
                {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                    }
                },
                tag="capstan",
            )
        },
        "/capstan/v1/syncs": {
            "get": _operation(
                "Sync history, newest first",
                "list_syncs",
                {"200": _json_body(_list_schema(any_object, "SyncList"), "Syncs")},
                tag="capstan",
            )
        },
        "/capstan/v1/plan": {
            "get": _operation(
                "What syncing a ref would change",
                "plan",
                {"200": _json_body(any_object, "The plan")},
                parameters=[_param("ref", "query", "Git ref or commit (default: the branch head)")],
                tag="capstan",
            )
        },
        "/hooks/git": {
            "post": {
                "summary": "Git forge webhook (GitHub X-Hub-Signature-256, GitLab X-Gitlab-Token)",
                "operationId": "git_webhook",
                "security": public,
                "tags": ["capstan"],
                "requestBody": {"required": False, "content": {_JSON: {"schema": {}}}},
                "responses": {"202": _json_body(_STATUS_REF, "Fetch triggered"), **_errors()},
            }
        },
    }


def _discovery_paths() -> dict[str, dict[str, Any]]:
    def doc(kind: str) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["kind", "apiVersion"],
            "properties": {"kind": {"const": kind}, "apiVersion": {"const": "v1"}},
        }

    paths = {
        "/api": {
            "get": _operation(
                "Core API versions",
                "discover_core",
                {"200": _json_body(doc("APIVersions"), "Versions")},
                tag="discovery",
            )
        },
        "/apis": {
            "get": _operation(
                "API groups",
                "discover_groups",
                {"200": _json_body(doc("APIGroupList"), "Groups")},
                tag="discovery",
            )
        },
    }
    for base in sorted({r.base_path for r in RESOURCES.values()}):
        op_id = "discover_" + base.strip("/").replace("/", "_").replace(".", "_")
        paths[base] = {
            "get": _operation(
                f"Resources of {base}",
                op_id,
                {"200": _json_body(doc("APIResourceList"), "Resources")},
                tag="discovery",
            )
        }
    return paths


def openapi_document(*, title: str = "Capstan API", version: str = "v1") -> dict[str, Any]:
    """The whole document (a fresh dict each call)."""
    models = sorted(
        {r.model for r in RESOURCES.values() if r.model is not None}, key=lambda m: m.__name__
    )
    modes: tuple[JsonSchemaMode, ...] = ("validation", "serialization")
    refs, definitions = models_json_schema(
        [(m, mode) for m in models for mode in modes],
        ref_template=_REF,
        by_alias=True,
    )
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    schemas["Status"] = _status_schema()
    schemas["Event"] = _event_schema()
    paths: dict[str, dict[str, Any]] = {}
    for resource in RESOURCES.values():
        paths.update(_resource_paths(resource, refs))
    paths.update(_fixed_paths())
    paths.update(_discovery_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Kubernetes-shaped REST API of the Capstan control plane.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


# -- OpenAPI v3 as Kubernetes serves it: an index, then one document per group-version -----

_GVK = "x-kubernetes-group-version-kind"
_ACTIONS = {"get": "get", "put": "put", "patch": "patch", "delete": "delete", "post": "post"}
_FIELD_VALIDATION = _param(
    "fieldValidation",
    "query",
    "How unknown or duplicate fields are treated. Capstan always refuses them (Strict), "
    "whatever the value.",
    {"type": "string", "enum": ["Ignore", "Warn", "Strict"]},
)


def _group_version_path(resource: Resource) -> str:
    """Kubernetes' name for a group-version in ``/openapi/v3``: ``api/v1``, ``apis/apps/v1``."""
    return resource.base_path.lstrip("/")


def openapi_v3_index(document: Mapping[str, Any], *, digest: str) -> dict[str, Any]:
    """``GET /openapi/v3``: where each group-version's document is (``serverRelativeURL``,
    with ``digest`` as the cache key kubectl keeps it under)."""
    paths = {
        _group_version_path(r): {
            "serverRelativeURL": f"/openapi/v3/{_group_version_path(r)}?hash={digest}"
        }
        for r in RESOURCES.values()
    }
    return {"paths": dict(sorted(paths.items()))}


def openapi_v3_group_version(
    document: Mapping[str, Any], group_version: str
) -> dict[str, Any] | None:
    """``GET /openapi/v3/<group-version>``: the operations under that prefix, each marked
    with the kind it serves (``x-kubernetes-group-version-kind``) as kubectl looks them up —
    ``kubectl apply``/``create`` check there that writes take ``fieldValidation`` (then the
    server validates; Capstan always does), ``kubectl explain`` finds the kind's schema.
    None for a group-version that does not exist."""
    chosen = [r for r in RESOURCES.values() if _group_version_path(r) == group_version]
    if not chosen:
        return None
    schemas: dict[str, Any] = dict(document["components"]["schemas"])
    paths: dict[str, Any] = {}
    for resource in chosen:
        gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
        if resource.model is not None:
            # The validation form: the serialized one is opaque ({}) to JSON Schema.
            model = resource.model.__name__
            name = f"{model}-Input" if f"{model}-Input" in schemas else model
            if name in schemas:
                schemas[name] = {**schemas[name], _GVK: [gvk]}
        for path, item in document["paths"].items():
            if not _serves(path, resource):
                continue
            marked: dict[str, Any] = {}
            for method, operation in item.items():
                operation = {**operation, _GVK: gvk, "x-kubernetes-action": _ACTIONS[method]}
                if method in ("post", "put", "patch"):
                    operation["parameters"] = [*operation.get("parameters", []), _FIELD_VALIDATION]
                marked[method] = operation
            paths[path] = marked
    return {
        "openapi": "3.0.0",
        "info": document["info"],
        "paths": paths,
        "components": {**document["components"], "schemas": schemas},
        "security": document["security"],
    }


def _serves(path: str, resource: Resource) -> bool:
    base = resource.base_path
    scoped = (
        f"{base}/namespaces/{{namespace}}/{resource.plural}"
        if resource.namespaced
        else f"{base}/{resource.plural}"
    )
    return path in (scoped, f"{base}/{resource.plural}") or path.startswith(f"{scoped}/")
