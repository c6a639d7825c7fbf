"""Sphinx configuration for the xpander-sync documentation (MyST Markdown pages)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from xpander_sync import __version__  # noqa: E402

project = "xpander-sync"
author = "the xpander-sync developers"
copyright = "2026, the xpander-sync developers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
master_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False

html_theme = "alabaster"
html_title = f"xpander-sync {version}"
