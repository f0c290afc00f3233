"""The serving benchmark's peers, each started by benchmarks/serve_throughput.py from this
folder; a package only so that ``lint-imports`` analyses their imports."""
