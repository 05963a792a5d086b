"""Jinja2 templates: values, includes inside the repository, and a sandbox that holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from source_testdata import CONFIGMAP

from reconciler.source import ManifestErrors, load_repository


def errors_of(root: Path, **kwargs) -> list[str]:
    with pytest.raises(ManifestErrors) as caught:
        load_repository(root, **kwargs)
    return [str(error) for error in caught.value.errors]


def test_includes_and_imports_of_partials_inside_the_repository_work(make_repo):
    root = make_repo(
        {
            "_lib/meta.j2": "metadata:\n  name: {{ name }}\n",
            "_lib/macros.j2": "{% macro data(k, v) %}data:\n  {{ k }}: '{{ v }}'\n{% endmacro %}",
            "apps/cm.yaml.j2": (
                "{% import '_lib/macros.j2' as m %}\napiVersion: v1\nkind: ConfigMap\n"
                "{% set name = 'from-include' %}\n{% include '_lib/meta.j2' %}\n"
                "{{ m.data('pass', 'word' | b64encode) }}"
            ),
        }
    )
    (item,) = load_repository(root).objects
    assert item.obj.metadata.name == "from-include"
    assert item.obj.data == {"pass": "d29yZA=="}


def test_yaml_errors_in_templates_name_the_rendered_line(make_repo):
    root = make_repo(
        {
            "cm.yaml.j2": (
                "{% set x = 1 %}\n{# comment #}\n" + CONFIGMAP.replace("mode: fast", "mode: [")
            )
        }
    )
    (error,) = errors_of(root)
    assert error.startswith("cm.yaml.j2 (rendered):7:1: YAML syntax error")


def test_validation_errors_in_templates_name_the_rendered_line(make_repo):
    root = make_repo(
        {
            "cm.yaml.j2": "{% if true %}\n"
            + CONFIGMAP.replace("fast", "{{ 5 }}").replace("mode:", "mode: {{ 'x' }}\n  other:")
            + "{% endif %}\n"
        }
    )
    (error,) = errors_of(root)
    assert error.startswith("cm.yaml.j2 (rendered):7:3: data.other: must be a string")


SANDBOX = "t.yaml.j2:1: template refused by the sandbox"
LIMIT = "t.yaml.j2:1: template over a rendering limit"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "a: {{ values.missing }}\n",
            "t.yaml.j2:1: undefined template variable: 'dict object' has no attribute 'missing'",
        ),
        (
            "\n\na: {{ nothing }}\n",
            "t.yaml.j2:3: undefined template variable: 'nothing' is undefined",
        ),
        (
            "a: {{ ''.__class__ }}\n",
            "t.yaml.j2:1: template refused by the sandbox: access to attribute '__class__'",
        ),
        ("a: {{ ().__class__.__base__.__subclasses__() }}\n", f"{SANDBOX}"),
        ("a: {{ values.__init__ }}\n", SANDBOX),
        ("a: {{ self._TemplateReference__context }}\n", SANDBOX),
        ("{% set d = {} %}{{ d.update(a=1) }}\n", SANDBOX),
        ("a: {{ 'x' * 100000000 }}\n", f"{LIMIT}: repetition result is too large"),
        ("a: {{ 10 ** 100000 }}\n", f"{LIMIT}: exponent 100000 is too large"),
        (
            "a: {{ range(10**9) | list }}\n",
            "t.yaml.j2:1: template error: OverflowError: Range too big",
        ),
        ("a: {{ 1 / 0 }}\n", "t.yaml.j2:1: template error: ZeroDivisionError"),
        ("a: {% if %}\n", "t.yaml.j2:1: template syntax error"),
        ("{% include 't.yaml.j2' %}\n", "t.yaml.j2:1: template recursion too deep"),
        ("{% include 'nothere.j2' %}\n", "t.yaml.j2:1: template include not found: 'nothere.j2'"),
    ],
)
def test_template_failures_are_errors_with_file_and_line(make_repo, template, expected):
    root = make_repo({"t.yaml.j2": template})
    (error,) = errors_of(root)
    assert error.startswith(expected), error


@pytest.mark.parametrize("include", ["../outside.yaml", "/etc/hostname", "sub/../../outside.yaml"])
def test_includes_escaping_the_repository_are_refused_and_not_read(make_repo, tmp_path, include):
    (tmp_path / "outside.yaml").write_text("SECRET-CONTENT\n")
    root = make_repo({"t.yaml.j2": f"a: 1\n{{% include '{include}' %}}\n"})
    (error,) = errors_of(root)
    assert error.startswith(f"t.yaml.j2:2: template include {include!r} refused"), error
    assert "outside the repository" in error
    assert "SECRET" not in error


def test_includes_through_a_symlink_out_of_the_repository_are_refused(make_repo, tmp_path):
    (tmp_path / "outside.yaml").write_text("data: SECRET-CONTENT\n")
    root = make_repo(
        {"cm.yaml.j2": "{% include '_link.yaml' %}\n", ".capstanignore": "_link.yaml\n"}
    )
    os.symlink(tmp_path / "outside.yaml", root / "_link.yaml")
    (error,) = errors_of(root)
    assert error.startswith("cm.yaml.j2:1: template include '_link.yaml' refused"), error


def test_a_failing_template_does_not_stop_the_others(make_repo):
    root = make_repo(
        {
            "a.yaml.j2": "{{ nope }}\n",
            "b.yaml.j2": "{{ ''.__class__ }}\n",
            "c.yaml": "kind: [\n",
        }
    )
    errors = errors_of(root)
    assert [e.split(":")[0] for e in errors] == ["a.yaml.j2", "b.yaml.j2", "c.yaml"]


def test_includes_of_hidden_files_such_as_git_config_are_refused(make_repo):
    root = make_repo(
        {
            ".git/config": "[remote]\n  url = https://token-abc@example.com/repo\n",
            "cm.yaml.j2": "data: {{ 'x' }}\n{% include '.git/config' %}\n",
            "b.yaml.j2": "{% include '_link' %}\n",
        }
    )
    os.symlink(".git/config", root / "_link")
    errors = errors_of(root)
    assert errors == [
        "b.yaml.j2:1: template include '_link' refused: "
        "resolves to a hidden path (.git, ...), which is never read",
        "cm.yaml.j2:2: template include '.git/config' refused: "
        "resolves to a hidden path (.git, ...), which is never read",
    ]
