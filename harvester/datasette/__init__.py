"""The archive in Datasette: the plugin (hooks in `plugin`), its templates and the metadata.

This package is the `seminar_harvester` entry point of Datasette's plugin group, so that
Datasette finds `templates/` and `static/` beside it; the hooks are defined in `plugin`.
"""

from harvester.datasette.plugin import (
    asgi_wrapper,
    extra_css_urls,
    extra_template_vars,
    prepare_connection,
    prepare_jinja2_environment,
    register_output_renderer,
    render_cell,
    startup,
)

__all__ = [
    "asgi_wrapper",
    "extra_css_urls",
    "extra_template_vars",
    "prepare_connection",
    "prepare_jinja2_environment",
    "register_output_renderer",
    "render_cell",
    "startup",
]
