"""What the loader reports: where an object came from, and every reason a repository is invalid.

The loader (``reconciler.source.load``) raises one ``ManifestErrors`` holding every
``ManifestError`` of the whole repository; the sync loop keeps the last good commit
and shows them, ``capstan validate`` prints them one per line.

Files are named relative to the repository root, so a message about a commit
reads the same wherever it was checked out; ``ManifestErrors.lines()`` prefixes
the root as the caller named it (``example-repo/web.yaml:14:9: ...``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ManifestError", "ManifestErrors", "SourceLocation", "format_field_path"]


@dataclass(frozen=True, order=True)
class SourceLocation:
    """A place in the repository: a file relative to its root, 1-based line and column.

    ``rendered`` marks positions in the output of a Jinja2 template: line numbers
    then count lines of the rendered text, not of the ``.j2`` source.
    """

    file: str
    line: int | None = None
    column: int | None = None
    rendered: bool = False

    def display(self, root: Path | None = None) -> str:
        name = str(root / self.file) if root is not None else self.file
        if self.rendered:
            name += " (rendered)"
        if self.line is None:
            return name
        if self.column is None:
            return f"{name}:{self.line}"
        return f"{name}:{self.line}:{self.column}"

    def __str__(self) -> str:
        return self.display()


@dataclass(frozen=True)
class ManifestError:
    """One reason the repository is invalid, with the place and the field at fault."""

    location: SourceLocation
    message: str
    field_path: str = ""

    @property
    def file(self) -> str:
        return self.location.file

    @property
    def line(self) -> int | None:
        return self.location.line

    @property
    def column(self) -> int | None:
        return self.location.column

    def display(self, root: Path | None = None) -> str:
        where = self.location.display(root)
        if self.field_path:
            return f"{where}: {self.field_path}: {self.message}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, str | int | bool | None]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "rendered": self.location.rendered,
            "field_path": self.field_path,
            "message": self.message,
        }

    def __str__(self) -> str:
        return self.display()


class ManifestErrors(Exception):
    """Every error found in one repository; raised instead of returning any object.

    ``root`` is the repository directory as the caller named it; it only affects
    how the errors are displayed.
    """

    def __init__(self, errors: Iterable[ManifestError], *, root: Path | None = None) -> None:
        self.errors: tuple[ManifestError, ...] = tuple(
            sorted(errors, key=lambda e: (_sort_key(e.location), e.field_path, e.message))
        )
        if not self.errors:
            raise ValueError("ManifestErrors needs at least one error")
        self.root = root
        super().__init__(self._summary())

    def lines(self) -> list[str]:
        return [error.display(self.root) for error in self.errors]

    def _summary(self) -> str:
        count = len(self.errors)
        noun = "error" if count == 1 else "errors"
        return f"{count} {noun}:\n" + "\n".join(self.lines())


def _sort_key(location: SourceLocation) -> tuple[str, int, int, bool]:
    return (location.file, location.line or 0, location.column or 0, location.rendered)


def format_field_path(path: Sequence[str | int]) -> str:
    """``("spec", "containers", 0, "image")`` -> ``spec.containers[0].image``.

    Map keys that are not plain identifiers (label keys such as
    ``app.kubernetes.io/name``) are bracketed and quoted so the path stays unambiguous.
    """
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part and all(ch.isalnum() or ch in "_-" for ch in part):
            out.append(f".{part}" if out else part)
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out)
