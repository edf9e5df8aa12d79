"""Kept until ``actors/__init__.py`` imports :mod:`actors._diagram` directly."""

from __future__ import annotations

from ._diagram import render_diagram

__all__ = ["render_diagram"]
