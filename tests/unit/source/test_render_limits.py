"""Bounded rendering: each way a template can allocate or loop without end, refused at its line.

Through the real path: ``load_repository`` renders in its child process with
rlimits; each case names the template, the line and the limit.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from reconciler.source import ManifestErrors, load_repository
from reconciler.source._renderjail import _wait
from reconciler.source.render import RenderLimits

LIMIT = "t.yaml.j2:2: template over a rendering limit: "


def errors_of(root: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ManifestErrors) as caught:
        load_repository(root, **kwargs)  # type: ignore[arg-type]
    return [str(error) for error in caught.value.errors]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'x' | center(1500000000)", "center argument is too large (1500000000"),
        ("'x'.center(1500000000)", "center() width is too large"),
        ("'x'.ljust(10 ** 9)", "ljust() width is too large"),
        ("'%1000000000d' % 1", "format width 1000000000 is over the limit"),
        ("'%*d' % (1000000000, 1)", "format width 1000000000 is over the limit"),
        ("'%1000000000d' | format(1)", "format width 1000000000 is over the limit"),
        ("'{:>1000000000}'.format(1)", "format width 1000000000 is over the limit"),
        ("((9 ** 99) ** 99) ** 99", "integer result of ** would exceed 4096 bits"),
        (
            "(2 ** 255) * (2 ** 255) * (2 ** 255) * (2 ** 255) * (2 ** 255) * (2 ** 255)"
            " * (2 ** 255) * (2 ** 255) * (2 ** 255) * (2 ** 255) * (2 ** 255) * (2 ** 255)"
            " * (2 ** 255) * (2 ** 255) * (2 ** 255) * (2 ** 255) * (2 ** 255)",
            "integer result of * would exceed 4096 bits",
        ),
        ("('x' * 4000000) ~ ('x' * 4000000)", "joined text is too large"),
        ("('x' * 4000000) + ('x' * 4000000)", "result of + is too large"),
        ("('x' * 1000) | replace('x', 'y' * 100000)", "replace() result is too large"),
        ("('x' * 1000).replace('x', 'y' * 100000)", "replace() result is too large"),
        ("(['x' * 100000] * 100) | join", "join() result is too large"),
        ("('\\n' * 100000) | indent('x' * 100)", "indent result is too large"),
        ("range(10) | batch(10 ** 9, 0) | list", "batch argument is too large"),
    ],
)
def test_allocations_are_bounded_before_they_happen(
    make_repo, expression: str, expected: str
) -> None:
    root = make_repo({"t.yaml.j2": f"a: 1\nb: {{{{ {expression} }}}}\n"})
    (error,) = errors_of(root)
    assert error.startswith(LIMIT + expected), error


def test_doubling_with_tilde_stops_at_the_value_limit(make_repo) -> None:
    root = make_repo(
        {
            "t.yaml.j2": (
                "{% set s = namespace(v='x') %}\n"
                "{% for i in range(64) %}{% set s.v = s.v ~ s.v %}{% endfor %}\n"
            )
        }
    )
    (error,) = errors_of(root)
    assert error.startswith(LIMIT + "joined text is too large"), error


def test_loop_iterations_are_counted_across_nested_loops_and_templates(make_repo) -> None:
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n"
    root = make_repo({"t.yaml.j2": "a: 1\n" + loops})
    (error,) = errors_of(root)
    assert error == LIMIT.rstrip() + (
        " more than 1000000 loop iterations (the limit for all templates of a commit)"
    )
    # Below the limit per template, over it together.
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n{{ i }}\n"
    root = make_repo(
        {
            "a.yaml.j2": "{% set i = 1 %}{% for i in range(3000) %}{% endfor %}" + namespace,
            "t.yaml.j2": "{% set i = 2 %}\n{% for i in (range(1000) | list) * 3 %}{% endfor %}"
            + namespace,
        }
    )
    (error,) = errors_of(root, render_limits=RenderLimits(max_loop_iterations=5000))
    assert error.startswith(LIMIT + "more than 5000 loop iterations"), error


def test_output_of_one_template_is_bounded(make_repo) -> None:
    root = make_repo(
        {"t.yaml.j2": "a: 1\n{% for i in range(100) %}{{ 'x' * 100000 }}{% endfor %}\n"}
    )
    (error,) = errors_of(root, render_limits=RenderLimits(max_output=1024 * 1024))
    assert error == LIMIT + "output is over the limit of 1 MiB for one template"


def test_memory_over_the_childs_address_space_is_an_error_at_the_line(make_repo) -> None:
    limits = RenderLimits(max_value=10**10, memory=160 * 1024 * 1024)
    root = make_repo({"t.yaml.j2": "a: 1\nb: {{ 'x' * 400000000 }}\n"})
    (error,) = errors_of(root, render_limits=limits)
    assert error == LIMIT + "rendering the commit needs more than 160 MiB of memory"


def test_time_is_bounded_by_a_timer_at_the_line_and_other_templates_are_not_rendered(
    make_repo,
) -> None:
    root = make_repo(
        {
            "t.yaml.j2": "a: 1\n{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}"
            "{% endif %}{% endmacro %}{{ m(40) }}\n",
            "u.yaml.j2": "a: 1\n",
        }
    )
    errors = errors_of(root, render_limits=RenderLimits(seconds=0.5))
    assert errors == [
        LIMIT + "rendering the commit takes longer than 0.5 s",
        "u.yaml.j2: template not rendered: the commit's rendering limits were spent before it",
    ]


def test_a_computation_the_timer_cannot_interrupt_is_stopped_by_the_cpu_limit(make_repo) -> None:
    # One `in` over a list compares strings in C for seconds: no signal handler runs, the
    # CPU rlimit ends the child. The timer counts CPU time too, so on a busy machine it
    # still cannot fire before the `in` starts, nor the parent kill a child that computes.
    limits = RenderLimits(seconds=0.2, max_value=10**8)
    root = make_repo(
        {
            "t.yaml.j2": (
                "{% set s = 'a' * 100000 %}{% set l = [s] * 2000000 %}\n"
                "b: {{ (('a' * 99999) ~ 'b') in l }}\n"
            )
        }
    )
    (error,) = errors_of(root, render_limits=limits)
    assert error == (
        "t.yaml.j2: template over a rendering limit: rendering the commit uses more than 3 s "
        "of CPU (the renderer was stopped)"
    )


def test_a_renderer_that_spends_no_cpu_is_killed_past_its_budget() -> None:
    # A stand-in for a child blocked where it spends no CPU (the rlimit cannot end it).
    limits = RenderLimits(seconds=0.1)
    child = subprocess.Popen(["sleep", "600"], stdin=subprocess.PIPE)
    try:
        assert _wait(child, b"request", limits) is True
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL


def test_nothing_the_template_renders_reaches_the_objects_on_a_limit(make_repo) -> None:
    root = make_repo(
        {
            "ok.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n",
            "t.yaml.j2": "a: 1\nb: {{ 'x' | center(1500000000) }}\n",
        }
    )
    assert len(errors_of(root)) == 1


def test_the_repository_is_never_on_the_renderers_import_path(make_repo, tmp_path: Path) -> None:
    marker = tmp_path / "repository-code-ran"
    code = f"open({str(marker)!r}, 'w').close()\n"
    root = make_repo(
        {
            "jinja2/__init__.py": code,
            "reconciler/__init__.py": code,
            "pickle.py": code,
            "cm.yaml.j2": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ 'c' ~ 'm' }}\n",
        }
    )
    (loaded,) = load_repository(root).objects
    assert loaded.obj.name == "cm"
    assert not marker.exists()
