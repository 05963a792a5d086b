"""Rendering `*.j2` manifests with Jinja2, sandboxed and confined to the repository.

Called by the loader for each template before its YAML is parsed. A template
sees `values` (the merged values, see `reconciler.source.values`) and `env`
(the environment's name, or None), and can `{% include %}` / `{% import %}`
other files of the repository by their repository-relative name.

A template is untrusted input (anyone who can open a pull request writes
one), so:

- the environment is Jinja2's `ImmutableSandboxedEnvironment`: no access to
  Python internals (`''.__class__` is a SecurityError), no mutation of values;
- `StrictUndefined`: a misspelt value is an error, never an empty string;
- the loader resolves every include to its real path and refuses one that
  lands outside the repository (`../`, an absolute path, a symlink) or in a
  hidden path (`.git/config` may hold credentials);
- repetition and powers that would allocate gigabytes are refused.

Every failure becomes one `ManifestError` naming the template and line.
"""

from __future__ import annotations

import base64
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from reconciler.source._fs import MissingFile, RepositoryPathError, read_inside, resolve_inside
from reconciler.source.errors import ManifestError, ManifestErrors, SourceLocation

__all__ = ["IncludeRefused", "TemplateRenderer"]

# Bounds for `*` and `**` in templates; far above what a manifest needs.
_MAX_REPEAT_LEN = 1_000_000
_MAX_EXPONENT = 256


class IncludeRefused(SecurityError):
    """A template named a file it may not read: outside the repository or hidden.

    Outside: `../x`, `/etc/passwd`, or a symlink leading out. Hidden:
    `.git/config` and the like.
    """


class _RepositoryLoader(jinja2.BaseLoader):
    def __init__(self, root_real: Path) -> None:
        self._root_real = root_real
        self.served: set[str] = set()

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        try:
            real = resolve_inside(self._root_real, template)
        except RepositoryPathError as exc:
            raise IncludeRefused(f"include {template!r} refused: {exc}") from None
        try:
            source = read_inside(self._root_real, real)
        except MissingFile:
            raise jinja2.TemplateNotFound(template, f"{template!r}: no such file") from None
        except RepositoryPathError as exc:
            raise IncludeRefused(f"include {template!r} refused: {exc}") from None
        # The filename is the repository-relative name: Jinja puts it into
        # the traceback frames, which is how errors find their template.
        self.served.add(template)
        return source, template, lambda: True


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > _MAX_REPEAT_LEN
                ):
                    raise SecurityError("repetition result is too large")
        return super().call_binop(context, operator, left, right)


def _b64encode(value: object) -> str:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


class TemplateRenderer:
    """Renders the templates of one repository with one set of values."""

    def __init__(
        self, root_real: Path, *, values: Mapping[str, Any], env: str | None
    ) -> None:
        self._loader = _RepositoryLoader(root_real)
        self._environment = _Sandbox(
            loader=self._loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            # YAML is indentation-sensitive: block tags on their own line
            # must leave no blank or indented residue behind.
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._environment.filters["b64encode"] = _b64encode
        self._environment.globals.update(values=values, env=env)

    def render(self, name: str) -> str:
        """The rendered text of repository file `name`; raises ManifestErrors (one error)."""
        try:
            return self._environment.get_template(name).render()
        except jinja2.TemplateSyntaxError as exc:
            where = SourceLocation(exc.name or name, exc.lineno)
            message = f"template syntax error: {exc.message}"
            raise ManifestErrors([ManifestError(where, message)]) from None
        except Exception as exc:
            # Any exception is the template's doing (the sandbox raised it or
            # the template's own expression did); it must become a validation
            # error, never escape the loader.
            raise ManifestErrors([_runtime_error(exc, name, self._loader.served)]) from None


def _runtime_error(exc: BaseException, name: str, templates: set[str]) -> ManifestError:
    where = SourceLocation(name)
    # Jinja rewrites tracebacks so template frames carry the template's name
    # and line; the innermost one is where the failing expression is.
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in templates and frame.lineno:
            where = SourceLocation(frame.filename, frame.lineno)
            break
    return ManifestError(where, _describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, IncludeRefused):
        return f"template {exc.message}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined template variable: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"template refused by the sandbox: {exc.message}"
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"template include not found: {exc.message}"
    if isinstance(exc, RecursionError):
        return "template recursion too deep (an include or macro calls itself?)"
    return f"template error: {type(exc).__name__}: {exc}"
