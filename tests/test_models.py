"""The study's architectures, exactly."""

from __future__ import annotations

import pytest
import torch

from training.models import MODELS, build_model, conv_layers, count_parameters


@pytest.mark.parametrize(
    ("name", "params", "convs"), [("baseline", 421_642, 2), ("deeper", 1_701_130, 3)]
)
def test_parameter_counts_and_shapes(name: str, params: int, convs: int) -> None:
    net = build_model(name)
    assert count_parameters(net) == params
    assert len(conv_layers(net)) == convs
    for batch in (1, 5):
        assert net.eval()(torch.zeros(batch, 1, 28, 28)).shape == (batch, 10)


def test_flatten_sizes_match_the_study() -> None:
    assert build_model("baseline").classifier[1].in_features == 3_136
    assert build_model("deeper").classifier[1].in_features == 6_272


def test_dropout_is_active_only_in_training_mode() -> None:
    torch.manual_seed(0)
    net, x = build_model("deeper"), torch.randn(4, 1, 28, 28)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="baseline"):
        build_model("resnet")
    assert set(MODELS) == {"baseline", "deeper", "improved"}
