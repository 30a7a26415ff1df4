"""Maintenance scripts, run from the project root as modules: ``python -m scripts.<name>``."""
