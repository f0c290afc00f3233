"""Torch-free core shared by training, service and evaluation: dataset I/O and class names."""

from fmnist.dataset import CLASS_NAMES, NUM_CLASSES, DatasetError, Split, load_raw, load_test_set

__all__ = ["CLASS_NAMES", "NUM_CLASSES", "DatasetError", "Split", "load_raw", "load_test_set"]
