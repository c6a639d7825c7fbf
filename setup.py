"""Shim so that legacy tools (``pip install -e .`` on old pips) work; all metadata is in setup.cfg."""
from setuptools import setup

setup()
