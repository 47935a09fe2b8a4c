"""PyTorch reference definition of the RetinaFace MobileNet-0.25 face detector.

Written from /work/shared/spec/detection.md (section "Network"); only the facts carry over, the
code is our own. The state_dict keys and shapes equal those of
../shared/data/retinaface-mobilenet0.25.pth (and weights/retinaface-mobilenet0.25.pth), so that
file loads with strict=True:

    model = RetinaFace()
    model.load_state_dict(torch.load(path, map_location="cpu"), strict=True)

forward(x) with x [N, 3, H, W] (BGR pixel values minus (104, 117, 123)) returns
    boxes     [N, A, 4]   raw box regressions (decode with `priors` and `decode_boxes`)
    scores    [N, A, 2]   softmax over the two values; index 1 = face
    landmarks [N, A, 10]  raw landmark regressions (decode with `decode_landmarks`)
A = 2 * sum over the three levels of (rows * cols) of that level's feature map; levels in order
1 (stride 8), 2 (16), 3 (32), each read in (row, col, anchor) order.

`forward_with_stages(x)` also returns the intermediate activations (body.stage1..3, fpn.P1..P3,
ssh1..3). `priors`, `decode_boxes`, `decode_landmarks` and `nms` follow the spec's
"Pre- and post-processing" section.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["RetinaFace", "load_weights", "WEIGHTS_SHA256", "priors", "decode_boxes", "decode_landmarks", "nms", "detect",
           "feature_sizes", "MEAN_BGR", "STAGE_NAMES"]

MEAN_BGR = (104.0, 117.0, 123.0)
# sha256 of weights/retinaface-mobilenet0.25.pth (= ../shared/data/retinaface-mobilenet0.25.pth).
WEIGHTS_SHA256 = "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220"
LEAKY = 0.1
BN_EPS = 1e-5
STAGE_NAMES = ["body.stage1", "body.stage2", "body.stage3", "fpn.P1", "fpn.P2", "fpn.P3",
               "ssh1", "ssh2", "ssh3"]
# (step, anchor sizes) per level, in head order.
LEVELS = ((8, (16, 32)), (16, (64, 128)), (32, (256, 512)))


# ---------------------------------------------------------------------------------------------
# Building blocks. Keys: a conv+BN(+act) unit is an nn.Sequential, so its conv is `.0` and its
# BN `.1`; a DW unit is one nn.Sequential of six modules: `.0/.1` depthwise conv/BN, `.2` act,
# `.3/.4` pointwise conv/BN, `.5` act.
# ---------------------------------------------------------------------------------------------

def cb(cin: int, cout: int, k: int, s: int = 1, groups: int = 1) -> nn.Sequential:
    """CB: conv k x k (padding k // 2, no bias) + BN, no activation."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout, eps=BN_EPS))


def cbl(cin: int, cout: int, k: int, s: int = 1, leaky: float = LEAKY, groups: int = 1) -> nn.Sequential:
    """CBL: CB + LeakyReLU(leaky)."""
    seq = cb(cin, cout, k, s, groups)
    seq.append(nn.LeakyReLU(negative_slope=leaky))
    return seq


def dw(cin: int, cout: int, s: int) -> nn.Sequential:
    """DW(cin, cout, s): 3x3 depthwise CBL with stride s, then 1x1 pointwise CBL."""
    return nn.Sequential(*cbl(cin, cin, 3, s, LEAKY, groups=cin), *cbl(cin, cout, 1, 1, LEAKY))


class Body(nn.Module):
    """MobileNet-0.25 body: stage1 -> C1 (64, stride 8), stage2 -> C2 (128, 16), stage3 -> C3 (256, 32)."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(cbl(3, 8, 3, 2), dw(8, 16, 1), dw(16, 32, 2), dw(32, 32, 1),
                                    dw(32, 64, 2), dw(64, 64, 1))
        self.stage2 = nn.Sequential(dw(64, 128, 2), *[dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(dw(128, 256, 2), dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return c1, c2, c3


class FPN(nn.Module):
    """P3 = output3(C3); P2 = merge2(output2(C2) + up(P3)); P1 = merge1(output1(C1) + up(P2)),
    `up` = nearest resize to the finer map's size (src = floor(dst * in / out))."""

    def __init__(self, cins: Sequence[int] = (64, 128, 256), cout: int = 64):
        super().__init__()
        self.output1 = cbl(cins[0], cout, 1)
        self.output2 = cbl(cins[1], cout, 1)
        self.output3 = cbl(cins[2], cout, 1)
        self.merge1 = cbl(cout, cout, 3)
        self.merge2 = cbl(cout, cout, 3)

    def forward(self, c1, c2, c3):
        o1, o2, o3 = self.output1(c1), self.output2(c2), self.output3(c3)
        p3 = o3
        p2 = self.merge2(o2 + F.interpolate(p3, size=o2.shape[2:], mode="nearest"))
        p1 = self.merge1(o1 + F.interpolate(p2, size=o1.shape[2:], mode="nearest"))
        return p1, p2, p3


class SSH(nn.Module):
    """a = CB(64,32,3); t = CBL(64,16,3); b = CB(16,16,3)(t); c = CB(16,16,3)(CBL(16,16,3)(t));
    out = ReLU(concat[a, b, c])."""

    def __init__(self, cin: int = 64, cout: int = 64):
        super().__init__()
        self.conv3X3 = cb(cin, cout // 2, 3)
        self.conv5X5_1 = cbl(cin, cout // 4, 3)
        self.conv5X5_2 = cb(cout // 4, cout // 4, 3)
        self.conv7X7_2 = cbl(cout // 4, cout // 4, 3)
        self.conv7x7_3 = cb(cout // 4, cout // 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv3X3(x)
        t = self.conv5X5_1(x)
        b = self.conv5X5_2(t)
        c = self.conv7x7_3(self.conv7X7_2(t))
        return F.relu(torch.cat([a, b, c], dim=1))


class Head(nn.Module):
    """1x1 conv with bias, 2 anchors x k values per cell; output permuted to (N, H, W, C) and
    read as (N, H*W*2, k)."""

    def __init__(self, cin: int, k: int, anchors: int = 2):
        super().__init__()
        self.k = k
        self.conv1x1 = nn.Conv2d(cin, anchors * k, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return y.reshape(y.shape[0], -1, self.k)


class RetinaFace(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Body()
        self.fpn = FPN()
        self.ssh1 = SSH()
        self.ssh2 = SSH()
        self.ssh3 = SSH()
        self.ClassHead = nn.ModuleList(Head(64, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(64, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(64, 10) for _ in range(3))

    def forward_with_stages(self, x: torch.Tensor):
        c1, c2, c3 = self.body(x)
        p1, p2, p3 = self.fpn(c1, c2, c3)
        feats = [self.ssh1(p1), self.ssh2(p2), self.ssh3(p3)]
        boxes = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        landmarks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        stages = OrderedDict(zip(STAGE_NAMES, [c1, c2, c3, p1, p2, p3] + feats))
        return (boxes, F.softmax(logits, dim=-1), landmarks), stages

    def forward(self, x: torch.Tensor):
        return self.forward_with_stages(x)[0]


def load_weights(path: Path, sha256: str = WEIGHTS_SHA256) -> "OrderedDict[str, torch.Tensor]":
    """The state_dict in `path`, after checking the file's sha256 (SystemExit naming both digests
    when it differs); 300 tensors, for `RetinaFace().load_state_dict(..., strict=True)`."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{path}: sha256 {digest}, expected {sha256}")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert len(sd) == 300, len(sd)
    return sd


# ---------------------------------------------------------------------------------------------
# Sizes, priors, decoding, NMS
# ---------------------------------------------------------------------------------------------

def _conv_out(n: int, k: int = 3, s: int = 2, p: int = 1) -> int:
    return (n + 2 * p - k) // s + 1


def feature_sizes(h: int, w: int) -> List[Tuple[int, int]]:
    """(rows, cols) of the three levels' maps as the network computes them: five stride-2 3x3
    convs with padding 1, each giving floor((n - 1) / 2) + 1; levels after the 3rd, 4th, 5th."""
    sizes, hh, ww = [], h, w
    for i in range(5):
        hh, ww = _conv_out(hh), _conv_out(ww)
        if i >= 2:
            sizes.append((hh, ww))
    return sizes


def priors(h: int, w: int) -> torch.Tensor:
    """[A, 4] (cx, cy, w, h) in units of the input size, per the spec: rows i < ceil(h / step),
    cols j < ceil(w / step), sizes in order. (ceil(n / step) equals the network's map size for
    every n; `detect` asserts it.)"""
    out = []
    for step, sizes in LEVELS:
        for i in range(math.ceil(h / step)):
            for j in range(math.ceil(w / step)):
                for s in sizes:
                    out.append(((j + 0.5) * step / w, (i + 0.5) * step / h, s / w, s / h))
    return torch.tensor(out, dtype=torch.float64)


def decode_boxes(d: torch.Tensor, pr: torch.Tensor, var=(0.1, 0.2)) -> torch.Tensor:
    """[A, 4] regressions -> [A, 4] (x1, y1, x2, y2) in units of the input size."""
    c = pr[:, :2] + d[:, :2] * var[0] * pr[:, 2:]
    wh = pr[:, 2:] * torch.exp(d[:, 2:] * var[1])
    return torch.cat([c - wh / 2, c + wh / 2], dim=1)


def decode_landmarks(l: torch.Tensor, pr: torch.Tensor, var=(0.1, 0.2)) -> torch.Tensor:
    """[A, 10] regressions -> [A, 10] (x, y) x 5 in units of the input size."""
    return torch.cat([pr[:, :2] + l[:, 2 * k:2 * k + 2] * var[0] * pr[:, 2:] for k in range(5)], dim=1)


def nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> List[int]:
    """Greedy NMS, areas (x2 - x1 + 1) * (y2 - y1 + 1); indices of the kept boxes, best first."""
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            iw = max(0.0, float(min(x2[i], x2[j]) - max(x1[i], x1[j]) + 1))
            ih = max(0.0, float(min(y2[i], y2[j]) - max(y1[i], y1[j]) + 1))
            inter = iw * ih
            if inter / float(area[i] + area[j] - inter) <= thresh:
                rest.append(j)
        order = rest
    return keep


def detect(boxes: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor, h: int, w: int,
           resize: float = 1.0, threshold: float = 0.6, nms_iou: float = 0.35) -> List[Dict]:
    """One image's outputs ([A, 4], [A, 2], [A, 10]) -> faces in input-image pixels / resize."""
    assert [(math.ceil(h / s), math.ceil(w / s)) for s, _ in LEVELS] == feature_sizes(h, w)
    pr = priors(h, w)
    assert pr.shape[0] == boxes.shape[0], (pr.shape, boxes.shape)
    b = decode_boxes(boxes.double(), pr) * torch.tensor([w, h, w, h], dtype=torch.float64) / resize
    lm = decode_landmarks(landmarks.double(), pr) * torch.tensor([w, h] * 5, dtype=torch.float64) / resize
    s = scores[:, 1].double()
    idx = torch.nonzero(s > threshold).flatten()
    keep = nms(b[idx], s[idx], nms_iou)
    return [{"score": float(s[idx[k]]), "box": b[idx[k]].tolist(), "landmarks": lm[idx[k]].tolist()}
            for k in keep]
