"""Parameter and multiply-accumulate counts of the reference models, as fvcore and thop report
them, written to Tests/Fixtures/complexity.json for the Swift `flops` report to be checked against.

The authors' coordinate attention pools with nn.AdaptiveAvgPool2d((None, 1)) / ((1, None)) modules,
which both counters see; the reference models compute the same means with Tensor.mean, which they
do not. For counting only, CoordAtt's forward is swapped for one that pools through such modules,
so the figures are those of the authors' graph (models.md section 4).

    .venv-reference/bin/pip install -r tools/reference/requirements-complexity.txt
    .venv-reference/bin/python tools/reference/count_complexity.py
"""
import collections
import json
import logging
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fer_models as fm  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def authors_pooling_forward(self, x):
    h, w = x.shape[2], x.shape[3]
    a = self.pool_h(x)
    b = self.pool_w(x).transpose(2, 3)
    y = self.act(self.bn1(self.conv1(torch.cat([a, b], dim=2))))
    yh, yw = torch.split(y, [h, w], dim=2)
    return x * torch.sigmoid(self.conv3(yw)).transpose(2, 3) * torch.sigmoid(self.conv2(yh))


def thop_by_type(model, x):
    from thop import profile
    per_type = collections.Counter()

    def walk(info, module):
        for name, (ops, _params, sub) in info.items():
            child = module.get_submodule(name)
            if sub:
                walk(sub, child)
            else:
                per_type[type(child).__name__] += int(ops)

    total, params, info = profile(model, inputs=(x,), verbose=False, ret_layer_info=True)
    walk(info, model)
    return int(total), per_type


def main():
    from fvcore.nn import FlopCountAnalysis
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    fm.CoordAtt.forward = authors_pooling_forward
    models = collections.OrderedDict([
        ("lfnsb7", fm.LFNSB2(7)), ("lfnsb8", fm.LFNSB2(8)), ("lfn", fm.LFN()), ("mfn", fm.MixedFeatureNet()),
        ("ddamnet7-2heads", fm.DDAMNet(7, 2)), ("ddamnet8-1head", fm.DDAMNet(8, 1)),
    ])
    out = collections.OrderedDict()
    for model in models.values():
        for module in model.modules():
            if isinstance(module, fm.CoordAtt):   # registered, as in the authors' class
                module.pool_h = nn.AdaptiveAvgPool2d((None, 1))
                module.pool_w = nn.AdaptiveAvgPool2d((1, None))
    for name, model in models.items():
        model.eval()
        x = torch.zeros(1, 3, 112, 112)
        fv = FlopCountAnalysis(model, x)
        fv.unsupported_ops_warnings(False)
        fv.uncalled_modules_warnings(False)
        thop_total, thop_types = thop_by_type(model, x)
        out[name] = collections.OrderedDict(
            parameters=sum(p.numel() for p in model.parameters()),
            fvcore_total=int(fv.total()), fvcore_by_operator={k: int(v) for k, v in fv.by_operator().items()},
            thop_total=thop_total, thop_by_module_type=dict(thop_types))
        print(name, json.dumps(out[name]))
    path = REPO / "Tests" / "Fixtures" / "complexity.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print("wrote", path.relative_to(REPO))


if __name__ == "__main__":
    main()
