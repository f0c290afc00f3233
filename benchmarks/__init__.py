"""Benchmarks, each run as a script (``python benchmarks/<name>.py``); a package only so that
``lint-imports`` analyses their imports (the contracts in pyproject.toml)."""
