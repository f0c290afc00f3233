"""Facts that users, exported files and the study rely on, written out literally.

Other tests read these values from the code, so a wrong value there goes unnoticed: two
class names swapped would still agree with themselves. Here each fact is typed out again,
from its source (the dataset's documentation, docs/api.md, the study, Guo et al. 2017),
and a change to any of them has to be made twice, on purpose.
"""

from __future__ import annotations

import inspect

import numpy as np

from fmnist import contract, dataset, metrics, registry, study
from service import validation


def test_class_names_and_their_order() -> None:
    # Fashion-MNIST's label order (zalandoresearch/fashion-mnist README): label i is
    # CLASS_NAMES[i]; every exported model's output column i means this class.
    assert dataset.CLASS_NAMES == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    assert dataset.NUM_CLASSES == 10
    assert dataset.IMAGE_SHAPE == (28, 28)


def test_dataset_files_and_checksums() -> None:
    # md5 of the decompressed IDX files, as published with the dataset.
    assert dataset.FILES == {
        "train_images": ("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train_labels": ("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
        "test_images": ("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
        "test_labels": ("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
    }
    assert dataset.ENV_VAR == "FMNIST_DATA_DIR"
    assert str(dataset.DEBIAN_DIR) == "/usr/share/datasets/fashion-mnist"
    assert dataset.MIRRORS == (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://ossci-datasets.s3.amazonaws.com/fashion-mnist/",
    )


def test_onnx_contract() -> None:
    assert contract.INPUT_NAME == "pixels"
    assert contract.LOGITS_NAME == "logits"
    assert contract.PROBABILITIES_NAME == "probabilities"
    assert contract.OUTPUT_NAMES == ("logits", "probabilities")
    assert contract.INPUT_DTYPE is np.float32
    assert contract.IMAGE_SIDE == 28
    assert contract.INPUT_SHAPE == ("N", 1, 28, 28)
    assert contract.PIXEL_RANGE == (0.0, 255.0)
    assert (contract.PIXEL_SCALE, contract.PIXEL_SHIFT) == (127.5, 1.0)
    assert contract.INPUT_SPEC == (
        "pixels: float32 [N,1,28,28], raw 0-255; scaling to [-1,1] in graph"
    )
    assert contract.ONNX_SUFFIX == ".onnx"


def test_onnx_metadata_keys() -> None:
    # Files exported before a rename must still be read: these strings are on disk.
    keys = {name: getattr(contract, name) for name in dir(contract) if name.startswith("KEY_")}
    assert keys == {
        "KEY_MODEL_NAME": "model_name",
        "KEY_CLASS_NAMES": "class_names",
        "KEY_PARAMETERS": "parameters",
        "KEY_TEST_ACCURACY": "test_accuracy",
        "KEY_VAL_ACCURACY": "val_accuracy",
        "KEY_BEST_VAL_ACCURACY": "best_val_accuracy",
        "KEY_DATASET_MD5": "dataset_md5",
        "KEY_CODE_REVISION": "code_revision",
        "KEY_TORCH_VERSION": "torch_version",
        "KEY_INPUT_SPEC": "input_spec",
        "KEY_TRAINING_CONFIG": "training_config",
        "KEY_TEMPERATURE": "temperature",
        "KEY_WEIGHTS": "weights",
        "KEY_REFERENCE": "reference_distribution",
    }
    assert contract.PROJECT_MARKER_KEY == "model_name"
    assert sorted(contract.JSON_METADATA_KEYS) == [
        "class_names",
        "dataset_md5",
        "reference_distribution",
        "training_config",
    ]
    # The service's confidence histogram and the reference share these bounds.
    assert contract.CONFIDENCE_BUCKETS == (
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
        0.95,
        0.99,
        1.0,
    )


def test_ece_default_is_15_bins() -> None:
    assert metrics.ECE_BINS == 15
    assert inspect.signature(metrics.reliability).parameters["bins"].default == 15
    rel = metrics.reliability(np.array([0]), np.array([0]), np.array([0.5]))
    assert len(rel.counts) == 15 and len(rel.edges) == 16


def test_registered_models_and_their_recipes() -> None:
    # Names and study membership in this order are also pinned in tests/test_models.py.
    specs = {name: (spec.in_study, spec.recipe) for name, spec in registry.REGISTRY.items()}
    assert specs == {
        "baseline": (True, "study"),
        "deeper": (True, "study"),
        "improved": (False, "improved"),
    }


def test_the_studys_published_numbers() -> None:
    assert study.EPOCHS == 20
    assert study.SUMMARY_TABLE == {
        "baseline": {
            "best_val_acc": 0.9288,
            "best_epoch": 16,
            "final_val_acc": 0.9267,
            "final_train_acc": 0.9585,
            "test_acc": 0.9223,
        },
        "deeper": {
            "best_val_acc": 0.9295,
            "best_epoch": 20,
            "final_val_acc": 0.9295,
            "final_train_acc": 0.9800,
            "test_acc": 0.9223,
        },
    }
    assert study.TEST_ACCURACY == {"baseline": 0.9223, "deeper": 0.9223}
    assert study.PER_CLASS_ACCURACY == {
        "T-shirt/top": 0.878,
        "Trouser": 0.989,
        "Pullover": 0.887,
        "Dress": 0.930,
        "Coat": 0.893,
        "Sandal": 0.976,
        "Shirt": 0.743,
        "Sneaker": 0.972,
        "Bag": 0.978,
        "Ankle boot": 0.977,
    }
    assert study.HARDEST_CLASS == "Shirt"


def test_service_input_limits() -> None:
    # docs/api.md: PNG, JPEG, WebP and BMP; images over 50 MP are refused with 413.
    assert sorted(validation.IMAGE_FORMATS) == ["BMP", "JPEG", "PNG", "WEBP"]
    assert validation.MAX_IMAGE_PIXELS == 50_000_000
    assert validation.SIDE == 28
