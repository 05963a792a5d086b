"""Safe YAML with positions: what is accepted, what is refused, and where things are."""

from __future__ import annotations

import pytest

from reconciler.source.errors import SourceLocation, format_field_path
from reconciler.source.yamlpos import (
    MAX_COMMIT_DOCUMENTS,
    MAX_DEPTH,
    MAX_OBJECT_BYTES,
    LoadBudget,
    load_documents,
)


def load_ok(text: str):
    documents, errors = load_documents(text, file="f.yaml")
    assert errors == []
    return documents


def load_bad(text: str) -> list[str]:
    _documents, errors = load_documents(text, file="f.yaml")
    assert errors, "expected errors"
    return [str(error) for error in errors]


def test_multi_document_files_keep_document_order_and_drop_empty_ones():
    documents = load_ok("a: 1\n---\n---\n# only a comment\n---\nb: [1, 2]\n")
    assert [d.data for d in documents] == [{"a": 1}, {"b": [1, 2]}]
    assert [d.index for d in documents] == [0, 3]
    assert documents[1].location() == SourceLocation("f.yaml", 6, 1)


def test_locate_points_at_keys_items_and_the_parent_of_missing_fields():
    text = "spec:\n  containers:\n    - name: web\n      image: x\n    - name: db\n"
    (document,) = load_ok(text)
    assert document.locate(("spec", "containers", 0, "image")) == (
        SourceLocation("f.yaml", 4, 7),
        4,
    )
    assert document.locate(("spec", "containers", 1)) == (SourceLocation("f.yaml", 5, 7), 3)
    # Missing field: the mapping's key that lacks it.
    assert document.locate(("spec", "containers", 1, "image")) == (
        SourceLocation("f.yaml", 5, 7),
        3,
    )
    assert document.locate(("spec", "containers", 7, "name"))[1] == 2
    assert document.locate(())[0] == SourceLocation("f.yaml", 1, 1)


def test_anchors_aliases_and_merge_keys_resolve_and_locate_the_winning_value():
    text = "base: &base\n  a: 1\n  b: 2\nderived:\n  <<: *base\n  b: 3\n"
    (document,) = load_ok(text)
    assert document.data["derived"] == {"a": 1, "b": 3}
    # b was overridden in place: its own line; a comes from the anchor.
    assert document.location(("derived", "b")) == SourceLocation("f.yaml", 6, 3)
    assert document.location(("derived", "a")) == SourceLocation("f.yaml", 2, 3)


def test_rendered_documents_say_so_in_their_positions():
    (document,) = load_documents("a: 1\n", file="t.yaml.j2", rendered=True)[0]
    assert str(document.location(("a",))) == "t.yaml.j2 (rendered):1:1"


def test_timestamps_stay_strings_as_kubernetes_reads_them():
    (document,) = load_ok("date: 2024-01-15\nwhen: 2024-01-15T10:00:00Z\n")
    assert document.data == {"date": "2024-01-15", "when": "2024-01-15T10:00:00Z"}


def test_a_plain_equals_sign_is_a_string_as_go_yaml_reads_it():
    """kube-prometheus' AlertmanagerConfig CRD lists ``enum: ['!=', =, =~]``."""
    (document,) = load_ok("enum:\n  - '!='\n  - =\n  - =~\nk: =\n")
    assert document.data == {"enum": ["!=", "=", "=~"], "k": "="}
    assert any("YAML tag '!!value'" in m for m in load_bad("a: !!value =\n"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !!python/object/apply:os.system ['true']\n", "f.yaml:1:4: YAML tag '!!python/"),
        ("a: !!python/name:os.system\n", "f.yaml:1:4: YAML tag '!!python/name"),
        ("a: !custom x\n", "f.yaml:1:4: YAML tag '!custom'"),
        ("a: !!binary aGk=\n", "f.yaml:1:4: YAML tag '!!binary'"),
        ("a: !!set {x}\n", "f.yaml:1:4: YAML tag '!!set'"),
        ("a: !!int abc\n", "f.yaml:1:4: 'abc' is not a valid !!int"),
        ("a: !!bool maybe\n", "f.yaml:1:4: 'maybe' is not a valid !!bool"),
        ("a: 1\nb: 2\na: 3\n", "f.yaml:3:1: duplicate key 'a' (first at line 1)"),
        ("a: &x [*x]\n", "f.yaml:1:8: recursive YAML alias"),
        ("a: [1, 2\n", "f.yaml:2:1: YAML syntax error"),
        ("a: b\n c: d\n", "f.yaml:2:3: YAML syntax error"),
        ("a:\n  - b\n  c: 1\n", "f.yaml:3:3: YAML syntax error"),
        ("a: *nothing\n", "f.yaml:1:4: YAML syntax error: found undefined alias"),
        ("? [a]\n: 1\n", "f.yaml:1:3: YAML error: found unhashable key"),
        ("a: b\x00\n", "f.yaml:1:5: unacceptable character"),
        ("x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n", "nested deeper than"),
    ],
)
def test_refused_yaml_names_the_position(text: str, expected: str):
    messages = load_bad(text)
    assert any(expected in message for message in messages), messages


def test_alias_bombs_are_refused_before_expansion():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for previous, name in zip("abcdefg", "bcdefgh", strict=True):
        refs = ", ".join([f"*{previous}"] * 10)
        lines.append(f"{name}: &{name} [{refs}]")
    (message,) = load_bad("\n".join(lines) + "\n")
    assert "too much aliasing" in message


def test_documents_before_a_syntax_error_are_kept():
    documents, errors = load_documents("a: 1\n---\nb: [\n", file="f.yaml")
    assert [d.data for d in documents] == [{"a": 1}]
    assert len(errors) == 1


def test_a_bad_document_does_not_hide_the_next_one():
    documents, errors = load_documents("a: !!int x\n---\nb: 2\n", file="f.yaml")
    assert [d.data for d in documents] == [{"b": 2}]
    assert len(errors) == 1


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (
            ("spec", "template", "spec", "containers", 0, "image"),
            "spec.template.spec.containers[0].image",
        ),
        (
            ("metadata", "labels", "app.kubernetes.io/name"),
            'metadata.labels["app.kubernetes.io/name"]',
        ),
        ((), ""),
        ((0, "a"), "[0].a"),
    ],
)
def test_field_paths_read_like_kubectl(path, text):
    assert format_field_path(path) == text


def test_aliases_of_a_large_string_are_counted_in_bytes_and_refused_unexpanded():
    # 100,000 aliases of a 1 MiB string: ~100 GiB once expanded, 0.6 MB on disk.
    text = "s: &s " + "x" * (1024 * 1024) + "\nb: [" + ", ".join(["*s"] * 100_000) + "]\n"
    (message,) = load_bad(text)
    assert message == (
        "f.yaml:2:5: document expands to more than 1.5 MiB of text, "
        "the limit for one object (too much aliasing)"
    )


def test_one_object_over_the_object_limit_is_refused_without_aliases():
    (message,) = load_bad("data: " + "x" * MAX_OBJECT_BYTES + "y\n")
    assert message.startswith("f.yaml:1:7: document expands to more than 1.5 MiB of text")


def test_the_commit_budget_spans_files_and_stops_reading_once_spent():
    budget = LoadBudget(documents_left=2)
    documents, errors = load_documents("a: 1\n---\nb: 2\n", file="one.yaml", budget=budget)
    assert [d.data for d in documents] == [{"a": 1}, {"b": 2}]
    assert errors == []
    documents, errors = load_documents("c: 3\n", file="two.yaml", budget=budget)
    assert documents == []
    assert [str(e) for e in errors] == [
        f"two.yaml:1:1: commit is over its limit of {MAX_COMMIT_DOCUMENTS} objects"
    ]
    assert budget.exhausted
    _documents, errors = load_documents("d: 4\n", file="three.yaml", budget=budget)
    assert [str(e) for e in errors] == [
        "three.yaml: not read: the commit is already over its size limits"
    ]
