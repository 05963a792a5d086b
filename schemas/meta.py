"""Object metadata, label selectors, conditions and the base of every kind.

Every manifest the loader reads, every object the API server stores and every status an agent
reports is a :class:`KubeObject`: ``apiVersion``, ``kind``, ``metadata`` (:class:`ObjectMeta`),
then the kind's ``spec``/``status``. Models are strict (unknown fields and wrong types are
errors), frozen (change them with ``model_copy(update=...)``), and validate by their camelCase
Kubernetes names so that error locs are Kubernetes field paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from schemas._validation import (
    DNSLabel,
    LabelValue,
    NonNegativeInt,
    Problems,
    QualifiedName,
    dns1035_label_problem,
    dns1123_label_problem,
    dns1123_subdomain_problem,
    path_segment_name_problem,
)

__all__ = [
    "Condition",
    "ConditionStatus",
    "KubeModel",
    "KubeObject",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Labels",
    "ManagedFieldsEntry",
    "NameFormat",
    "ObjectKey",
    "ObjectMeta",
    "OwnerReference",
    "Timestamp",
]

# Timestamps arrive as datetimes from YAML and as RFC 3339 strings from JSON (store, wire);
# strict mode would refuse the strings, so this one type is lax.
Timestamp = Annotated[AwareDatetime, Strict(False)]
Labels = dict[QualifiedName, LabelValue]
ConditionStatus = Literal["True", "False", "Unknown"]
NameFormat = Literal["dns1123-subdomain", "dns1123-label", "dns1035-label", "path-segment"]

_MAX_ANNOTATIONS_BYTES = 256 * 1024
_NAME_CHECKS = {
    "dns1123-subdomain": dns1123_subdomain_problem,
    "dns1123-label": dns1123_label_problem,
    "dns1035-label": dns1035_label_problem,
    "path-segment": path_segment_name_problem,
}


class KubeModel(BaseModel):
    """Base of every Capstan API model: strict, frozen, camelCase on the wire.

    Collections that default to empty are left out of the serialized form when empty, so that
    ``to_dict`` reads like the manifest a person wrote rather than a dump of every default.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )

    _omit_when_empty: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._omit_when_empty = frozenset(
            field.serialization_alias or field.alias or name
            for name, field in cls.model_fields.items()
            if field.default_factory in (list, dict)
        )

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and self._omit_when_empty:
            for key in self._omit_when_empty:
                value = data.get(key)
                if isinstance(value, list | dict) and not value:
                    del data[key]
        return data


class OwnerReference(KubeModel):
    """Names the object that owns this one; the garbage collector deletes orphans."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectReference(KubeModel):
    """Names one object (a CronJob's active Jobs, a ServiceAccount's secrets)."""

    api_version: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class ManagedFieldsEntry(KubeModel):
    """One field manager's share of an object (``metadata.managedFields``): the fields it
    set, as Kubernetes' ``FieldsV1`` tree, and whether by server-side apply or another write.
    The API server writes these (``reconciler.api.server._apply``); Git manifests leave
    them out."""

    manager: str | None = None
    operation: Literal["Apply", "Update"] | None = None
    api_version: str | None = None
    time: Timestamp | None = None
    fields_type: Literal["FieldsV1"] | None = None
    fields_v1: dict[str, Any] | None = None
    subresource: str | None = None


class ObjectMeta(KubeModel):
    """``metadata``. ``name`` is checked by the kind that holds it (rules differ per kind)."""

    name: str | None = None
    generate_name: str | None = None
    namespace: DNSLabel | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: dict[QualifiedName, str] = Field(default_factory=dict)
    uid: str | None = None
    resource_version: str | None = None
    generation: NonNegativeInt | None = None
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None
    deletion_grace_period_seconds: NonNegativeInt | None = None
    owner_references: list[OwnerReference] = Field(default_factory=list)
    finalizers: list[QualifiedName] = Field(default_factory=list)
    managed_fields: list[ManagedFieldsEntry] = Field(default_factory=list)

    @field_validator("annotations")
    @classmethod
    def _annotations_size(cls, value: dict[str, str]) -> dict[str, str]:
        size = sum(len(k.encode()) + len(v.encode()) for k, v in value.items())
        if size > _MAX_ANNOTATIONS_BYTES:
            raise ValueError(
                f"annotations total {size} bytes; the limit is {_MAX_ANNOTATIONS_BYTES}"
            )
        return value

    @model_validator(mode="after")
    def _one_controller(self) -> ObjectMeta:
        controllers = [i for i, ref in enumerate(self.owner_references) if ref.controller]
        if len(controllers) > 1:
            problems = Problems("ObjectMeta")
            problems.add(
                ("ownerReferences", controllers[1], "controller"),
                "owner_controller",
                "only one owner reference may have controller: true",
                True,
            )
            problems.raise_if_any()
        return self


class LabelSelectorRequirement(KubeModel):
    """One ``matchExpressions`` entry."""

    key: QualifiedName
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        problems = Problems("LabelSelectorRequirement")
        if self.operator in ("In", "NotIn") and not self.values:
            problems.add(("values",), "selector_values", f"must be non-empty for {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            problems.add(
                ("values",), "selector_values", f"must be empty for {self.operator}", self.values
            )
        problems.raise_if_any()
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


class LabelSelector(KubeModel):
    """A label query. All terms must hold; an empty selector matches everything."""

    match_labels: Labels = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )


class Condition(KubeModel):
    """A status condition (Pod, Node, Deployment, ReplicaSet, Service share this shape)."""

    type: str
    status: ConditionStatus
    reason: str | None = None
    message: str | None = None
    last_transition_time: Timestamp | None = None
    last_update_time: Timestamp | None = None
    last_probe_time: Timestamp | None = None
    last_heartbeat_time: Timestamp | None = None


class ObjectKey(NamedTuple):
    """What identifies an object: kind, namespace ("" for cluster-scoped kinds), name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"


def _manifest_fields_required(schema: dict[str, Any]) -> None:
    # apiVersion and kind have defaults in Python (for building objects in code), and metadata
    # defaults so that a missing name is reported at metadata.name; a manifest needs all three.
    required = [str(name) for name in schema.get("required", [])]
    schema["required"] = ["apiVersion", "kind", "metadata", *required]


class KubeObject(KubeModel):
    """Base of every kind. Subclasses fix ``api_version``/``kind`` and add ``spec``/``status``."""

    model_config = ConfigDict(json_schema_extra=_manifest_fields_required)

    NAMESPACED: ClassVar[bool] = True
    NAME_FORMAT: ClassVar[NameFormat] = "dns1123-subdomain"

    api_version: str
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, validate_default=True)

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, metadata: ObjectMeta) -> ObjectMeta:
        # A field validator, not a model validator: it runs even when spec has errors, so that
        # a bad name is reported together with them.
        problems = Problems(cls.__name__)
        name = metadata.name
        if name is None:
            problems.add(("name",), "missing", "Field required")
        else:
            problem = _NAME_CHECKS[cls.NAME_FORMAT](name)
            if problem is not None:
                problems.add(("name",), "object_name", f"{name!r}: {problem}", name)
        if not cls.NAMESPACED and metadata.namespace is not None:
            problems.add(
                ("namespace",),
                "cluster_scoped",
                f"{cls.__name__} is cluster-scoped; metadata.namespace must not be set",
                metadata.namespace,
            )
        problems.raise_if_any()
        return metadata

    @property
    def name(self) -> str:
        # Validation guarantees a name; construction with model_construct does not.
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return (self.metadata.namespace or "") if self.NAMESPACED else ""

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.kind, self.namespace, self.name)

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels

    @property
    def creation_timestamp(self) -> datetime | None:
        return self.metadata.creation_timestamp

    def to_dict(self) -> dict[str, Any]:
        """The manifest form (camelCase, no nulls, JSON types); ``parse_object`` reads it back."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data
