"""PyTorch CPU reference figures for `npm run bench`: training and eval images/s of VGG11-BN and ResNet18
(the same architectures as src/nn) on random CIFAR-sized inputs. Prints one JSON object.
The timed work matches bench/models.ts: inputs made once, one warm-up step, then `steps` steps."""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(os.cpu_count() or 1)


def vgg11_bn():
    layers, c = [], 3
    for v in [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M']:
        if v == 'M':
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c = v
    layers.append(nn.AvgPool2d(1, 1))

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Linear(512, 10)

        def forward(self, x):
            return self.classifier(self.features(x).flatten(1))
    return VGG()


class Block(nn.Module):
    def __init__(self, i, o, s):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(i, o, 3, s, 1), nn.BatchNorm2d(o)
        self.conv2, self.bn2 = nn.Conv2d(o, o, 3, 1, 1), nn.BatchNorm2d(o)
        self.shortcut = nn.Sequential(nn.Conv2d(i, o, 1, s), nn.BatchNorm2d(o)) if s != 1 or i != o else nn.Sequential()

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 3, 1, 1), nn.BatchNorm2d(64)
        blocks, i = [], 64
        for o, s in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks.append(nn.Sequential(Block(i, o, s), Block(o, o, 1)))
            i = o
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(512, 10)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.avg_pool2d(out, 4).flatten(1))


def measure(model, train_batch, eval_batch, steps):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = torch.randn(train_batch, 3, 32, 32), torch.randint(0, 10, (train_batch,))
    model.train()
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    train_ips = train_batch * steps / (time.perf_counter() - t0)
    model.eval()
    xe = torch.randn(eval_batch, 3, 32, 32)
    with torch.no_grad():
        model(xe)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(xe)
    eval_ips = eval_batch * steps / (time.perf_counter() - t0)
    return {'train_images_per_s': train_ips, 'eval_images_per_s': eval_ips}


if __name__ == '__main__':
    train_batch, eval_batch, steps = (int(a) for a in sys.argv[1:4])
    out = {'torch': torch.__version__, 'threads': torch.get_num_threads()}
    for name, make in [('vgg11_bn', vgg11_bn), ('resnet18', ResNet18)]:
        torch.manual_seed(0)
        out[name] = measure(make(), train_batch, eval_batch, steps)
    print(json.dumps(out))
