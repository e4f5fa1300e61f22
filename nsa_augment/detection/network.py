"""The NSA paper's localisation network in plain PyTorch (no torchvision).

ResNet-18 encoder trained from scratch, 1x1 bottleneck (512 -> 256 -> 128),
decoder of three transposed residual stages (128 -> 64 -> 32 -> 16, each x2),
bilinear x2, a 7x7 stride-2 transposed convolution to one channel.  The
forward pass returns *logits* at the input's resolution (train with
``BCEWithLogitsLoss``, which is BCE on the sigmoid, numerically stable);
:meth:`NSANet.predict` applies the sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions), optionally downsampling by 2."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class TransposedBlock(nn.Module):
    """Transposed residual block: upsamples by 2 with a 3x3 transposed convolution, 1x1 transposed shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.ConvTranspose2d(cin, cout, 1, 2, output_padding=1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class NSANet(nn.Module):
    """Encoder-decoder anomaly localisation network (about 11.5 M parameters).

    Input (N, 3, H, W) with H, W multiples of 32; output logits (N, 1, H, W).

    Examples
    --------
    >>> import torch
    >>> net = NSANet()
    >>> net(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 1, 64, 64])
    """

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        self.encoder = nn.Sequential(
            BasicBlock(64, 64), BasicBlock(64, 64),
            BasicBlock(64, 128, 2), BasicBlock(128, 128),
            BasicBlock(128, 256, 2), BasicBlock(256, 256),
            BasicBlock(256, 512, 2), BasicBlock(512, 512),
        )
        self.bottleneck = nn.Sequential(nn.Conv2d(512, 256, 1), nn.ReLU(inplace=True), nn.Conv2d(256, 128, 1), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(TransposedBlock(128, 64), TransposedBlock(64, 32), TransposedBlock(32, 16))
        self.head = nn.ConvTranspose2d(16, 1, 7, 2, 3, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        z = self.bottleneck(self.encoder(self.stem(x)))
        z = F.interpolate(self.decoder(z), scale_factor=2, mode="bilinear", align_corners=False)
        out = self.head(z)
        if out.shape[-2:] != size:  # inputs that are not multiples of 32
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly maps in [0, 1], (N, H, W)."""
        return torch.sigmoid(self(x))[:, 0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
