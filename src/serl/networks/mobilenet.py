"""MobileNetV2 (torchvision's layout) as a frozen feature extractor, BatchNorm folded into convs.

The ImageNet checkpoint's BatchNorm layers are folded into the convolutions at conversion
(`serl.networks.pretrained`), so every layer here is a convolution with a bias. Padding is
torchvision's: symmetric (k - 1) // 2, not "SAME" (which pads a stride-2 layer on one side only).
Parameter names follow torchvision's `features[i]`: `stem` (features.0), `block{i}` with
`expand` (absent in block1), `depthwise`, `project` (features.1-17). The network stops at an
output stride: 16 gives [H/16, W/16, 96] (8x8x96 at 128x128), 32 gives [H/32, W/32, 320].
"""

from __future__ import annotations

import flax.linen as nn
import jax

from serl.networks.conv import depthwise_conv

# (expansion, output channels, stride) of torchvision's features[1..17]
MOBILENET_V2_BLOCKS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)  # fmt: skip
OUTPUT_STRIDES = (8, 16, 32)


def _conv(features: int, kernel: int, stride: int, groups: int, name: str) -> nn.Conv:
    pad = (kernel - 1) // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        (stride, stride),
        padding=((pad, pad), (pad, pad)),
        feature_group_count=groups,
        conv_general_dilated=depthwise_conv if groups > 1 else None,
        name=name,
    )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1, linear); residual when shapes allow."""

    expansion: int
    features: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        hidden = channels * self.expansion
        y = x
        if self.expansion != 1:
            y = nn.relu6(_conv(hidden, 1, 1, 1, "expand")(y))
        y = nn.relu6(_conv(hidden, 3, self.stride, hidden, "depthwise")(y))
        y = _conv(self.features, 1, 1, 1, "project")(y)
        return x + y if self.stride == 1 and channels == self.features else y


class MobileNetV2(nn.Module):
    """ImageNet-normalised float images [B, H, W, 3] -> the feature map at `output_stride`."""

    output_stride: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"MobileNetV2 output_stride must be one of {OUTPUT_STRIDES}")
        x = nn.relu6(_conv(32, 3, 2, 1, "stem")(x))
        stride = 2
        for i, (expansion, features, s) in enumerate(MOBILENET_V2_BLOCKS, start=1):
            if stride * s > self.output_stride:
                break
            x = InvertedResidual(expansion, features, s, name=f"block{i}")(x)
            stride *= s
        return x
