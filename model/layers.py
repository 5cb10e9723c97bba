"""Building blocks shared by the convolutional parts of the zoo (ml-cvnets naming)."""

from __future__ import annotations

from torch import Tensor, nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going more than 10% below it."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvLayer(nn.Sequential):
    """Conv2d, optional BatchNorm2d, optional activation. Parameters live under ``block.conv`` and
    ``block.norm`` as in ml-cvnets, so its checkpoints load without renaming."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        use_norm: bool = True,
        act: type[nn.Module] | None = nn.SiLU,
        bias: bool = False,
    ):
        super().__init__()
        block = nn.Sequential()
        block.add_module(
            "conv",
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=bias,
            ),
        )
        if use_norm:
            block.add_module("norm", nn.BatchNorm2d(out_channels))
        if act is not None:
            block.add_module("act", act())
        self.block = block


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project, residual when shapes allow."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: float,
        act: type[nn.Module] = nn.SiLU,
    ):
        super().__init__()
        hidden = make_divisible(int(round(in_channels * expand_ratio)), 8)
        block = nn.Sequential()
        if expand_ratio != 1:
            block.add_module("exp_1x1", ConvLayer(in_channels, hidden, 1, act=act))
        block.add_module("conv_3x3", ConvLayer(hidden, hidden, 3, stride=stride, groups=hidden, act=act))
        block.add_module("red_1x1", ConvLayer(hidden, out_channels, 1, act=None))
        self.block = block
        self.use_res_connect = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.block(x)
        return self.block(x)


class ClassifierHead(nn.Module):
    """Global average pool, dropout, linear (``classifier.fc`` as in ml-cvnets)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.mean(dim=(2, 3))
        return self.fc(self.dropout(x))


def init_cvnets_(module: nn.Module) -> None:
    """ml-cvnets initialisation: Kaiming-normal (fan-out) convs, truncated-normal(0.02) linears,
    norms at weight 1 / bias 0. Training from scratch depends on it (see FIELD_NOTES)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
