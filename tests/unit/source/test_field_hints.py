"""Unknown fields: a Kubernetes field Capstan leaves out says so; a typo gets the nearest field."""

from __future__ import annotations

import pytest

from reconciler.source._field_hints import KUBERNETES_FIELDS, model_at, unknown_field_message
from schemas import ConfigMap, Deployment, Service
from schemas.container import Container, Probe
from schemas.pod import PodSpec


def test_the_model_at_a_path_follows_aliases_lists_and_optionals() -> None:
    assert model_at(Deployment, ("spec", "template", "spec")) is PodSpec
    assert model_at(Deployment, ("spec", "template", "spec", "containers", 0)) is Container
    assert (
        model_at(Deployment, ("spec", "template", "spec", "containers", 0, "readinessProbe"))
        is Probe
    )
    assert model_at(Deployment, ("spec", "nowhere")) is None
    assert model_at(ConfigMap, ("data", "key")) is None, "a str value is no model"


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("spec", "template", "spec", "affinity"), "not supported by Capstan"),
        (("spec", "template", "spec", "dnsPolicy"), "not supported by Capstan"),
        (("spec", "template", "spec", "containers", 0, "tty"), "not supported by Capstan"),
        (
            ("spec", "template", "spec", "containers", 0, "imagePullPolicyy"),
            "unknown field (did you mean 'imagePullPolicy'?)",
        ),
        (("spec", "replica"), "unknown field (did you mean 'replicas'?)"),
        (("spec", "template", "spec", "containers", 0, "colour"), "unknown field"),
    ],
)
def test_unknown_fields_say_which_kind_of_unknown(
    loc: tuple[str | int, ...], expected: str
) -> None:
    message = unknown_field_message(Deployment, loc)
    assert message.startswith(expected)
    if expected == "unknown field":
        assert message == "unknown field", "no suggestion when nothing is close"


def test_a_service_field_capstan_lacks_is_named_as_such() -> None:
    assert unknown_field_message(Service, ("spec", "sessionAffinity")).startswith(
        "not supported by Capstan"
    )


def test_no_field_capstan_implements_is_listed_as_left_out() -> None:
    # The lists name Kubernetes' fields; a field Capstan models can never get the
    # "not supported" message, since pydantic accepts it before we are asked.
    import schemas

    models = {
        name: model for name in dir(schemas) if isinstance(model := getattr(schemas, name), type)
    }
    for module in (schemas.container, schemas.pod, schemas.apps, schemas.core, schemas.meta):
        models.update({n: m for n in dir(module) if isinstance(m := getattr(module, n), type)})
    for name in KUBERNETES_FIELDS:
        assert name in models, f"no Capstan model named {name}"
        model = models[name]
        aliases = {info.alias or field for field, info in model.model_fields.items()}
        assert aliases <= KUBERNETES_FIELDS[name] | {"apiVersion", "kind"}, (
            f"{name} models fields Kubernetes does not have: "
            f"{sorted(aliases - KUBERNETES_FIELDS[name])}"
        )
