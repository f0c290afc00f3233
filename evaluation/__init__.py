"""Evaluate the live Fashion-MNIST service over HTTP and write a report (no torch, no bentoml).

Entry point: ``fmnist-eval`` (:func:`evaluation.cli.main`). The HTTP client is usable alone:

    from evaluation.client import ServiceClient
"""
