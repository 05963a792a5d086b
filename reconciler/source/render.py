"""Rendering ``*.j2`` manifests with Jinja2, sandboxed and confined to the repository.

Called by the loader for each template before its YAML is parsed. A template
sees ``values`` (the merged values, see ``reconciler.source.values``) and ``env``
(the environment's name, or None), and can ``{% include %}`` / ``{% import %}``
other files of the repository by their repository-relative name.

A template is untrusted input (anyone who can open a pull request writes
one), so:

- the environment is Jinja2's ``ImmutableSandboxedEnvironment``: no access to
  Python internals (``''.__class__`` is a SecurityError), no mutation of values;
- ``StrictUndefined``: a misspelt value is an error, never an empty string;
- the loader resolves every include to its real path and refuses one that
  lands outside the repository (``../``, an absolute path, a symlink) or in a
  hidden path (``.git/config`` may hold credentials);
- what a template computes is bounded (``RenderLimits``): every string, list
  or rendered output at most ``max_value`` characters or items (``*``, ``+``, ``~``,
  ``%``, filters and methods that pad or repeat are checked before they
  allocate), integers at most ``max_int_bits`` bits, ``for`` loops at most
  ``max_loop_iterations`` iterations per commit;
- and, because a bound missed is a node's memory, the commit's templates are
  rendered in a child process (``render_templates``, see ``_renderjail``) with
  an address-space and CPU rlimit and a CPU-time timer.

Every failure becomes one ``ManifestError`` naming the template, the line and
the limit.
"""

from __future__ import annotations

import base64
import re
import string
import traceback
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from reconciler.source._fs import MissingFile, RepositoryPathError, read_inside, resolve_inside
from reconciler.source.errors import ManifestError, ManifestErrors, SourceLocation

__all__ = ["IncludeRefused", "RenderLimits", "TemplateRenderer"]

_MiB = 1024 * 1024


@dataclass(frozen=True)
class RenderLimits:
    """What rendering one commit's templates may use; far above what manifests need."""

    # Characters of a string (or items of a list) a template computes, and of
    # each template's output: one object is at most 1.5 MiB, a file a few.
    max_value: int = 4 * _MiB
    max_output: int = 8 * _MiB
    max_int_bits: int = 4096
    # `for` iterations over all templates of the commit.
    max_loop_iterations: int = 1_000_000
    # The child process rendering the commit: CPU seconds (all templates),
    # and its address space (the interpreter itself takes ~50 MiB).
    seconds: float = 3.0
    memory: int = 256 * _MiB


class LimitExceeded(SecurityError):
    """A template went over one of the ``RenderLimits``."""


class IncludeRefused(SecurityError):
    """A template named a file it may not read: outside the repository or hidden.

    Outside: ``../x``, ``/etc/passwd``, or a symlink leading out. Hidden:
    ``.git/config`` and the like.
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


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles ``a ~ b`` to the environment's bounded join instead of Jinja's plain one."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_str_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


# `%` conversions and `str.format` specs: a width or precision is a size.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER = re.compile(r"\d+")
# Filters and str methods whose result grows with an argument, and how much.
_PADDING = frozenset({"center", "ljust", "rjust", "zfill"})


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with every way to allocate a lot checked against ``RenderLimits``."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, limits: RenderLimits, **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        self.loop_iterations = 0
        # Every filter's result is checked; those that pad or repeat also before they run.
        for name, function in list(self.filters.items()):
            self.filters[name] = self.bounded_filter(name, function)

    # -- parsing: every `for` counts its iterations
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            # An environment attribute, not a global: a template cannot rebind it.
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("counted", lineno=loop.lineno),
                [loop.iter],
                [],
                None,
                None,
                lineno=loop.lineno,
            )
        return tree

    def counted(self, iterable: Iterable[Any]) -> Iterable[Any]:
        limit = self.limits.max_loop_iterations
        for item in iterable:
            self.loop_iterations += 1
            if self.loop_iterations > limit:
                raise LimitExceeded(
                    f"more than {limit} loop iterations (the limit for all templates of a commit)"
                )
            yield item

    # -- operators
    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            self._check_power(left, right)
        elif operator == "*":
            self._check_product(left, right)
        elif operator == "+" and isinstance(left, str | list | tuple):
            if isinstance(right, str | list | tuple):
                self._check_size(len(left) + len(right), "result of +")
        elif operator == "%" and isinstance(left, str):
            self._check_percent(left, right)
        return self._checked(super().call_binop(context, operator, left, right))

    def _check_power(self, base: Any, exponent: Any) -> None:
        if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
            return
        if abs(exponent) > 256:
            raise LimitExceeded(f"exponent {exponent} is too large")
        bits = max(base.bit_length() - 1, 0) * exponent
        if bits > self.limits.max_int_bits:
            raise LimitExceeded(
                f"integer result of ** would exceed {self.limits.max_int_bits} bits"
            )

    def _check_product(self, left: Any, right: Any) -> None:
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > self.limits.max_int_bits:
                raise LimitExceeded(
                    f"integer result of * would exceed {self.limits.max_int_bits} bits"
                )
            return
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int):
                self._check_size(len(seq) * times, "repetition result")

    def _check_percent(self, template: str, arguments: Any) -> None:
        numbers = [n for spec in _PERCENT_SPEC.findall(template) for n in spec if n]
        if "*" in numbers:
            values = arguments if isinstance(arguments, tuple) else (arguments,)
            numbers = [str(v) for v in values if isinstance(v, int)] + numbers
        self._check_widths(n for n in numbers if n != "*")

    def _check_widths(self, numbers: Iterable[str]) -> None:
        for number in numbers:
            if len(number) > 7 or int(number) > self.limits.max_value:
                raise LimitExceeded(
                    f"format width {number} is over the limit of {self.limits.max_value}"
                )

    def _check_size(self, size: int, what: str) -> None:
        if size > self.limits.max_value:
            raise LimitExceeded(
                f"{what} is too large ({size} characters or items; the limit is "
                f"{self.limits.max_value})"
            )

    def _checked(self, value: Any) -> Any:
        if isinstance(value, str | list | tuple | dict):
            self._check_size(len(value), "value")
        elif isinstance(value, int) and value.bit_length() > self.limits.max_int_bits:
            raise LimitExceeded(f"integer over {self.limits.max_int_bits} bits")
        return value

    # -- joins: `~`, `{% set %}` blocks, macro bodies, the output
    def bounded_str_join(self, parts: Iterable[Any]) -> str:
        return self.concat(str(part) for part in parts)

    def concat(self, parts: Iterable[str]) -> str:
        collected: list[str] = []
        size = 0
        for part in parts:
            size += len(part)
            self._check_size(size, "joined text")
            collected.append(part)
        return "".join(collected)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # `'{:>999999999}'.format(x)`: the sandbox hands out its own wrapper,
        # which `call` cannot tell from any function; checked when taken.
        wrapped = super().wrap_str_format(value)
        text = getattr(value, "__self__", None)
        if wrapped is not None and isinstance(text, str):
            self._check_format_spec(text)
        return wrapped

    # -- calls: methods of strings, and the filters that pad or repeat
    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "")
        target = getattr(__obj, "__self__", None)
        if isinstance(target, str):
            __self._check_string_method(target, name, args)
        return __self._checked(super().call(__context, __obj, *args, **kwargs))

    def _check_string_method(self, text: str, name: str, args: tuple[Any, ...]) -> None:
        if name in _PADDING and args and isinstance(args[0], int):
            self._check_size(args[0], f"{name}() width")
        elif name == "expandtabs" and args and isinstance(args[0], int):
            self._check_size(len(text) + text.count("\t") * args[0], "expandtabs() result")
        elif name == "replace" and len(args) >= 2:
            self._check_replace(text, args[0], args[1])
        elif name in ("format", "format_map"):
            self._check_format_spec(text)
        elif name == "join" and args:
            self._check_join(text, args[0])

    def _check_replace(self, text: str, old: Any, new: Any) -> None:
        if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
            count = text.count(old) if old else len(text) + 1
            self._check_size(len(text) + count * (len(new) - len(old)), "replace() result")

    def _check_format_spec(self, text: str) -> None:
        for _literal, _field, spec, _conversion in string.Formatter().parse(text):
            if spec and "{" in spec:
                raise LimitExceeded("nested format specs are not allowed in templates")
            self._check_widths(_NUMBER.findall(spec or ""))

    def _check_join(self, separator: Any, items: Any) -> None:
        if isinstance(items, list | tuple) and isinstance(separator, str):
            size = len(separator) * max(len(items) - 1, 0)
            for item in items:
                size += len(item) if isinstance(item, str) else 20
                self._check_size(size, "join() result")

    def bounded_filter(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def bounded(*args: Any, **kwargs: Any) -> Any:
            self._check_filter(name, args, kwargs)
            return self._checked(function(*args, **kwargs))

        # Jinja passes the context, eval context or environment to filters marked for it.
        if hasattr(function, "jinja_pass_arg"):
            bounded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
        return bounded

    def _check_filter(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # The first argument is the filtered value, after any passed context.
        values = [a for a in args if not isinstance(a, Context | EvalContext | jinja2.Environment)]
        if not values:
            return
        value, rest = values[0], values[1:]
        numbers = [a for a in (*rest, *kwargs.values()) if isinstance(a, int)]
        if name in ("center", "batch", "slice", "tojson", "wordwrap", "truncate"):
            for number in numbers:
                self._check_size(number, f"{name} argument")
        elif name == "indent" and isinstance(value, str):
            width = rest[0] if rest else kwargs.get("width", 4)
            prefix = width if isinstance(width, int) else len(str(width))
            self._check_size(len(value) + (value.count("\n") + 1) * prefix, "indent result")
        elif name == "replace" and isinstance(value, str) and len(rest) >= 2:
            self._check_replace(value, rest[0], rest[1])
        elif name == "format" and isinstance(value, str):
            self._check_percent(value, tuple(rest))
        elif name == "join":
            separator = rest[0] if rest else kwargs.get("d", "")
            items = list(value) if isinstance(value, list | tuple) else value
            self._check_join(separator, items)


def _b64encode(value: object) -> str:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


class TemplateRenderer:
    """Renders the templates of one repository with one set of values, in this process.

    The loader does not call it directly: ``render_templates`` runs it in a
    child process with rlimits. Loop iterations are counted across every
    template one renderer renders (one commit).
    """

    def __init__(
        self,
        root_real: Path,
        *,
        values: Mapping[str, Any],
        env: str | None,
        limits: RenderLimits = RenderLimits(),
    ) -> None:
        self._loader = _RepositoryLoader(root_real)
        self._limits = limits
        self._environment = _Sandbox(
            limits=limits,
            loader=self._loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            # YAML is indentation-sensitive: block tags on their own line
            # must leave no blank or indented residue behind.
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._environment.filters["b64encode"] = self._environment.bounded_filter(
            "b64encode", _b64encode
        )
        self._environment.globals.update(values=values, env=env)

    def render(self, name: str) -> str:
        """The rendered text of repository file ``name``; raises ManifestErrors (one error)."""
        try:
            generated = self._environment.get_template(name).generate()
            assert isinstance(generated, Generator)  # a generator function, typed Iterator
            return self._output(generated)
        except jinja2.TemplateSyntaxError as exc:
            where = SourceLocation(exc.name or name, exc.lineno)
            message = f"template syntax error: {exc.message}"
            raise ManifestErrors([ManifestError(where, message)]) from None
        except Exception as exc:
            # Any exception is the template's doing (the sandbox raised it or
            # the template's own expression did); it must become a validation
            # error, never escape the loader.
            raise ManifestErrors(
                [template_error(exc, name, self._loader.served, limits=self._limits)]
            ) from None

    def _output(self, parts: Generator[str, None, None]) -> str:
        collected: list[str] = []
        size = 0
        for part in parts:
            size += len(part)
            if size > self._limits.max_output:
                over = LimitExceeded(
                    f"output is over the limit of {self._limits.max_output // _MiB} MiB "
                    "for one template"
                )
                # Thrown into the template where it yielded the part that crossed the
                # limit: Jinja's traceback then names that line.
                parts.throw(over)
                raise over
            collected.append(part)
        return "".join(collected)


def template_error(
    exc: BaseException, name: str, templates: set[str], *, limits: RenderLimits
) -> ManifestError:
    """``exc``, raised while rendering ``name``, as an error at the innermost template line."""
    where = SourceLocation(name)
    # Jinja rewrites tracebacks so template frames carry the template's name
    # and line; the innermost one is where the failing expression is.
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in templates and frame.lineno:
            where = SourceLocation(frame.filename, frame.lineno)
            break
    return ManifestError(where, _describe(exc, limits=limits))


def _describe(exc: BaseException, *, limits: RenderLimits) -> str:
    if isinstance(exc, IncludeRefused):
        return f"template {exc.message}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined template variable: {exc.message}"
    if isinstance(exc, LimitExceeded):
        return f"template over a rendering limit: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"template refused by the sandbox: {exc.message}"
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"template include not found: {exc.message}"
    if isinstance(exc, RecursionError):
        return "template recursion too deep (an include or macro calls itself?)"
    if isinstance(exc, MemoryError):
        return (
            "template over a rendering limit: rendering the commit needs more than "
            f"{limits.memory // _MiB} MiB of memory"
        )
    if isinstance(exc, RenderTimeout):
        return (
            "template over a rendering limit: rendering the commit takes longer than "
            f"{limits.seconds:g} s"
        )
    return f"template error: {type(exc).__name__}: {exc}"


class RenderTimeout(Exception):
    """Raised inside rendering when the commit's CPU-time budget is spent."""
