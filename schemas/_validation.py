"""Syntax rules shared by every kind: names, label keys and values, ports, and field-path errors.

The regular expressions are those of k8s.io/apimachinery/pkg/util/validation, so a name that
Kubernetes accepts is accepted here and the reverse. Cross-field rules raise through
:class:`Problems`, which reports each error at the exact field path (the loader maps that path
to file:line), never at the enclosing model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, PlainValidator, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]

# WARNING: \Z, not $: `$` also matches before a trailing newline, and "web\n" must not pass
# as a name (names reach proxy rule scripts, paths and logs).
_DNS1123_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1035_LABEL: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_QUALIFIED_NAME: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_LABEL_VALUE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")
_IANA_SVC_NAME: Final = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")
_HAS_LETTER: Final = re.compile(r"[a-z]")
_ENV_VAR_NAME: Final = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*\Z")
_CONFIG_KEY: Final = re.compile(r"^[-._a-zA-Z0-9]+\Z")
_PERCENT: Final = re.compile(r"^[0-9]+%\Z")


def rule_error(code: str, message: str) -> PydanticCustomError:
    # Messages go through the template engine only when a context is given; pass none so that
    # braces in user input cannot be read as placeholders.
    return PydanticCustomError(code, message)


def dns1123_label_problem(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _DNS1123_LABEL.match(value):
        return (
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. 'my-name')"
        )
    return None


def dns1123_subdomain_problem(value: str) -> str | None:
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not all(_DNS1123_LABEL.match(part) for part in value.split(".")):
        return (
            "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (e.g. 'example.com')"
        )
    return None


def dns1035_label_problem(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _DNS1035_LABEL.match(value):
        return (
            "must be a DNS-1035 label: lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit (e.g. 'my-name')"
        )
    return None


def qualified_name_problem(value: str) -> str | None:
    """Label and annotation keys: an optional DNS subdomain prefix and '/', then a name."""
    prefix, slash, name = value.rpartition("/")
    if slash:
        if not prefix:
            return "prefix part must be non-empty"
        problem = dns1123_subdomain_problem(prefix)
        if problem is not None:
            return f"prefix part {problem}"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _QUALIFIED_NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL_VALUE.match(value):
        return (
            "a label value must be empty or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return None


def path_segment_name_problem(value: str) -> str | None:
    """Names Kubernetes only requires to be a URL path segment (RBAC roles and bindings,
    where ``system:metrics-server`` is common)."""
    if not value:
        return "must not be empty"
    if value in (".", ".."):
        return f"may not be {value!r}"
    for forbidden in ("/", "%"):
        if forbidden in value:
            return f"may not contain {forbidden!r}"
    return None


def port_name_problem(value: str) -> str | None:
    if len(value) > 15:
        return "a port name must be no more than 15 characters"
    if not _IANA_SVC_NAME.match(value) or "--" in value:
        return (
            "a port name must contain only lowercase letters, digits and '-', "
            "start and end with a letter or digit, and not contain '--'"
        )
    if not _HAS_LETTER.search(value):
        return "a port name must contain at least one letter"
    return None


def env_var_name_problem(value: str) -> str | None:
    if not _ENV_VAR_NAME.match(value):
        return (
            "an environment variable name must consist of letters, digits, '_', '-' or '.', "
            "and must not start with a digit"
        )
    return None


def config_key_problem(value: str) -> str | None:
    """Kubernetes' IsConfigMapKey: a key becomes a file name in a configMap/secret volume."""
    if len(value) > 253:
        return "a key must be no more than 253 characters"
    if not _CONFIG_KEY.match(value):
        return "a key must consist of alphanumeric characters, '-', '_' or '.'"
    # WARNING: '.' and '..' are valid by the character rule, and '..' is the prefix of the
    # atomic-writer's own directories in Kubernetes; as file names they escape the volume.
    if value in (".", ".."):
        return f"a key must not be {value!r}"
    if value.startswith(".."):
        return "a key must not start with '..'"
    return None


def local_descending_path_problem(value: str) -> str | None:
    """Kubernetes' validateLocalDescendingPath (``subPath``, ``items[].path``): a path that
    stays below the directory it is joined to."""
    if value.startswith("/"):
        return "must be a relative path"
    if ".." in value.split("/"):
        return "must not contain '..'"
    return None


def host_path_problem(value: str) -> str | None:
    """A ``hostPath`` volume's ``path``: Kubernetes' validatePathNoBacksteps, and absolute (a
    relative source would be a Docker named volume, not a directory of the node)."""
    if not value.startswith("/"):
        return "must be an absolute path on the node"
    if ".." in value.split("/"):
        return "must not contain '..'"
    return None


def _checked(code: str, problem: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        found = problem(value)
        if found is not None:
            raise rule_error(code, f"{value!r}: {found}")
        return value

    return AfterValidator(check)


DNSLabel = Annotated[str, _checked("dns1123_label", dns1123_label_problem)]
PathSegmentName = Annotated[str, _checked("path_segment_name", path_segment_name_problem)]
DNSSubdomain = Annotated[str, _checked("dns1123_subdomain", dns1123_subdomain_problem)]
DNS1035Label = Annotated[str, _checked("dns1035_label", dns1035_label_problem)]
QualifiedName = Annotated[str, _checked("qualified_name", qualified_name_problem)]
LabelValue = Annotated[str, _checked("label_value", label_value_problem)]
PortName = Annotated[str, _checked("port_name", port_name_problem)]
EnvVarName = Annotated[str, _checked("env_var_name", env_var_name_problem)]
ConfigKey = Annotated[str, _checked("config_key", config_key_problem)]
LocalDescendingPath = Annotated[str, _checked("relative_path", local_descending_path_problem)]
HostPath = Annotated[str, _checked("host_path", host_path_problem)]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]


def _int_or_string(value: Any) -> int | str:
    # A plain validator, not a `int | str` union: a union would put its member tags ("int",
    # "str") into the error loc, and the loader needs locs that are pure field paths.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise rule_error("int_or_string", "must be an integer or a string")
    return value


def _port_or_name(raw: Any) -> int | str:
    value = _int_or_string(raw)
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise rule_error("port_range", "must be a port number between 1 and 65535")
        return value
    problem = port_name_problem(value)
    if problem is not None:
        raise rule_error("port_name", f"{value!r}: {problem}")
    return value


def _int_or_percent(raw: Any) -> int | str:
    value = _int_or_string(raw)
    if isinstance(value, int):
        if value < 0:
            raise rule_error("int_or_percent", "must not be negative")
        return value
    if not _PERCENT.match(value):
        raise rule_error(
            "int_or_percent", f"{value!r} must be an integer or a percentage like '25%'"
        )
    return value


IntOrString = Annotated[int | str, PlainValidator(_int_or_string, json_schema_input_type=int | str)]
PortOrName = Annotated[int | str, PlainValidator(_port_or_name, json_schema_input_type=int | str)]
IntOrPercent = Annotated[
    int | str, PlainValidator(_int_or_percent, json_schema_input_type=int | str)
]


class Problems:
    """Collects cross-field errors, each at its own field path, and raises them together.

    Raised from a model validator, the ValidationError's locs are relative to that model;
    pydantic prefixes them with the path of the model in the document.
    """

    def __init__(self, title: str) -> None:
        self._title = title
        self._errors: list[InitErrorDetails] = []

    def add(self, loc: Loc, code: str, message: str, value: Any = None) -> None:
        self._errors.append(InitErrorDetails(type=rule_error(code, message), loc=loc, input=value))

    def __bool__(self) -> bool:
        return bool(self._errors)

    def raise_if_any(self) -> None:
        if self._errors:
            raise ValidationError.from_exception_data(self._title, self._errors)
