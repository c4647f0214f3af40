"""The harness's version, in a module of its own: package code reads it from here, never from the
root package, whose lazy public API (`modelbench/__init__.py`) reaches most of the harness."""

__version__ = "0.1.0"
