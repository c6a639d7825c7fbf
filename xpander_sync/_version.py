"""The package version, in one place (read by setup.cfg and the User-Agent header)."""

__version__ = "0.1.0"
