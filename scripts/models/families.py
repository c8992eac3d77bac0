"""
The eleven torchvision CNN families of the acceptance set (issue 15 item 4), full size or as small-width
copies with the same block structure and the same op set.

Shared by generate.py (small fixtures for CI), torch_pruning_groups.py (Torch-Pruning's groups) and
full-size-check.py (the full-size models). Runs on Debian's python3-torch 1.13 / python3-torchvision 0.14.

Small widths: where torchvision has a width knob it is used (mobilenet_v2/v3 width_mult, efficientnet's
config, densenet growth rate, regnet block params); where widths are hard-coded (resnet, resnext, vgg,
squeezenet, googlenet) every channel count is divided by 8 (`shrink`), groups of grouped convs too, so a
grouped conv stays grouped (1 < groups < channels) and a depthwise conv stays depthwise.

The flatten idiom most user code has, `x.view(x.size(0), -1)`, replaces torch.flatten in resnet18 and
resnet50 (`ViewFlatten*`), so the exporter writes its Shape/Gather/Unsqueeze/Concat/Reshape chain.
"""
import math
from functools import partial

import torch
import torch.nn as nn
import torchvision
from torchvision.models import regnet, resnet, vgg

FAMILIES = [
    'resnet18', 'resnet50', 'vgg16_bn', 'mobilenet_v2', 'mobilenet_v3_small', 'efficientnet_b0',
    'densenet121', 'squeezenet1_1', 'googlenet', 'resnext50_32x4d', 'regnet_y_400mf',
]


class ViewFlattenResNet(resnet.ResNet):
    """torchvision's ResNet with the user-code flatten `x.view(x.size(0), -1)` instead of torch.flatten."""

    def _forward_impl(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


def shrink(model: nn.Module, factor: int, keep: set) -> nn.Module:
    """
    Divides every channel count by `factor` (input images keep 3 channels; modules named in `keep` keep
    their outputs: the classifier), replacing Conv2d / BatchNorm2d / Linear in place. Groups are divided
    too, and a depthwise conv stays depthwise. Fresh modules are initialised afterwards by `init_weights`.
    """
    def scale(c):
        if c == 3:
            return 3
        if c % factor:
            raise ValueError(f'{c} channels are not divisible by {factor}')
        return c // factor

    for name, m in list(model.named_modules()):
        parent = model.get_submodule(name.rsplit('.', 1)[0]) if '.' in name else model
        leaf = name.rsplit('.', 1)[-1]
        if isinstance(m, nn.Conv2d):
            cin, cout = scale(m.in_channels), m.out_channels if name in keep else scale(m.out_channels)
            if m.groups == 1:
                groups = 1
            elif m.groups == m.in_channels == m.out_channels:
                groups = cin
            else:
                groups = m.groups // factor
                assert groups > 1 and m.groups % factor == 0, name
            new = nn.Conv2d(cin, cout, m.kernel_size, m.stride, m.padding, m.dilation, groups, m.bias is not None)
        elif isinstance(m, nn.BatchNorm2d):
            new = nn.BatchNorm2d(scale(m.num_features), m.eps, m.momentum)
        elif isinstance(m, nn.Linear):
            new = nn.Linear(scale(m.in_features), m.out_features if name in keep else scale(m.out_features), m.bias is not None)
        else:
            continue
        setattr(parent, leaf, new)
    return model


def init_weights(model: nn.Module) -> None:
    """He-normal convs (fan_out, as torchvision's ResNet), small normal Linears: activations stay of order one."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 1 / math.sqrt(m.in_features))
            nn.init.uniform_(m.bias, -0.1, 0.1)


@torch.no_grad()
def randomise_batch_norms(model: nn.Module, generator: torch.Generator, image_size: int) -> None:
    """
    Running statistics from three training-mode passes on random images (so activations stay of order
    one through 50+ layers), then perturbed, with random affine parameters: no BN is the identity, so
    folding and BN import are exercised.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration passes
    model.train()
    for _ in range(3):
        model(torch.randn(4, 3, image_size, image_size, generator=generator))
    model.eval()
    for bn in bns:
        c = bn.num_features
        u = lambda lo, hi: lo + (hi - lo) * torch.rand(c, generator=generator)
        std = bn.running_var.sqrt()
        bn.running_mean += 0.2 * std * torch.randn(c, generator=generator)
        bn.running_var *= u(0.6, 1.6)
        bn.weight.copy_(u(0.6, 1.4))
        bn.bias.copy_(u(-0.2, 0.2))
        bn.momentum = 0.1


def build(family: str, small: bool, num_classes: int) -> nn.Module:
    """The family's model: torchvision's own (full size) or its small-width copy."""
    # Width divisors where widths are hard-coded: 8, or 16 for the largest (10 MB of fixtures in all).
    if family == 'resnet18':
        m = ViewFlattenResNet(resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        return shrink(m, 8, {'fc'}) if small else m
    if family == 'resnet50':
        m = ViewFlattenResNet(resnet.Bottleneck, [3, 4, 6, 3], num_classes=num_classes)
        return shrink(m, 16, {'fc'}) if small else m
    if family == 'resnext50_32x4d':
        m = torchvision.models.resnext50_32x4d(num_classes=num_classes)
        return shrink(m, 16, {'fc'}) if small else m  # 32 groups of 4 -> 2 groups of 4
    if family == 'vgg16_bn':
        if not small:
            return torchvision.models.vgg16_bn(num_classes=num_classes)
        cfg = [c if c == 'M' else c // 16 for c in vgg.cfgs['D']]
        m = vgg.VGG(vgg.make_layers(cfg, batch_norm=True), num_classes=num_classes)
        # At 64x64 the features are 2x2: AdaptiveAvgPool2d(2) is then the same op the full model runs at
        # 224x224 (7 -> 7, an identity AveragePool); 2 -> 7 would not export (7 is not a factor of 2).
        m.avgpool = nn.AdaptiveAvgPool2d(2)
        width, hidden = cfg[-2], 4096 // 16
        m.classifier = nn.Sequential(
            nn.Linear(width * 4, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, num_classes))
        return m
    if family == 'mobilenet_v2':
        m = torchvision.models.mobilenet_v2(num_classes=num_classes, width_mult=0.25 if small else 1.0)
        if small:  # the last 1x1 conv keeps 1280 outputs at any width_mult: a quarter of it too
            from torchvision.ops.misc import Conv2dNormActivation
            m.features[18] = Conv2dNormActivation(80, 320, kernel_size=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6)
            m.classifier[1] = nn.Linear(320, num_classes)
        return m
    if family == 'mobilenet_v3_small':
        return torchvision.models.mobilenet_v3_small(num_classes=num_classes, width_mult=0.25 if small else 1.0)
    if family == 'efficientnet_b0':
        if not small:
            return torchvision.models.efficientnet_b0(num_classes=num_classes)
        from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
        setting, last = _efficientnet_conf('efficientnet_b0', width_mult=0.125, depth_mult=1.0)
        return EfficientNet(setting, 0.2, num_classes=num_classes, last_channel=last)
    if family == 'densenet121':
        if not small:
            return torchvision.models.densenet121(num_classes=num_classes)
        return torchvision.models.DenseNet(growth_rate=4, block_config=(6, 12, 24, 16), num_init_features=8, bn_size=4, num_classes=num_classes)
    if family == 'squeezenet1_1':
        m = torchvision.models.squeezenet1_1(num_classes=num_classes)
        return shrink(m, 8, {'classifier.1'}) if small else m
    if family == 'googlenet':
        m = torchvision.models.googlenet(num_classes=num_classes, aux_logits=False, init_weights=False)
        return shrink(m, 8, {'fc'}) if small else m
    if family == 'regnet_y_400mf':
        if not small:
            return torchvision.models.regnet_y_400mf(num_classes=num_classes)
        # regnet_y_400mf is depth 16, w_0 48, w_a 27.89, w_m 2.09, group width 8, SE 0.25: the same
        # stage structure (1, 3, 6, 6 blocks) at about a sixth of the width, group width 4.
        params = regnet.BlockParams.from_init_params(depth=16, w_0=8, w_a=4.6, w_m=2.09, group_width=4, se_ratio=0.25)
        return regnet.RegNet(params, num_classes=num_classes, stem_width=8, norm_layer=partial(nn.BatchNorm2d, eps=1e-5, momentum=0.1))
    raise ValueError(family)


def make(family: str, small: bool, seed: int, num_classes: int, image_size: int) -> nn.Module:
    """A seeded, eval-mode model with random weights and random (non-identity) batch-norms."""
    torch.manual_seed(seed)
    model = build(family, small, num_classes)
    init_weights(model)
    if family == 'vgg16_bn':
        # torchvision's VGG initialises biases to zero; the exporter then writes the identical ones once
        # and the copies as Identity nodes (what a user exporting VGG with BN kept gets).
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.zeros_(m.bias)
    randomise_batch_norms(model, torch.Generator().manual_seed(seed + 1), image_size)
    return model.eval()


def mulberry32(seed: int, count: int) -> torch.Tensor:
    """The same seeded numbers in [0, 1) as seededRandom in src/nn/init.ts (Mulberry32), as float64."""
    out = [0.0] * count
    a = seed & 0xFFFFFFFF
    m = 0xFFFFFFFF
    for i in range(count):
        a = (a + 0x6D2B79F5) & m
        t = a
        t = ((t ^ (t >> 15)) * (t | 1)) & m
        t = (t ^ (t + (((t ^ (t >> 7)) * (t | 61)) & m))) & m
        out[i] = ((t ^ (t >> 14)) & m) / 4294967296
    return torch.tensor(out, dtype=torch.float64)


def reference_input(seed: int, shape) -> torch.Tensor:
    """Images in [-1, 1): 2 * seededRandom(seed)() - 1, in order, as float32 (what the tests regenerate)."""
    return (2 * mulberry32(seed, math.prod(shape)) - 1).float().reshape(shape)
