"""Sphinx configuration for the actors docs."""

from __future__ import annotations

project = "actors"
author = "The actors developers"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# No intersphinx: the build must work without network access.
