"""Property: whatever a repository holds, the loader returns objects or raises ManifestErrors.

Generated YAML text, random data trees, random template text, raw bytes, and
mutations of valid manifests (keys deleted, values retyped, unknown keys
added) all go through the real loader. Any other exception — KeyError,
TypeError, RecursionError — fails the test.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from source_testdata import CORPUS, EXAMPLE_REPO, ORDINARY

from reconciler.source import ManifestErrors, load_repository
from schemas import SUPPORTED_KINDS, KubeObject

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("CAPSTAN_PROPERTY_EXAMPLES", "80")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def check_loader(files: dict[str, str | bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for name, content in files.items():
            path = root / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        try:
            repository = load_repository(root)
        except ManifestErrors as exc:
            errors = exc.errors
        else:
            errors = ()
            for item in repository.objects:
                assert isinstance(item.obj, KubeObject)
                item.obj.to_dict()
        for error in errors:
            assert error.file in files
            assert str(error)


def valid_documents() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    corpus = [path for path in CORPUS.iterdir() if path.is_dir()] if CORPUS.is_dir() else []
    folders = [ORDINARY, *corpus]
    for folder in folders:
        for path in sorted(folder.glob("*.y*ml")):
            documents.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    documents.extend(item.obj.to_dict() for item in load_repository(EXAMPLE_REPO).objects)
    return documents


VALID = valid_documents()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["100m", "0.5", "128Mi", "1G", "http", "80", "", "-", "Always", "TCP", "a.b/c"]
    ),
)
trees = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
headers = st.sampled_from(SUPPORTED_KINDS).map(
    lambda pair: {"apiVersion": pair[0], "kind": pair[1]}
)


def paths(tree: Any, prefix: tuple[Any, ...] = ()):
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from paths(value, (*prefix, index))


@st.composite
def mutated_manifests(draw) -> dict[str, Any]:
    document = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(list(paths(document))))
        if not path:
            continue
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        operation = draw(st.sampled_from(["delete", "retype", "unknown", "null"]))
        if operation == "delete":
            del parent[key]
        elif operation == "retype":
            parent[key] = draw(trees)
        elif operation == "null":
            parent[key] = None
        elif isinstance(parent[key], dict):
            parent[key][draw(st.text(min_size=1, max_size=10))] = draw(scalars)
        else:
            parent[key] = {draw(st.text(min_size=1, max_size=10)): parent[key]}
    return document


printable = st.characters(blacklist_categories=("Cs",))
yaml_alphabet = st.sampled_from(
    [*":-[]{}&*!|>'\"#\n ,?%@`~abk01.<=", "!!python/object:os.system", "<<: ", "---\n", "  "]
)


@PROPERTY_SETTINGS
@given(
    st.text(alphabet=printable, max_size=200) | st.lists(yaml_alphabet, max_size=60).map("".join)
)
def test_random_yaml_text_only_ever_raises_manifest_errors(text):
    check_loader({"m.yaml": text})


@PROPERTY_SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_manifest_errors(data):
    check_loader({"m.yaml": data})


@PROPERTY_SETTINGS
@given(trees, st.one_of(st.just({}), headers))
def test_random_trees_only_ever_raise_manifest_errors(tree, header):
    document = {**tree, **header} if isinstance(tree, dict) else tree
    check_loader({"m.yaml": yaml.safe_dump(document)})


@PROPERTY_SETTINGS
@given(st.lists(mutated_manifests(), min_size=1, max_size=3))
def test_mutated_valid_manifests_only_ever_raise_manifest_errors(documents):
    check_loader({"m.yaml": yaml.safe_dump_all(documents)})


jinja_alphabet = st.sampled_from(
    [
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        " if ",
        " for x in ",
        " endfor ",
        " endif ",
        "values",
        ".",
        "x",
        "__class__",
        "include ",
        "'../a'",
        "'m.yaml.j2'",
        "|",
        "list",
        "\n",
        ": ",
        "a",
        "(",
        ")",
    ]
)


@PROPERTY_SETTINGS
@given(st.lists(jinja_alphabet, max_size=30).map("".join), trees)
def test_random_templates_only_ever_raise_manifest_errors(template, values):
    check_loader({"m.yaml.j2": template, "values.yaml": yaml.safe_dump(values)})
