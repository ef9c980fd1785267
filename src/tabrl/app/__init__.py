"""The application: the command line, the workflow behind its commands, run folders and sweeps.

The library (agents, engines, exact solutions, pictures) never imports this package; the
import contract in ``pyproject.toml`` (checked by ``tests/test_layers.py``) holds that.
"""
