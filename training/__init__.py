"""Reproduce the Fashion-MNIST CNN study: data, models, training loop, export, figures."""
