# Parameter count of torchvision's resnet18 (ImageNet stem, 10 classes) with every channel width halved:
# what Torch-Pruning leaves at 0.5 whole-network sparsity (test/prune-options.test.ts pins 2,801,450).
# Run: /usr/bin/python3 scripts/resnet18-half-params.py
import torch.nn as nn
from torchvision.models.resnet import BasicBlock


class HalfResNet18(nn.Module):
    def __init__(self, widths=(32, 64, 128, 256), classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, inp = [], widths[0]
        for i, c in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = nn.Sequential(nn.Conv2d(inp, c, 1, stride, bias=False), nn.BatchNorm2d(c)) if stride != 1 or inp != c else None
            layers.append(nn.Sequential(BasicBlock(inp, c, stride, down), BasicBlock(c, c)))
            inp = c
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(inp, classes)


print(sum(p.numel() for p in HalfResNet18().parameters()))
