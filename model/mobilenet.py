"""MobileNetV2 (Sandler et al. 2018) and MobileNetV1 (Howard et al. 2017), the article's baselines.

MobileNetV2 uses torchvision's module names (``features.N``, ``classifier.1``), so its ImageNet
weights load unchanged; ImageNet mean/std preprocessing goes into the checkpoint's contract.
"""

from __future__ import annotations

from torch import Tensor, nn

from .layers import make_divisible
from .registry import register_model


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias), BatchNorm2d, ReLU6: torchvision's ``Conv2dNormActivation`` layout."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
        layers = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class MV2Block(nn.Module):
    """Inverted residual with ReLU6 (torchvision naming: ``conv.0`` .. ``conv.3``)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_ch, hidden, 1))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class _PooledClassifier(nn.Module):
    """``features`` then global average pooling, dropout and a linear head (torchvision names)."""

    def __init__(self, features: nn.Sequential, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        self.num_classes = num_classes
        _init_torchvision_(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature map before pooling."""
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class MobileNetV2(_PooledClassifier):
    """MobileNetV2 classifier."""

    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )  # expand t, channels c, repeats n, stride s

    def __init__(self, num_classes: int = 1000, width: float = 1.0, dropout: float = 0.2):
        c = make_divisible(32 * width, 8)
        last = make_divisible(1280 * max(1.0, width), 8)
        features: list[nn.Module] = [ConvBNAct(3, c, 3, 2)]
        for t, ch, n, s in self.SETTINGS:
            out = make_divisible(ch * width, 8)
            for i in range(n):
                features.append(MV2Block(c, out, s if i == 0 else 1, t))
                c = out
        features.append(ConvBNAct(c, last, 1))
        super().__init__(nn.Sequential(*features), last, num_classes, dropout)


class MobileNetV1(_PooledClassifier):
    """MobileNetV1: a stem conv and 13 depthwise-separable blocks (ReLU)."""

    SETTINGS = (
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    )

    def __init__(self, num_classes: int = 1000, width: float = 1.0, dropout: float = 0.2):
        c = make_divisible(32 * width, 8)
        layers: list[nn.Module] = [_conv_bn_relu(3, c, 3, 2)]
        for ch, s in self.SETTINGS:
            out = make_divisible(ch * width, 8)
            layers += [_conv_bn_relu(c, c, 3, s, groups=c), _conv_bn_relu(c, out, 1)]
            c = out
        super().__init__(nn.Sequential(*layers), c, num_classes, dropout)


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def _init_torchvision_(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@register_model
def mobilenet_v2(num_classes: int = 1000, **kwargs) -> MobileNetV2:
    """MobileNetV2 width 1.0: 3,504,872 parameters with a 1000-class head."""
    return MobileNetV2(num_classes, **kwargs)


@register_model
def mobilenet_v1(num_classes: int = 1000, **kwargs) -> MobileNetV1:
    """MobileNetV1 width 1.0: 4,231,976 parameters with a 1000-class head."""
    return MobileNetV1(num_classes, **kwargs)


@register_model
def mobilenet_v2_test(num_classes: int = 1000, **kwargs) -> MobileNetV2:
    """MobileNetV2 at width 0.25 for fast tests."""
    return MobileNetV2(num_classes, width=0.25, **kwargs)
