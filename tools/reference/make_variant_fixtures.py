#!/usr/bin/env python3
"""Architecture-variant and inconsistent checkpoints for the loader tests
(Tests/Fixtures/variants/, described in the README.md this script writes there).

    .venv-reference/bin/python tools/reference/make_variant_fixtures.py

Each variant changes ONE constructor argument of a published model (fer_models.py) and comes
with PyTorch's outputs on Tests/Fixtures/inputs/random-b2.npy; each `bad-*` checkpoint is a
valid state_dict with one tensor edited so that shapes no longer chain, plus `expect.txt`, the
shape error a loader should report.

Values: tensors a variant shares (same name and shape) with the committed base model
(Tests/Fixtures/checkpoints/lfnsb7-bare, models/lfn, models/ddamnet7-2heads) are copied from it;
the new or reshaped ones are drawn with make_fixtures.randomize, and the running statistics of
the BatchNorms at and after the change (and the classifier bias) are re-drawn with
make_fixtures.calibrate, exactly as make_fixtures.py does for its models. Checkpoints are
stored as float16 (STORE_DTYPE) to keep the folder small; the outputs are those of the float32
model holding these float16-rounded values (as for make_fixtures' lfnsb7-float16 case).

Needs the committed fixtures (it does not rewrite them). Deterministic: fixed seeds, one CPU
thread; running it twice gives byte-identical files.
"""

from __future__ import annotations

import shutil
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fer_models as fm  # noqa: E402
import make_fixtures as mf  # noqa: E402  (no side effects beyond torch thread/determinism settings)

REPO = mf.REPO
FIX = mf.FIX
OUT = FIX / "variants"
STORE_DTYPE = torch.float16     # torch.float32 doubles the folder (about 125 MB instead of 62)
INPUT = "random-b2"
CHECK_INPUTS = ("random-b1", "random-b2", "random-b7", "images-b2")   # logit sanity check only

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

BASES = {
    "lfnsb7": FIX / "checkpoints" / "lfnsb7-bare" / "model.pth",
    "lfn": FIX / "models" / "lfn" / "model.pth",
    "ddamnet7-2heads": FIX / "models" / "ddamnet7-2heads" / "model.pth",
}
BASE_ARGS = {"lfnsb7": "LFNSB2(7)", "lfn": "LFN()", "ddamnet7-2heads": "DDAMNet(7, 2)"}


def log(*a):
    print(*a, flush=True)


def load_base(name: str):
    return torch.load(BASES[name], map_location="cpu", weights_only=True)


def block_index(name: str, stage: str) -> int:
    """J of `<stage>.model.J.` in a module name, or -1."""
    pre = stage + ".model."
    return int(name[len(pre):].split(".")[0]) if name.startswith(pre) else -1


def after_features(first: int):
    return lambda n: n == "fc" or (not n.startswith("features.") or
                                   int(n.split(".")[1]) >= first)


# name, base, constructor, what changed, which BNs (and fc) get re-calibrated, changed shapes
VARIANTS = [
    dict(name="lfnsb7-ca-wide", base="lfnsb7", args="LFNSB2(7, ca_reduction=8)",
         make=lambda: fm.LFNSB2(7, ca_reduction=8), kind="lfnsb", classes=7, heads=None,
         what="backbone coordinate attention 4x wider: mip = max(8, G // 8) instead of "
              "max(8, G // 32) in every MixBlock (G 96 -> 12, 192 -> 24, 768 -> 96, 342 -> 42)",
         recal=after_features(2)),
    dict(name="lfnsb7-deep", base="lfnsb7", args="LFNSB2(7, blocks=(9, 19, 6))",
         make=lambda: fm.LFNSB2(7, blocks=(9, 19, 6)), kind="lfnsb", classes=7, heads=None,
         what="stage 5 has 19 residual MixBlocks instead of 16 (features.5.model.16-18 added)",
         recal=lambda n: (n == "fc" or not n.startswith("features.") or int(n.split(".")[1]) >= 6
                          or block_index(n, "features.5") >= 16)),
    dict(name="lfnsb3", base="lfnsb7", args="LFNSB2(3)", make=lambda: fm.LFNSB2(3),
         kind="lfnsb", classes=3, heads=None,
         what="3 classes: fc [3, 256] and bias [3], bn (unused) 3 wide",
         recal=lambda n: n == "fc"),
    dict(name="ddamnet7-att256", base="ddamnet7-2heads", args="DDAMNet(7, 2, head_groups=2)",
         make=lambda: fm.DDAMNet(7, 2, head_groups=2), kind="ddamnet", classes=7, heads=2,
         what="each head's attention conv1 is 512 -> 256 (bn1 256, conv2/conv3 256 -> 512) "
              "instead of 512 -> 16",
         recal=lambda n: n.endswith("CoordAtt.bn1") or n in ("Linear.bn", "fc")),
    dict(name="ddamnet7-4heads", base="ddamnet7-2heads", args="DDAMNet(7, 4)",
         make=lambda: fm.DDAMNet(7, 4), kind="ddamnet", classes=7, heads=4,
         what="4 attention heads (cat_head2, cat_head3 added; heads 0, 1 as in ddamnet7-2heads)",
         recal=lambda n: n.startswith(("cat_head2.", "cat_head3.")) or n in ("Linear.bn", "fc")),
    dict(name="lfn-deep", base="lfn", args="LFN(blocks=(12, 16, 6))",
         make=lambda: fm.LFN(blocks=(12, 16, 6)), kind="lfn", classes=None, heads=None,
         what="embedder; stage 3 (conv_3) has 12 residual MixBlocks instead of 9 "
              "(conv_3.model.9-11 added)",
         recal=lambda n: (n.split(".")[0] not in fm.LFN_STAGE_NAMES[:4]
                          or block_index(n, "conv_3") >= 9)),
]


def to_store(sd):
    return OrderedDict((k, v.to(STORE_DTYPE) if v.is_floating_point() else v.clone())
                       for k, v in sd.items())


def save_checkpoint(path: Path, sd) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    mf.write_text(path.with_name("model.tensors.tsv"), mf.tsv_lines(sd))


def shape_changes(sd, base_sd):
    """Keys whose shape differs from the base model's, and keys the base does not have / lacks."""
    changed = [f"{k}: {list(base_sd[k].shape)} -> {list(v.shape)}" for k, v in sd.items()
               if k in base_sd and v.shape != base_sd[k].shape]
    added = [k for k in sd if k not in base_sd]
    removed = [k for k in base_sd if k not in sd]
    return changed, added, removed


def summarize_keys(keys):
    """Group `a.b.model.J.rest` keys by block: 'features.5.model.16.* (N tensors)'."""
    groups = OrderedDict()
    for k in keys:
        parts = k.split(".")
        if "model" in parts:
            i = parts.index("model")
            g = ".".join(parts[:i + 2]) + ".*"
        else:
            g = parts[0] + ".*"
        groups[g] = groups.get(g, 0) + 1
    return [f"{g} ({n} tensors)" for g, n in groups.items()]


def make_variant(v, inputs, index):
    name = v["name"]
    base_sd = load_base(v["base"])
    model = v["make"]()
    mf.randomize(model, name)
    n_copied = mf.copy_matching(model, base_sd)
    n_cal = mf.calibrate(model, name, only=v["recal"])
    stored = to_store(model.state_dict())
    assert all(torch.isfinite(t.float()).all() for t in stored.values() if t.is_floating_point())
    path = OUT / name / "model.pth"
    save_checkpoint(path, stored)

    # reload the file into a fresh model of the variant (strict) and compute the outputs there
    m = v["make"]()
    m.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    m.eval()
    try:   # the published architecture must NOT accept it
        fm_base = {"lfnsb7": lambda: fm.LFNSB2(7), "lfn": fm.LFN,
                   "ddamnet7-2heads": lambda: fm.DDAMNet(7, 2)}[v["base"]]()
        fm_base.load_state_dict(stored, strict=True)
        raise SystemExit(f"{name}: loads into {BASE_ARGS[v['base']]} too")
    except RuntimeError:
        pass
    outs = OrderedDict((i, mf.run(m, torch.from_numpy(x))) for i, x in inputs.items())
    if v["kind"] == "lfn":
        e = torch.cat([o["embedding"] for o in outs.values()])
        cos = (e @ e.t()).fill_diagonal_(0).abs().max().item()
        assert (e.norm(dim=1) - 1).abs().max() < 1e-5 and cos < 0.999, cos
        log(f"  {name}: embedding, max |cos| between different samples {cos:.3f}")
        names = ("embedding", "featuremap")
    else:
        mf.logit_report(name, outs)
        names = ("logits", "featuremap")
    files = OrderedDict()
    for o in names:
        files[o] = mf.save_npy(OUT / name / f"{INPUT}.{o}.npy", outs[INPUT][o])
    changed, added, removed = shape_changes(stored, base_sd)
    log(f"  {name}: {len(stored)} tensors ({n_copied} copied from {v['base']}, {n_cal} "
        f"statistics re-calibrated); shapes changed: {len(changed)}, added: {len(added)}, "
        f"removed: {len(removed)}")
    for c in changed[:4]:
        log(f"      {c}")
    if len(changed) > 4:
        log(f"      ... {len(changed) - 4} more")
    if added:
        log(f"      added {', '.join(summarize_keys(added))}")
    index["variants"][name] = OrderedDict(
        model=v["kind"], classes=v["classes"], heads=v["heads"], constructor=v["args"],
        base=v["base"], base_constructor=BASE_ARGS[v["base"]], changed=v["what"],
        checkpoint=mf.rel(path), dtype=str(STORE_DTYPE).replace("torch.", ""),
        tensors=len(stored), shape_changes=changed, added=summarize_keys(added),
        removed=summarize_keys(removed), input=f"Tests/Fixtures/inputs/{INPUT}.npy",
        outputs=files)
    return changed, added


def make_bad(index):
    """Valid state_dicts with one tensor edited so that shapes stop chaining."""
    g = lambda tag: mf.gen(f"bad:{tag}")   # noqa: E731
    lf = load_base("lfnsb7")
    dd = load_base("ddamnet7-2heads")
    bad = []

    # features.4's project conv (and its BN) output 120 channels; stage 5 still expects 128.
    sd = OrderedDict((k, v.clone()) for k, v in lf.items())
    for k in ("features.4.project.conv.weight", "features.4.project.bn.weight",
              "features.4.project.bn.bias", "features.4.project.bn.running_mean",
              "features.4.project.bn.running_var"):
        sd[k] = sd[k][:120].clone()
    key = "features.5.model.0.conv.conv.weight"
    bad.append(("bad-project", sd, "lfnsb7", key, [192, 120, 1, 1], list(sd[key].shape),
                "features.4.project.conv.weight [128, 192, 1, 1] -> [120, 192, 1, 1] and "
                "features.4.project.bn.* [128] -> [120]: stage 4 outputs 120 channels, but "
                "features.5.model.0.conv.conv.weight still takes 128"))

    # fc takes 250 inputs; the Spatial Bias head gives 256.
    sd = OrderedDict((k, v.clone()) for k, v in lf.items())
    sd["fc.weight"] = sd["fc.weight"][:, :250].clone()
    bad.append(("bad-fc", sd, "lfnsb7", "fc.weight", [7, 256], [7, 250],
                "fc.weight [7, 256] -> [7, 250] (first 250 columns)"))

    # head 1's conv2 takes 32 inputs; its conv1 (and bn1) give 16.
    sd = OrderedDict((k, v.clone()) for k, v in dd.items())
    key = "cat_head1.CoordAtt.conv2.weight"
    sd[key] = torch.randn((512, 32, 1, 1), generator=g(key)) / 32 ** 0.5
    bad.append(("bad-ddam-att", sd, "ddamnet7-2heads", key, [512, 16, 1, 1], [512, 32, 1, 1],
                "cat_head1.CoordAtt.conv2.weight [512, 16, 1, 1] -> [512, 32, 1, 1] "
                "(re-drawn); conv1 and bn1 still give 16 channels"))

    for name, sd, base, key, want, got, what in bad:
        assert list(sd[key].shape) == got
        stored = to_store(sd)
        path = OUT / name / "model.pth"
        save_checkpoint(path, stored)
        # the message the Swift loader gives for a mis-shaped tensor (FEREngine RawWeights):
        # "<key>: checkpoint <actual>, expected <expected>"
        line = f"{key}: checkpoint {got}, expected {want}"
        mf.write_text(OUT / name / "expect.txt", line + "\n")
        back = torch.load(path, map_location="cpu", weights_only=True)
        assert list(back) == list(base_sd_keys(base))
        try:
            {"lfnsb7": lambda: fm.LFNSB2(7),
             "ddamnet7-2heads": lambda: fm.DDAMNet(7, 2)}[base]().load_state_dict(back, strict=True)
            raise SystemExit(f"{name}: PyTorch accepts it")
        except RuntimeError:
            pass
        log(f"  {name}: {line}")
        index["bad"][name] = OrderedDict(
            base=base, base_constructor=BASE_ARGS[base], changed=what, checkpoint=mf.rel(path),
            dtype=str(STORE_DTYPE).replace("torch.", ""), key=key, expected=want, actual=got,
            expect=mf.rel(OUT / name / "expect.txt"), line=line)


_BASE_KEYS = {}


def base_sd_keys(base):
    if base not in _BASE_KEYS:
        _BASE_KEYS[base] = list(load_base(base))
    return _BASE_KEYS[base]


def main():
    for p in BASES.values():
        if not p.is_file():
            sys.exit(f"missing {p}: the committed fixtures are needed (make_fixtures.py)")
    inputs = OrderedDict((i, np.load(FIX / "inputs" / f"{i}.npy")) for i in CHECK_INPUTS)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    index = OrderedDict(generator="tools/reference/make_variant_fixtures.py",
                        versions={"torch": torch.__version__, "numpy": np.__version__},
                        store_dtype=str(STORE_DTYPE).replace("torch.", ""),
                        tolerances=mf.TOLERANCES, variants=OrderedDict(), bad=OrderedDict())
    log("variants:")
    for v in VARIANTS:
        make_variant(v, inputs, index)
    log("inconsistent checkpoints:")
    make_bad(index)
    mf.write_json(OUT / "index.json", index)
    write_readme(index)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    rf = FIX / "retinaface"
    rf_total = sum(p.stat().st_size for p in rf.rglob("*") if p.is_file()) if rf.is_dir() else 0
    log(f"wrote {mf.rel(OUT)}: {total / 1e6:.1f} MB (with Tests/Fixtures/retinaface: "
        f"{(total + rf_total) / 1e6:.1f} MB)")
    assert total + rf_total < 80e6


def write_readme(index):
    L = [
        "# Architecture variants and inconsistent checkpoints",
        "",
        "Made by `tools/reference/make_variant_fixtures.py` (deterministic; it reads the committed",
        "base checkpoints and does not rewrite them). `index.json` holds everything below in",
        "machine-readable form (constructor, changed shapes, added keys, output shapes, expected",
        "error lines).",
        "",
        "Every `model.pth` is a bare state_dict (`torch.save(sd)`, zip format) with every floating",
        f"tensor stored as {index['store_dtype']} (to keep the folder small); `model.tensors.tsv` next",
        "to it lists its tensors as in `../LAYOUT.md`. Tensors a variant shares (name and shape) with",
        "its base model are the base's values (rounded to float16); new or reshaped tensors are",
        "seeded random (`make_fixtures.randomize`), and the BatchNorm statistics at and after the",
        "change (and the fc bias) re-calibrated (`make_fixtures.calibrate`).",
        "",
        "## Variants (one constructor argument changed)",
        "",
        f"Outputs, PyTorch float32 on the float16-rounded weights, for `../inputs/{INPUT}.npy`",
        f"[2, 3, 112, 112]: classifiers `{INPUT}.logits.npy` [2, K] and `{INPUT}.featuremap.npy`",
        f"[2, C, 7, 7]; the embedder `{INPUT}.embedding.npy` [2, 256] and `{INPUT}.featuremap.npy`.",
        "Tolerances as in `../fixtures.json`.",
        "",
        "| folder | base | our constructor | what changed | outputs |",
        "|---|---|---|---|---|",
    ]
    for name, v in index["variants"].items():
        outs = ", ".join(f"`{Path(f['path']).name}` {f['shape']}" for f in v["outputs"].values())
        L.append(f"| `{name}` | {v['base']} | `{v['constructor']}` | {v['changed']} | {outs} |")
    L += ["", "Shapes that differ from the base model (same key, other shape):", ""]
    for name, v in index["variants"].items():
        ch = v["shape_changes"]
        if ch:
            shown = "; ".join(ch[:6]) + (f"; ... ({len(ch)} keys in all, see index.json)"
                                         if len(ch) > 6 else "")
        else:
            shown = "none"
        extra = f" Added: {', '.join(v['added'])}." if v["added"] else ""
        L.append(f"- `{name}`: {shown}.{extra}")
    L += [
        "",
        "## Inconsistent checkpoints (`bad-*`)",
        "",
        "Valid state_dicts of the base model with one tensor edited so that shapes no longer chain.",
        "PyTorch's `load_state_dict` refuses them, and so must our loader. `expect.txt` is one line",
        "in the loader's shape-error form, `<key>: checkpoint <actual shape>, expected <expected",
        "shape>`: the first tensor, in forward order, whose shape contradicts what the tensors",
        "before it imply (a loader may report more after it).",
        "",
        "| folder | base | what changed | expect.txt |",
        "|---|---|---|---|",
    ]
    for name, b in index["bad"].items():
        L.append(f"| `{name}` | {b['base']} | {b['changed']} | `{b['line']}` |")
    L.append("")
    mf.write_text(OUT / "README.md", "\n".join(L))


if __name__ == "__main__":
    main()
