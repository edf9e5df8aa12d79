"""Sphinx configuration for the actors docs."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any

from pydantic import BaseModel
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer

import actors

project = "actors"
author = "The actors developers"
release = actors.__version__
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"actors {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {
    # pydantic's own machinery, documented by pydantic.
    "exclude-members": "model_config, model_post_init, model_copy, model_fields",
}
myst_heading_anchors = 3
myst_enable_extensions = ["deflist"]
# No intersphinx: the build must work without network access.


def _defining_module(cls: type) -> str | None:
    """Return the private module that defines *cls* (its __module__ says actors)."""
    for info in pkgutil.iter_modules(actors.__path__):
        name = f"actors.{info.name}"
        module = importlib.import_module(name)
        if vars(module).get(cls.__name__) is not cls:
            continue
        tag = ModuleAnalyzer.for_module(name).find_tags().get(cls.__name__)
        if tag is not None and tag[0] == "class":  # defined here, not imported
            return name
    return None


def _field_docs(  # noqa: PLR0917  # the signature Sphinx calls it with
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Document the fields of public models and dataclasses from their docstrings.

    pydantic removes fields from the class and ``actors`` re-homes its public
    classes, so autodoc finds neither the fields nor their attribute
    docstrings; read them from the defining module's source instead.
    """
    if what != "class" or not isinstance(obj, type):
        return
    if issubclass(obj, BaseModel):
        fields = list(obj.model_fields)
    elif dataclasses.is_dataclass(obj):
        fields = [f.name for f in dataclasses.fields(obj)]
    else:
        return
    module = _defining_module(obj)
    if module is None:
        return
    analyzer = ModuleAnalyzer.for_module(module)
    docs = analyzer.find_attr_docs()
    annotations = analyzer.annotations
    for field in fields:
        doc = docs.get((obj.__name__, field))
        if not doc:
            continue
        lines.extend(["", f".. attribute:: {field}"])
        annotation = annotations.get((obj.__name__, field))
        if annotation:
            lines.append(f"   :type: {annotation}")
        lines.append("")
        lines.extend(f"   {line}" if line else "" for line in doc)


def setup(app: Sphinx) -> None:
    """Register the field documenter."""
    app.connect("autodoc-process-docstring", _field_docs)
