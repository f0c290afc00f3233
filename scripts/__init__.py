"""Scripts, each run as ``python scripts/<name>.py`` or ``python -m scripts.<name>``; a package
so that ``lint-imports`` analyses their imports (the contracts in pyproject.toml)."""
