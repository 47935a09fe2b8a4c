"""PyTorch reference definitions of the LFNSB model family.

Written from /work/shared/spec/models.md (the facts gathered from the LFNSB paper and the
authors' and DDAMFN's published code). The state_dict keys, shapes and dtypes match the
listings in /work/shared/spec/keys/ exactly, so checkpoints trained with the authors'
scripts load into these classes with strict=True. Only the facts carry over; this code is
our own.

Models:
    LFNSB2(num_class)          LFN backbone + Spatial Bias head; forward -> (logits, featuremap)
    LFN()                      LFN backbone + 256-d embedding head; forward -> embedding (L2-normalised)
    MixedFeatureNet() / MFN    MFN backbone + 512-d embedding head; forward -> embedding (L2-normalised)
    DDAMNet(num_class, num_head) MFN backbone (as `features`) + attention heads;
                               forward -> (logits, featuremap, [head_0, ..., head_{n-1}])

Architecture variants (for loader tests; the defaults are the published models):
    LFNSB2 / LFN: `ca_reduction` (backbone coordinate attention hidden width max(8, G // ca_reduction),
    default 32) and `blocks` (residual blocks in stages 3, 5, 7, default (9, 16, 6)).
    DDAMNet: `head_groups` (head attention hidden width max(8, 512 // head_groups), default 32).
    These arguments are not stored on the modules, so pickles of default models are unchanged.

`capture(model, names)` records the outputs of named submodules (forward hooks) during a
forward pass; `STAGES[...]` lists, per model kind, the submodules whose outputs are the
stages we export as fixtures.

Unlike the authors' code, batch size 1 works: the Spatial Bias head squeezes only the
singleton axis.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Dict, Iterator, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "Conv2dBN", "ConvBlock", "LinearBlock", "MixedDepthwiseConv", "CoordAtt", "MixBlock",
    "MixResidual", "RepVGGDW", "SpatialBias", "LFNSB2", "LFN", "MixedFeatureNet", "MFN",
    "CoordAttHead", "HeadCoordAtt", "DDAMNet", "capture", "stage_names", "l2_normalize",
    "LFN_STAGE_NAMES", "MFN_STAGE_NAMES", "LFN_BLOCKS",
]


# ---------------------------------------------------------------------------------------------
# Small building blocks
# ---------------------------------------------------------------------------------------------

class HSwish(nn.Module):
    """h_swish(v) = v * min(max(v + 3, 0), 6) / 6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3.0) / 6.0


class Conv2dBN(nn.Module):
    """conv (no bias) + BatchNorm2d, no activation. Keys: `c.weight`, `bn.*` (LFN stages 0, 1)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.c(x))


class ConvBlock(nn.Module):
    """conv (no bias) + BatchNorm2d + PReLU (one slope per channel). Keys: `conv`, `bn`, `prelu`."""

    def __init__(self, cin: int, cout: int, kernel=1, stride=1, padding=0, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """conv (no bias) + BatchNorm2d, no activation. Keys: `conv`, `bn`."""

    def __init__(self, cin: int, cout: int, kernel=1, stride=1, padding=0, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class MixedDepthwiseConv(nn.Module):
    """Channels split in order into groups; group i is a depthwise conv with kernel k_i,
    padding k_i // 2 and the block's stride; results concatenated in the same order.

    With `with_bn_prelu` (MFN) the module also owns `bn` and `prelu`, which MFN's forward
    never applies: they only exist so that the checkpoint keys line up.
    """

    def __init__(self, channels: int, kernels: Sequence[int], splits: Sequence[int], stride: int,
                 with_bn_prelu: bool = False):
        super().__init__()
        if sum(splits) != channels or len(kernels) != len(splits):
            raise ValueError(f"bad split {splits} / kernels {kernels} for {channels} channels")
        self.splits = list(splits)
        self.mixed_depthwise_conv = nn.ModuleList(
            nn.Conv2d(s, s, k, stride, k // 2, groups=s, bias=False) for k, s in zip(kernels, splits)
        )
        if with_bn_prelu:
            self.bn = nn.BatchNorm2d(channels)   # unused by forward (as in MFN)
            self.prelu = nn.PReLU(channels)      # unused by forward (as in MFN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.splits, dim=1)
        return torch.cat([conv(p) for conv, p in zip(self.mixed_depthwise_conv, parts)], dim=1)


class CoordAtt(nn.Module):
    """Coordinate attention of the backbone blocks; out = in * s_w * s_h.
    mip = max(8, G // reduction); the published models use reduction 32."""

    def __init__(self, channels: int, reduction: int = 32):
        super().__init__()
        mip = max(8, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mip, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = HSwish()
        self.conv2 = nn.Conv2d(mip, channels, 1, bias=True)
        self.conv3 = nn.Conv2d(mip, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        a = x.mean(dim=3, keepdim=True)                      # [N, C, H, 1]: mean over x
        b = x.mean(dim=2, keepdim=True).transpose(2, 3)      # [N, C, W, 1]: mean over y
        y = self.act(self.bn1(self.conv1(torch.cat([a, b], dim=2))))
        yh, yw = torch.split(y, [h, w], dim=2)
        s_h = torch.sigmoid(self.conv2(yh))                  # [N, C, H, 1]
        s_w = torch.sigmoid(self.conv3(yw)).transpose(2, 3)  # [N, C, 1, W]
        return x * s_w * s_h


class MixBlock(nn.Module):
    """The authors' Mix_Depth_Wise: 1x1 ConvBlock -> mixed depthwise conv -> CoordAtt ->
    1x1 LinearBlock (`project`); residual blocks add the input."""

    def __init__(self, cin: int, cout: int, width: int, kernels: Sequence[int],
                 splits: Sequence[int], stride: int = 1, residual: bool = False,
                 mfn: bool = False, ca_reduction: int = 32):
        super().__init__()
        self.residual = residual
        self.conv = ConvBlock(cin, width, 1)
        self.conv_dw = MixedDepthwiseConv(width, kernels, splits, stride, with_bn_prelu=mfn)
        self.CA = CoordAtt(width, ca_reduction)
        self.project = LinearBlock(width, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.CA(self.conv_dw(self.conv(x))))
        return x + y if self.residual else y


class MixResidual(nn.Module):
    """`num_block` residual MixBlocks in `self.model` (keys `model.J.*`)."""

    def __init__(self, channels: int, num_block: int, width: int, kernels: Sequence[int],
                 splits: Sequence[int], mfn: bool = False, ca_reduction: int = 32):
        super().__init__()
        self.model = nn.Sequential(*[
            MixBlock(channels, channels, width, kernels, splits, 1, residual=True, mfn=mfn,
                     ca_reduction=ca_reduction)
            for _ in range(num_block)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RepVGGDW(nn.Module):
    """out = bn( conv(x) + conv1(x) + x ), conv = 3x3 depthwise Conv2dBN, conv1 = 1x1 depthwise
    conv with bias, bn = outer BatchNorm2d. Never fused here (checkpoints hold it unfused)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2dBN(channels, channels, 3, 1, 1, groups=channels)
        self.conv1 = nn.Conv2d(channels, channels, 1, 1, 0, groups=channels, bias=True)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def fused(self) -> nn.Conv2d:
        """The equivalent single 3x3 depthwise conv with bias (for reference / debugging)."""
        c = self.conv1.out_channels
        inner = self.conv.bn
        s1 = inner.weight / torch.sqrt(inner.running_var + inner.eps)
        w = self.conv.c.weight * s1.view(-1, 1, 1, 1)
        b = inner.bias - inner.running_mean * s1
        w = w.clone()
        w[:, 0, 1, 1] += self.conv1.weight[:, 0, 0, 0] + 1.0
        b = b + self.conv1.bias
        s2 = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        out = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=True)
        out.weight.copy_(w * s2.view(-1, 1, 1, 1))
        out.bias.copy_(self.bn.bias + (b - self.bn.running_mean) * s2)
        return out


# ---------------------------------------------------------------------------------------------
# Backbones
# ---------------------------------------------------------------------------------------------

LFN_STAGE_NAMES = ["conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45",
                   "conv_5", "conv6_sep"]
MFN_STAGE_NAMES = ["conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45",
                   "conv_5", "conv_6_sep"]


LFN_BLOCKS = (9, 16, 6)   # residual blocks in stages 3, 5, 7


def _lfn_stages(ca_reduction: int = 32, blocks: Sequence[int] = LFN_BLOCKS) -> List[nn.Module]:
    """LFN backbone stages 0-8 (input 3x112x112 -> 256x7x7). The arguments only exist for
    architecture variants; the published model is the default."""
    r = ca_reduction
    b3, b5, b7 = blocks
    return [
        Conv2dBN(3, 64, 3, 2, 1),                                                   # 0: 112 -> 56
        Conv2dBN(64, 64, 3, 1, 1, groups=64),                                       # 1
        MixBlock(64, 64, 96, [3, 5], [64, 32], stride=2, ca_reduction=r),           # 2: 56 -> 28
        MixResidual(64, b3, 96, [3], [96], ca_reduction=r),                         # 3
        MixBlock(64, 128, 192, [3, 5], [128, 64], stride=2, ca_reduction=r),        # 4: 28 -> 14
        MixResidual(128, b5, 192, [3], [192], ca_reduction=r),                      # 5
        MixBlock(128, 256, 768, [3, 5, 7], [256, 256, 256], stride=2, ca_reduction=r),  # 6: 14 -> 7
        MixResidual(256, b7, 342, [3, 5], [172, 170], ca_reduction=r),              # 7
        RepVGGDW(256),                                                              # 8
    ]


def _mfn_stages() -> List[nn.Module]:
    """MixedFeatureNet backbone stages 0-8 (input 3x112x112 -> 512x7x7)."""
    return [
        ConvBlock(3, 64, 3, 2, 1),                                                     # 0
        ConvBlock(64, 64, 3, 1, 1, groups=64),                                         # 1
        MixBlock(64, 64, 128, [3, 5, 7], [64, 32, 32], stride=2, mfn=True),            # 2
        MixResidual(64, 9, 128, [3, 5], [96, 32], mfn=True),                           # 3
        MixBlock(64, 128, 256, [3, 5, 7], [128, 64, 64], stride=2, mfn=True),          # 4
        MixResidual(128, 16, 256, [3, 5], [192, 64], mfn=True),                        # 5
        MixBlock(128, 256, 1024, [3, 5, 7, 9], [256] * 4, stride=2, mfn=True),         # 6
        MixResidual(256, 6, 512, [3, 5, 7], [172, 170, 170], mfn=True),                # 7
        ConvBlock(256, 512, 1),                                                        # 8
    ]


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Divide each row by its 2-norm."""
    return x / torch.norm(x, p=2, dim=1, keepdim=True)


class SpatialBias(nn.Module):
    """Spatial Bias head as the authors' code computes it (models.md section 1, steps 1-4)."""

    def __init__(self, channels: int = 256, reduced: int = 66):
        super().__init__()
        self.feature_reduction = nn.Sequential(
            nn.Conv2d(channels, reduced, 1, bias=False),
            nn.BatchNorm2d(reduced),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.sb_conv = nn.Conv1d(4, 4, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.feature_reduction(x)                 # [N, 66, 7, 7]
        p = self.pool(r)                              # [N, 66, 2, 2]
        n, c = p.shape[0], p.shape[1]
        p = p.reshape(n, c, 4).transpose(1, 2)        # [N, 4 (p = 2y + x), 66 (c)]
        q = self.sb_conv(p)                           # [N, 4 (o), 64 (t)]
        return q.transpose(1, 2).reshape(n, -1)       # v[4t + o] = Q[o][t]  -> [N, 256]


class LFNSB2(nn.Module):
    """LFNSB classifier: LFN backbone (`features.0`-`features.8`) -> Spatial Bias -> fc.
    Forward returns (logits, featuremap). `bn` is kept for the checkpoint but not used.
    `ca_reduction` and `blocks` describe architecture variants (see `_lfn_stages`)."""

    def __init__(self, num_class: int = 7, ca_reduction: int = 32,
                 blocks: Sequence[int] = LFN_BLOCKS):
        super().__init__()
        self.features = nn.Sequential(*_lfn_stages(ca_reduction, blocks))
        self.sb = SpatialBias(256, 66)
        self.fc = nn.Linear(256, num_class)
        self.bn = nn.BatchNorm1d(num_class)   # unused by forward

    def forward(self, x: torch.Tensor):
        fm = self.features(x)
        v = self.sb(fm)
        return self.fc(v), fm


class LFN(nn.Module):
    """LFN embedding network (stages with attribute names, 256-d L2-normalised embedding).
    `ca_reduction` and `blocks` describe architecture variants (see `_lfn_stages`)."""

    def __init__(self, embedding_size: int = 256, ca_reduction: int = 32,
                 blocks: Sequence[int] = LFN_BLOCKS):
        super().__init__()
        for name, stage in zip(LFN_STAGE_NAMES, _lfn_stages(ca_reduction, blocks)):
            self.add_module(name, stage)
        self.conv_6_dw = LinearBlock(256, 256, 7, 1, 0, groups=256)
        self.linear = nn.Linear(256, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        for name in LFN_STAGE_NAMES:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fm = self.backbone(x)
        return l2_normalize(self.bn(self.linear(torch.flatten(self.conv_6_dw(fm), 1))))


class MixedFeatureNet(nn.Module):
    """MFN embedding network (DDAMFN's MixedFeatureNet), 512-d L2-normalised embedding.
    Its first nine children are exactly DDAMNet's `features.0`-`features.8`."""

    def __init__(self, embedding_size: int = 512):
        super().__init__()
        for name, stage in zip(MFN_STAGE_NAMES, _mfn_stages()):
            self.add_module(name, stage)
        self.conv_6_dw = LinearBlock(512, 512, 7, 1, 0, groups=512)
        self.linear = nn.Linear(512, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        for name in MFN_STAGE_NAMES:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fm = self.backbone(x)
        return l2_normalize(self.bn(self.linear(torch.flatten(self.conv_6_dw(fm), 1))))


MFN = MixedFeatureNet


# ---------------------------------------------------------------------------------------------
# DDAMNet
# ---------------------------------------------------------------------------------------------

class HeadCoordAtt(nn.Module):
    """DDAMNet attention head's coordinate attention on the 512x7x7 map; returns
    head[c][y][x] = s_w[c][x] * s_h[c][y] (not multiplied by the input)."""

    def __init__(self, channels: int = 512, size: int = 7, groups: int = 32):
        super().__init__()
        mip = max(8, channels // groups)
        self.Linear_h = LinearBlock(channels, channels, (1, size), 1, 0, groups=channels)
        self.Linear_w = LinearBlock(channels, channels, (size, 1), 1, 0, groups=channels)
        self.conv1 = nn.Conv2d(channels, mip, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(mip)
        self.conv2 = nn.Conv2d(mip, channels, 1, bias=True)
        self.conv3 = nn.Conv2d(mip, channels, 1, bias=True)
        self.Linear = LinearBlock(channels, channels, (size, size), 1, 0, groups=channels)  # unused
        self.act = HSwish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xh = self.Linear_h(x)                          # [N, C, H, 1]
        xw = self.Linear_w(x).transpose(2, 3)          # [N, C, 1, W] -> [N, C, W, 1]
        h, w = xh.shape[2], xw.shape[2]
        y = self.act(self.bn1(self.conv1(torch.cat([xh, xw], dim=2))))
        yh, yw = torch.split(y, [h, w], dim=2)
        s_h = torch.sigmoid(self.conv2(yh))                  # [N, C, H, 1]
        s_w = torch.sigmoid(self.conv3(yw)).transpose(2, 3)  # [N, C, 1, W]
        return s_w * s_h


class CoordAttHead(nn.Module):
    """One DDAMNet attention head; hidden width max(8, 512 // groups) (32 in the published model)."""

    def __init__(self, groups: int = 32):
        super().__init__()
        self.CoordAtt = HeadCoordAtt(512, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.CoordAtt(x)


class DDAMNet(nn.Module):
    """DDAMFN classifier: MFN backbone as `features`, `num_head` attention heads, 7x7
    depthwise `Linear`, `fc`. Forward returns (logits, featuremap, heads). `bn` unused.
    `head_groups` sets each head's attention hidden width, max(8, 512 // head_groups)."""

    def __init__(self, num_class: int = 7, num_head: int = 2, head_groups: int = 32):
        super().__init__()
        self.num_head = num_head
        self.features = nn.Sequential(*_mfn_stages())
        for i in range(num_head):
            self.add_module(f"cat_head{i}", CoordAttHead(head_groups))
        self.Linear = LinearBlock(512, 512, 7, 1, 0, groups=512)
        self.fc = nn.Linear(512, num_class)
        self.bn = nn.BatchNorm1d(num_class)   # unused by forward

    def forward(self, x: torch.Tensor):
        fm = self.features(x)
        heads = [getattr(self, f"cat_head{i}")(fm) for i in range(self.num_head)]
        y = heads[0]
        for h in heads[1:]:
            y = torch.max(y, h)
        z = self.Linear(fm * y)
        return self.fc(torch.flatten(z, 1)), fm, heads


# ---------------------------------------------------------------------------------------------
# Stage capture
# ---------------------------------------------------------------------------------------------

def stage_names(model: nn.Module) -> List[str]:
    """Submodules whose outputs we export as stages, in execution order."""
    if isinstance(model, LFNSB2):
        return [f"features.{i}" for i in range(9)] + [
            "sb.feature_reduction", "sb.pool", "sb.sb_conv", "sb", "fc"]
    if isinstance(model, LFN):
        return LFN_STAGE_NAMES + ["conv_6_dw", "linear", "bn"]
    if isinstance(model, MixedFeatureNet):
        return MFN_STAGE_NAMES + ["conv_6_dw", "linear", "bn"]
    if isinstance(model, DDAMNet):
        return ([f"features.{i}" for i in range(9)]
                + [f"cat_head{i}" for i in range(model.num_head)] + ["Linear", "fc"])
    raise TypeError(type(model))


@contextlib.contextmanager
def capture(model: nn.Module, names: Sequence[str]) -> Iterator[Dict[str, torch.Tensor]]:
    """Within the context, every forward records `out[name]` = output of submodule `name`
    (detached). Hooks are removed on exit (so the model can be pickled cleanly afterwards)."""
    modules = dict(model.named_modules())
    out: Dict[str, torch.Tensor] = OrderedDict()
    handles = []
    for name in names:
        def hook(_m, _inp, output, name=name):
            out[name] = output.detach().clone()
        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()
