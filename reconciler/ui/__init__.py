"""The web UI: what runs, why, and what a commit will change, in a browser.

Served by the API server under ``/ui/`` (``capstan up`` passes :func:`web_ui` to
``reconciler.api.server.create_app`` as ``ServerHooks(ui=...)``, so the server itself does
not import the UI), with the API's TLS, tokens and RBAC. ``_views`` reads the pages' data
through the in-process API, ``_actions`` holds what ``capstan up`` plugs in (sync now, plan,
roll back: :func:`ui_sources`), ``_sessions`` the login sessions, ``_app`` the routes;
``templates/`` and ``static/`` are the HTML, CSS and JavaScript, served as they are.
"""

from reconciler.ui._actions import ActionError, RollbackPreview, UiSources, ui_sources
from reconciler.ui._app import CSP, PERMISSIONS, ui_routes, web_ui
from reconciler.ui._views import SourceInfo

__all__ = [
    "CSP",
    "PERMISSIONS",
    "ActionError",
    "RollbackPreview",
    "SourceInfo",
    "UiSources",
    "ui_routes",
    "ui_sources",
    "web_ui",
]
