#!/usr/bin/env python3
"""Generate the seeded reference weights and every test fixture described in
Tests/Fixtures/LAYOUT.md (the contract with the Swift tests).

    python3 -m venv .venv-reference
    .venv-reference/bin/pip install -r tools/reference/requirements.txt
    .venv-reference/bin/python tools/reference/make_fixtures.py

Needs tools/setup to have run (sample image and MTCNN files in .downloads/) and the shared
data next to the repository (../shared/data/). Deterministic: fixed seeds, one CPU thread,
float32; running it twice gives byte-identical files.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import struct
import sys
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fer_models as fm  # noqa: E402  (whole-module pickles reference `fer_models.<Class>`)

REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
FIX = REPO / "Tests" / "Fixtures"
WEIGHTS = REPO / "weights"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.backends.mkldnn.enabled = True  # the default; stated so a reader knows it was on

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
               torch.float64: "float64", torch.int64: "int64", torch.bool: "bool"}

# Recommended comparison tolerances for the Swift side (|got - want| <= atol + rtol * |want|).
TOLERANCES = {
    "logits": {"atol": 1e-3, "rtol": 1e-3},
    "featuremap": {"atol": 1e-3, "rtol": 1e-3},
    "pooled": {"atol": 1e-3, "rtol": 1e-3},
    "embedding": {"atol": 1e-4, "rtol": 1e-3},
    "stages": {"atol": 1e-3, "rtol": 1e-3},
    "note": "fp32 vs PyTorch fp32 on CPU; fp64_max_abs_diff in each expected case shows how far "
            "PyTorch's own fp32 result is from an fp64 evaluation of the same weights",
}


def log(*a):
    print(*a, flush=True)


def rel(p: Path) -> str:
    return str(p.relative_to(REPO))


# ---------------------------------------------------------------------------------------------
# Seeded randomisation of every parameter and buffer
# ---------------------------------------------------------------------------------------------

def gen(tag: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(tag.encode()))


def normal_(t: torch.Tensor, std: float, tag: str, mean: float = 0.0):
    t.copy_(torch.randn(t.shape, generator=gen(tag)) * std + mean)


def uniform_(t: torch.Tensor, lo: float, hi: float, tag: str):
    t.copy_(torch.rand(t.shape, generator=gen(tag)) * (hi - lo) + lo)


# Residual branches are damped so that activations stay O(1) through 9 + 16 + 6 residual blocks.
RESIDUAL_PROJECT_GAMMA = 0.35
# The classifier layer gets a gain so that logits land in a useful range (about 0.5..20).
FC_GAIN = {"LFNSB2": 10.0, "DDAMNet": 1.5}


@torch.no_grad()
def randomize(model: nn.Module, ns: str) -> None:
    """Every weight, bias, BN affine parameter and running statistic, every PReLU slope and
    num_batches_tracked gets a seeded value that depends only on (ns, tensor name)."""
    for mname, mod in model.named_modules():
        p = (mname + ".") if mname else ""
        tag = lambda n: f"{ns}:{p}{n}"  # noqa: E731
        if isinstance(mod, (nn.Conv2d, nn.Conv1d)):
            fan_in = mod.weight[0].numel()
            normal_(mod.weight, 1.0 / math.sqrt(fan_in), tag("weight"))
            if mod.bias is not None:
                normal_(mod.bias, 0.1, tag("bias"))
        elif isinstance(mod, nn.Linear):
            gain = FC_GAIN.get(type(model).__name__, 1.0) if mname == "fc" else 1.0
            normal_(mod.weight, gain / math.sqrt(mod.in_features), tag("weight"))
            if mod.bias is not None:
                normal_(mod.bias, 0.1, tag("bias"))
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            uniform_(mod.weight, 0.5, 1.5, tag("weight"))
            normal_(mod.bias, 0.1, tag("bias"))
            normal_(mod.running_mean, 0.2, tag("running_mean"))
            uniform_(mod.running_var, 0.5, 2.0, tag("running_var"))
            mod.num_batches_tracked.fill_(
                int(torch.randint(100, 100000, (1,), generator=gen(tag("num_batches_tracked")))))
            if ".model." in p and p.endswith("project.bn."):
                mod.weight.mul_(RESIDUAL_PROJECT_GAMMA)
        elif isinstance(mod, nn.PReLU):
            uniform_(mod.weight, 0.05, 0.4, tag("weight"))


def calibration_batch() -> torch.Tensor:
    """8 white-noise N(0,1) images and 8 spatially smooth ones (N(0,1) at 4..28 pixels,
    bilinearly upsampled to 112): real face crops are smooth, white noise is not, and the
    statistics of both kinds should be in range."""
    g = gen("calibration-batch")
    white = torch.randn((8, 3, 112, 112), generator=g)
    smooth = [nn.functional.interpolate(torch.randn((2, 3, s, s), generator=g), size=(112, 112),
                                        mode="bilinear", align_corners=False) * 1.5
              for s in (4, 7, 14, 28)]
    return torch.cat([white] + smooth)


@torch.no_grad()
def calibrate(model: nn.Module, ns: str, only=lambda name: True) -> int:
    """Re-draw the running statistics of the BatchNorms the forward pass uses (those whose name
    passes `only`) around the statistics of their actual input on a seeded calibration batch:
    running_mean = mean + N(0, 0.2) * std, running_var = var * U(0.5, 2), both rounded to
    bfloat16 precision. Purely random statistics (as `randomize` draws them) leave the
    input-dependent part of the activations vanishing next to the biases after a few stages:
    every sample then gets the same logits. With these, each BN is still far from the identity
    and from the true statistics (so BN-folding bugs show), but activations stay O(1) and
    input-dependent. BNs the forward pass never calls keep their random values."""
    model.eval()
    x = calibration_batch()
    names = {m: n for n, m in model.named_modules()}
    done = []

    def pre(mod, inputs):
        name = names[mod]
        if not only(name):
            return
        t = inputs[0].double()
        dims = [0] + list(range(2, t.dim()))
        mean, var = t.mean(dims), t.var(dims, unbiased=False)
        shift = torch.randn(mean.shape, generator=gen(f"{ns}:calib-mean:{name}"), dtype=torch.float64)
        scale = torch.rand(var.shape, generator=gen(f"{ns}:calib-var:{name}"), dtype=torch.float64)
        mod.running_mean.copy_((mean + 0.2 * shift * var.sqrt()).to(torch.bfloat16))
        mod.running_var.copy_((var * (0.5 + 1.5 * scale)).clamp_min(1e-3).to(torch.bfloat16))
        done.append(name)

    def pre_fc(mod, inputs):
        # centre the classifier: bias = -W . mean(input) + N(0, 0.3), so that no class wins
        # for every input just through the constant part of the features
        if not only("fc"):
            return
        mean = inputs[0].double().mean(0)
        jitter = torch.randn(mod.bias.shape, generator=gen(f"{ns}:calib-fc-bias"), dtype=torch.float64)
        mod.bias.copy_((-(mod.weight.double() @ mean) + 0.3 * jitter).to(torch.bfloat16))
        done.append("fc")

    hs = [m.register_forward_pre_hook(pre) for m in model.modules()
          if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    if isinstance(getattr(model, "fc", None), nn.Linear):
        hs.append(model.fc.register_forward_pre_hook(pre_fc))
    try:
        model(x)
    finally:
        for h in hs:
            h.remove()
    return len(done)


def copy_matching(dst: nn.Module, src_sd: "OrderedDict[str, torch.Tensor]", rename=None) -> int:
    """Copy tensors from src_sd into dst wherever (renamed) name and shape match."""
    n = 0
    dsd = dst.state_dict()
    with torch.no_grad():
        for k, v in src_sd.items():
            k2 = rename(k) if rename else k
            if k2 is not None and k2 in dsd and dsd[k2].shape == v.shape:
                dsd[k2].copy_(v)
                n += 1
    return n


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def load_image(path: Path) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    bilinear = getattr(Image, "BILINEAR", None) or Image.Resampling.BILINEAR
    img = img.resize((112, 112), bilinear)
    a = np.asarray(img, dtype=np.float32) / 255.0                    # HWC in [0, 1]
    a = (a - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)


def make_inputs():
    inputs = OrderedDict()
    for name, n in (("random-b1", 1), ("random-b2", 2), ("random-b7", 7)):
        x = torch.randn((n, 3, 112, 112), generator=gen("input:" + name), dtype=torch.float32)
        inputs[name] = x.numpy()
    srcs = [REPO / ".downloads" / "samples" / "Tom_Hanks_54745.png",
            SHARED / "data" / "images" / "astronaut.png"]
    for s in srcs:
        if not s.is_file():
            sys.exit(f"missing {s}: run tools/setup first (and check ../shared/data)")
    inputs["images-b2"] = np.stack([load_image(s) for s in srcs]).astype(np.float32)
    sources = {"random-b1": "seeded N(0,1)", "random-b2": "seeded N(0,1)",
               "random-b7": "seeded N(0,1)",
               "images-b2": [".downloads/samples/Tom_Hanks_54745.png",
                             "../shared/data/images/astronaut.png"]}
    return inputs, sources


# ---------------------------------------------------------------------------------------------
# Tensor listings and checkpoint forms
# ---------------------------------------------------------------------------------------------

def crc_of(t: torch.Tensor) -> str:
    b = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    assert sys.byteorder == "little"
    return f"{zlib.crc32(b) & 0xffffffff:08x}"


def tsv_lines(sd) -> str:
    out = []
    for k, v in sd.items():
        out.append(f"{k}\t{DTYPE_NAMES[v.dtype]}\t{list(v.shape)}\t{crc_of(v)}\t{v.numel()}")
    return "\n".join(out) + "\n"


def write_text(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_json(path: Path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def convert_floats(sd, dtype):
    return OrderedDict((k, v.to(dtype) if v.is_floating_point() else v.clone())
                       for k, v in sd.items())


def views_state_dict(sd):
    """Same values as sd, but with non-contiguous tensors and tensors sharing storages."""
    v = OrderedDict((k, t.clone()) for k, t in sd.items())
    notes = []
    # channels_last 4-D weight (C_in = 3, so the strides really differ).
    v["features.0.c.weight"] = sd["features.0.c.weight"].contiguous(
        memory_format=torch.channels_last)
    notes.append("features.0.c.weight: channels_last (strides (27, 1, 9, 3))")
    # transposed 2-D weight: stored as the transpose of a contiguous [256, 7] tensor.
    v["fc.weight"] = sd["fc.weight"].t().contiguous().t()
    notes.append("fc.weight: transposed view, strides (1, 7)")
    # permuted 3-D / 4-D weights.
    v["sb.sb_conv.weight"] = sd["sb.sb_conv.weight"].permute(2, 0, 1).contiguous().permute(1, 2, 0)
    notes.append("sb.sb_conv.weight: permuted view, strides (3, 1, 16)")
    w = sd["features.6.conv.conv.weight"]
    v["features.6.conv.conv.weight"] = w.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)
    notes.append("features.6.conv.conv.weight: [768,128,1,1] stored as its [128,768] transpose")
    # one flat storage holding all of features.0.bn's vectors (plus its scalar, as int64
    # would clash in dtype; it gets its own shared int64 storage below).
    names = [f"features.0.bn.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
    flat = torch.cat([sd[n] for n in names] + [torch.zeros(5)])  # storage longer than used
    for i, n in enumerate(names):
        v[n] = flat[64 * i: 64 * (i + 1)]
    notes.append("features.0.bn.{weight,bias,running_mean,running_var}: slices of one float "
                 "storage of 261 elements at offsets 0, 64, 128, 192")
    # both BNs of features.8 (inner conv.bn and outer bn) in one storage, interleaved order.
    names8 = [f"features.8.bn.{n}" for n in ("running_var", "running_mean", "bias", "weight")] + \
             [f"features.8.conv.bn.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
    flat8 = torch.cat([torch.full((3,), 7.0)] + [sd[n] for n in names8])
    for i, n in enumerate(names8):
        v[n] = flat8[3 + 256 * i: 3 + 256 * (i + 1)]
    notes.append("features.8.bn.* and features.8.conv.bn.*: slices of one float storage, "
                 "starting at offset 3, in a different order than the keys")
    # a strided 1-D view (every other element, offset 1).
    fb = sd["fc.bias"]
    holder = torch.zeros(2 * fb.numel() + 1)
    holder[1::2] = fb
    v["fc.bias"] = holder[1::2]
    notes.append("fc.bias: stride-2 view at offset 1 of a 15-element storage")
    # 0-dim int64 scalars that are views into one int64 storage.
    nbt = [k for k in sd if k.startswith("features.3.") and k.endswith("num_batches_tracked")]
    ints = torch.stack([sd[k] for k in nbt])
    for i, k in enumerate(nbt):
        v[k] = ints[i]
    notes.append(f"{len(nbt)} features.3.*.num_batches_tracked: 0-dim views into one int64 "
                 f"storage of {len(nbt)} elements")
    for k in sd:
        assert torch.equal(v[k], sd[k]) and v[k].dtype == sd[k].dtype, k
    return v, notes


# ---------------------------------------------------------------------------------------------
# Deterministic legacy files
# ---------------------------------------------------------------------------------------------

class _Stub:
    """Stands in for every global while scanning a pickle: callable, subscriptable, buildable."""

    def __init__(self, module="", name=""):
        self.module, self.name = module, name

    def __call__(self, *args, **kwargs):
        return _Stub()

    def __setitem__(self, key, value):
        pass

    def __setstate__(self, state):
        pass

    def append(self, x):
        pass

    def extend(self, xs):
        pass


_ELEMENT_SIZE = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2,
                 "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
                 "ByteStorage": 1, "BoolStorage": 1}


def canonical_legacy(data: bytes) -> bytes:
    """torch.save(..., _use_new_zipfile_serialization=False) names each storage by its memory
    address (str(storage._cdata)) and writes the raw records sorted by that text, so two runs
    give different bytes. Rename the keys to same-length decimal strings numbered in order of
    first use, and reorder the raw records to match: the file stays an ordinary legacy file
    (torch.load reads it identically) and becomes byte-deterministic."""
    import pickle

    f = io.BytesIO(data)
    for _ in range(3):                      # magic number, protocol version, sys_info
        pickle.load(f)
    main_start = f.tell()
    order, stype = [], {}

    class Scan(pickle.Unpickler):
        def persistent_load(self, pid):
            if pid[0] == "storage":
                if pid[2] not in stype:
                    order.append(pid[2])
                    stype[pid[2]] = pid[1].name
            return _Stub()

        def find_class(self, module, name):
            return _Stub(module, name)

    Scan(f).load()
    main_end = f.tell()
    keys = pickle.load(f)
    pos = f.tell()
    records = {}
    for k in keys:                          # int64 element count, then the raw bytes
        (n,) = struct.unpack("<q", data[pos:pos + 8])
        end = pos + 8 + n * _ELEMENT_SIZE[stype[k]]
        records[k] = data[pos:end]
        pos = end
    assert pos == len(data), "unexpected trailing bytes in legacy file"
    assert sorted(order) == sorted(keys)
    width = len(keys[0])
    assert all(len(k) == width for k in keys), "storage keys of different lengths"
    new = {old: str(10 ** (width - 1) + i) for i, old in enumerate(order)}
    main = data[main_start:main_end]
    for old, nk in new.items():
        assert main.count(old.encode()) == 1, old
        main = main.replace(old.encode(), nk.encode())
    new_keys = sorted(new.values())
    inv = {v: k for k, v in new.items()}
    buf = io.BytesIO()
    pickle.dump(new_keys, buf, protocol=2)
    return data[:main_start] + main + buf.getvalue() + b"".join(records[inv[k]] for k in new_keys)


def save(obj, path: Path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    if kw.get("_use_new_zipfile_serialization", True) is False:
        buf = io.BytesIO()
        torch.save(obj, buf, **kw)
        path.write_bytes(canonical_legacy(buf.getvalue()))
    else:
        torch.save(obj, path, **kw)


# ---------------------------------------------------------------------------------------------
# Running the models
# ---------------------------------------------------------------------------------------------

def kind_of(model):
    if isinstance(model, fm.LFNSB2):
        return "lfnsb"
    if isinstance(model, fm.LFN):
        return "lfn"
    if isinstance(model, fm.MixedFeatureNet):
        return "mfn"
    return "ddamnet"


@torch.no_grad()
def run(model, x: torch.Tensor):
    model.eval()
    k = kind_of(model)
    if k in ("lfnsb", "ddamnet"):
        out = model(x)
        logits, fmap = out[0], out[1]
        return OrderedDict(logits=logits, featuremap=fmap, pooled=fmap.mean(dim=(2, 3)))
    fmap = model.backbone(x)
    emb = model(x)
    return OrderedDict(embedding=emb, featuremap=fmap)


def extract_state_dict(obj, meta):
    """Turn what torch.load returned into a plain state_dict, as an importer would."""
    if meta["structure"] == "whole-module":
        sd = obj.state_dict()
    elif meta["state_dict_key"]:
        sd = obj[meta["state_dict_key"]]
    else:
        sd = obj
    if meta["prefix"]:
        sd = OrderedDict((k[len(meta["prefix"]):], v) for k, v in sd.items())
    return sd


def model_for(meta) -> nn.Module:
    return {"lfnsb": lambda: fm.LFNSB2(meta["classes"]), "lfn": fm.LFN, "mfn": fm.MixedFeatureNet,
            "ddamnet": lambda: fm.DDAMNet(meta["classes"], meta["heads"])}[meta["model"]]()


def check_file_reproduces(path: Path, meta, expected_outputs, inputs) -> None:
    obj = torch.load(path, map_location="cpu", weights_only=False)
    sd = extract_state_dict(obj, meta)
    model = model_for(meta)
    model.load_state_dict(sd, strict=True)
    model.eval()
    for iname, x in inputs.items():
        got = run(model, torch.from_numpy(x))
        for oname, want in expected_outputs[iname].items():
            if not torch.equal(got[oname], want):
                d = (got[oname] - want).abs().max().item()
                raise SystemExit(f"{rel(path)}: {iname}.{oname} not reproduced (max diff {d})")
    if meta["structure"] == "whole-module":  # the unpickled module itself runs, too
        for iname, x in inputs.items():
            got = run(obj, torch.from_numpy(x))
            for oname, want in expected_outputs[iname].items():
                assert torch.equal(got[oname], want), (rel(path), iname, oname)
    # Does PyTorch's own safe loader accept the file? (Not the whole module; and in torch 2.13
    # not pickle protocol 4 either: it stops at the FRAME opcode.) Recorded in fixtures.json.
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception as e:  # noqa: BLE001
        return f"refused: {str(e).strip().splitlines()[-3].strip() or type(e).__name__}"


# ---------------------------------------------------------------------------------------------
# Self-checks of the reference implementation against the spec's formulas
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def self_check(model: fm.LFNSB2, x: torch.Tensor):
    model.eval()
    with fm.capture(model, ["features.8", "sb.feature_reduction", "sb"]) as c:
        model(x)
    # Spatial Bias steps 2-4 written out literally.
    r = c["sb.feature_reduction"].double()
    n = r.shape[0]
    P = torch.zeros(n, 66, 4, dtype=torch.float64)
    wins = [(0, 4), (3, 7)]
    for y in range(2):
        for xx in range(2):
            (y0, y1), (x0, x1) = wins[y], wins[xx]
            P[:, :, 2 * y + xx] = r[:, :, y0:y1, x0:x1].mean(dim=(2, 3))
    W = model.sb.sb_conv.weight.double()
    B = model.sb.sb_conv.bias.double()
    v = torch.zeros(n, 256, dtype=torch.float64)
    for o in range(4):
        for t in range(64):
            q = B[o] + sum(W[o, p, k] * P[:, t + k, p] for p in range(4) for k in range(3))
            v[:, 4 * t + o] = q
    err = (v - c["sb"].double()).abs().max().item()
    assert err < 1e-4, f"spatial bias head differs from the spec's steps: {err}"
    # RepVGGDW folds exactly into one 3x3 depthwise conv.
    st8 = model.features[8]
    inp = model.features[:8](x)
    err2 = (st8.fused()(inp) - st8(inp)).abs().max().item()
    assert err2 < 1e-3, f"RepVGGDW fold differs: {err2}"
    log(f"self-check: spatial bias head = spec steps (max err {err:.2e}); "
        f"RepVGGDW fold max err {err2:.2e}")


def logit_report(case: str, outs) -> dict:
    allx = torch.cat([outs[i]["logits"] for i in outs])
    mags = allx.abs()
    b7 = outs["random-b7"]["logits"]
    arg = b7.argmax(1).tolist()
    pmax = torch.softmax(allx, 1).max(1).values
    bad = not torch.isfinite(allx).all()
    stats = {"abs_min": round(mags.min().item(), 4), "abs_max": round(mags.max().item(), 4),
             "abs_mean": round(mags.mean().item(), 4),
             "max_abs_per_row_min": round(mags.max(1).values.min().item(), 4),
             "argmax_random_b7": arg, "argmax_images_b2": outs["images-b2"]["logits"].argmax(1).tolist(),
             "softmax_max_min": round(pmax.min().item(), 4),
             "softmax_max_max": round(pmax.max().item(), 4)}
    log(f"  {case}: |logit| max/row in [{stats['max_abs_per_row_min']}, {stats['abs_max']}], "
        f"mean |logit| {stats['abs_mean']}; argmax b7 {arg}; max softmax "
        f"[{stats['softmax_max_min']}, {stats['softmax_max_max']}]")
    problems = []
    if bad:
        problems.append("NaN/Inf")
    if stats["abs_max"] > 20 or stats["max_abs_per_row_min"] < 0.5:
        problems.append("logit magnitudes outside 0.5..20")
    if len(set(arg)) < 2:
        problems.append("argmax constant over random-b7")
    if stats["softmax_max_min"] > 0.999:
        problems.append("softmax saturated everywhere")
    if problems:
        raise SystemExit(f"{case}: logits badly conditioned: {', '.join(problems)}")
    return stats


def save_npy(path: Path, t: torch.Tensor) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))
    np.save(path, a)
    return {"path": rel(path), "shape": list(a.shape)}


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

DDAMNET_VARIANTS = ((7, 2), (8, 1))


def partial(sd):
    """A small subset of a state_dict (stem, stage 1, first MixBlock, stage 8, heads), for forms
    that only the importer needs to see: the pickle-level variations and float64. Full-size
    copies of every form would cost ~11-21 MB of git history each."""
    keep = ("features.0.", "features.1.", "features.2.", "features.8.", "sb.", "fc.", "bn.")
    return OrderedDict((k, v) for k, v in sd.items() if k.startswith(keep))


def main():
    for d in ("checkpoints", "models", "thirdparty", "inputs", "expected"):
        shutil.rmtree(FIX / d, ignore_errors=True)
    for p in WEIGHTS.glob("lfnsb7-seeded.*"):
        p.unlink()
    FIX.mkdir(parents=True, exist_ok=True)
    WEIGHTS.mkdir(exist_ok=True)
    index = OrderedDict()
    index["generator"] = "tools/reference/make_fixtures.py"
    index["versions"] = {"torch": torch.__version__, "numpy": np.__version__,
                         "pillow": Image.__version__}
    index["layout"] = "Tests/Fixtures/LAYOUT.md"

    # ---- inputs
    inputs, sources = make_inputs()
    index["inputs"] = OrderedDict()
    for name, a in inputs.items():
        p = FIX / "inputs" / f"{name}.npy"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, a)
        index["inputs"][name] = {"path": rel(p), "shape": list(a.shape), "dtype": "float32",
                                 "source": sources[name],
                                 "normalisation": {"mean": MEAN, "std": STD}
                                 if name == "images-b2" else None}
    log("inputs: " + ", ".join(f"{k} {list(v.shape)}" for k, v in inputs.items()))

    # ---- LFNSB-7 in the authors' training format, with real SGD momentum buffers
    torch.manual_seed(20240601)
    lfnsb7 = fm.LFNSB2(7)
    opt = torch.optim.SGD(lfnsb7.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    lfnsb7.train()
    g = gen("train-data")
    for _ in range(3):
        xb = torch.randn((4, 3, 112, 112), generator=g)
        yb = torch.randint(0, 7, (4,), generator=g)
        loss = nn.functional.cross_entropy(lfnsb7(xb)[0], yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)     # no stale .grad on the pickled whole module
    randomize(lfnsb7, "lfnsb")          # overwrite weights + BN stats in place
    calibrate(lfnsb7, "lfnsb")
    lfnsb7.eval()
    sd7 = lfnsb7.state_dict()
    n_mom = sum(1 for s in opt.state.values() if "momentum_buffer" in s)
    self_check(lfnsb7, torch.from_numpy(inputs["random-b2"]))

    # ---- the other models, sharing values within a family
    head_keys = ("fc.", "bn.")
    lfnsb8 = fm.LFNSB2(8)
    randomize(lfnsb8, "lfnsb8")         # fc / bn are 8-class; everything else from LFNSB-7
    n8 = copy_matching(lfnsb8, OrderedDict((k, v) for k, v in sd7.items()
                                           if not k.startswith(head_keys)))
    calibrate(lfnsb8, "lfnsb8", only=lambda n: n == "fc")
    lfn = fm.LFN()
    randomize(lfn, "lfn")
    to_lfn = dict(zip([f"features.{i}" for i in range(9)], fm.LFN_STAGE_NAMES))
    nl = copy_matching(lfn, sd7, lambda k: (to_lfn[".".join(k.split(".")[:2])] + "." +
                                            k.split(".", 2)[2]) if k.startswith("features.") else None)
    calibrate(lfn, "lfn", only=lambda n: n.split(".")[0] not in fm.LFN_STAGE_NAMES)
    mfn = fm.MixedFeatureNet()
    randomize(mfn, "mfn")
    calibrate(mfn, "mfn")
    sd_mfn = mfn.state_dict()
    from_mfn = {n: f"features.{i}" for i, n in enumerate(fm.MFN_STAGE_NAMES)}
    mfn_to_ddam = lambda k: ((from_mfn[k.split(".")[0]] + "." + k.split(".", 1)[1])  # noqa: E731
                             if k.split(".")[0] in from_mfn else None)
    ref = fm.DDAMNet(7, 2)              # head values shared by all DDAMNet variants
    randomize(ref, "ddamnet")
    nb = copy_matching(ref, sd_mfn, mfn_to_ddam)
    calibrate(ref, "ddamnet", only=lambda n: not n.startswith("features."))
    ref_sd = OrderedDict((k, v) for k, v in ref.state_dict().items() if not k.startswith(head_keys))
    ddam = OrderedDict()
    # Two variants cover both head counts and both class counts; each full-size checkpoint
    # costs ~17 MB of git history, so the other two combinations are not committed.
    for classes, heads in DDAMNET_VARIANTS:
        m = fm.DDAMNet(classes, heads)
        randomize(m, f"ddamnet{classes}")
        copy_matching(m, ref_sd)
        calibrate(m, f"ddamnet{classes}-{heads}", only=lambda n: n == "fc")
        ddam[(classes, heads)] = m
    log(f"shared tensors: lfnsb8 {n8} from lfnsb7, lfn {nl} from lfnsb7, ddamnet {nb} from mfn")
    # within-family identities promised by LAYOUT.md
    d72, d81 = ddam[(7, 2)].state_dict(), ddam[(8, 1)].state_dict()
    assert all(torch.equal(d81[k], d72[k]) for k in d81 if not k.startswith(("fc.", "bn.")))

    # ---- expected outputs
    fp32_models = OrderedDict()
    fp32_models["lfnsb7"] = lfnsb7
    for name, dt in (("lfnsb7-float16", torch.float16), ("lfnsb7-bfloat16", torch.bfloat16)):
        m = fm.LFNSB2(7)
        m.load_state_dict(convert_floats(sd7, dt), strict=True)   # rounds, then back to fp32
        fp32_models[name] = m
    fp32_models["lfnsb8"] = lfnsb8
    fp32_models["lfn"] = lfn
    fp32_models["mfn"] = mfn
    for (c, h), m in ddam.items():
        fp32_models[f"ddamnet{c}-{h}head" + ("s" if h > 1 else "")] = m
    stage_cases = {"lfnsb7", "lfn", "mfn", "ddamnet7-2heads"}

    expected = OrderedDict()
    outputs_mem = {}
    log("logits / embeddings:")
    index["expected"] = OrderedDict()
    for case, m in fp32_models.items():
        m.eval()
        outs = OrderedDict((i, run(m, torch.from_numpy(x))) for i, x in inputs.items())
        outputs_mem[case] = outs
        # fp64 evaluation of the same weights, to document PyTorch's own fp32 error.
        m64 = type(m)(*([m.fc.out_features] if isinstance(m, fm.LFNSB2) else
                        [m.fc.out_features, m.num_head] if isinstance(m, fm.DDAMNet) else []))
        m64.load_state_dict(m.state_dict())
        m64 = m64.double().eval()
        fp64_diff = {}
        for i, x in inputs.items():
            o64 = run(m64, torch.from_numpy(x).double())
            for o, t in outs[i].items():
                fp64_diff[o] = max(fp64_diff.get(o, 0.0), (o64[o] - t.double()).abs().max().item())
        entry = OrderedDict(model=kind_of(m),
                            classes=m.fc.out_features if hasattr(m, "fc") else None,
                            heads=getattr(m, "num_head", None) if isinstance(m, fm.DDAMNet) else None,
                            outputs=OrderedDict())
        for i in inputs:
            entry["outputs"][i] = OrderedDict(
                (o, save_npy(FIX / "expected" / case / f"{i}.{o}.npy", t)) for o, t in outs[i].items())
        entry["fp64_max_abs_diff"] = {o: float(f"{d:.3g}") for o, d in fp64_diff.items()}
        if kind_of(m) in ("lfnsb", "ddamnet"):
            entry["logit_stats"] = logit_report(case, outs)
        else:
            e = torch.cat([outs[i]["embedding"] for i in outs])
            norms = e.norm(dim=1)
            assert torch.isfinite(e).all() and (norms - 1).abs().max() < 1e-5
            cos = (e @ e.t()).fill_diagonal_(0).abs().max().item()
            log(f"  {case}: embedding dim {e.shape[1]}, norms 1 +- {(norms - 1).abs().max():.1e}, "
                f"max |cos| between different samples {cos:.3f}")
            assert cos < 0.999, "embeddings do not depend on the input"
        if case in stage_cases:
            names = fm.stage_names(m)
            with fm.capture(m, names) as cap:
                with torch.no_grad():
                    m(torch.from_numpy(inputs["random-b1"]))
            entry["stages"] = OrderedDict(input="random-b1", order=names, files=OrderedDict())
            for n in names:
                entry["stages"]["files"][n] = save_npy(
                    FIX / "expected" / case / "stages" / "random-b1" / f"{n}.npy", cap[n])
            stds = ", ".join(f"{n} {cap[n].std().item():.2f}" for n in names)
            log(f"    stage std: {stds}")
        index["expected"][case] = entry

    # ---- checkpoints
    index["checkpoints"] = []

    def emit(path: Path, obj, meta, tensors_sd, save_kw=None, tsv_path=None):
        save(obj, path, **(save_kw or {}))
        tsv_path = tsv_path or path.with_name("model.tensors.tsv")
        write_text(tsv_path, tsv_lines(tensors_sd))
        meta_path = None
        if path.parent != WEIGHTS:
            meta_path = path.with_name("model.meta.json")
            write_json(meta_path, meta)
        if meta["expected"] is None:   # partial state_dict: the tensors themselves must come back
            back = extract_state_dict(torch.load(path, map_location="cpu", weights_only=False), meta)
            assert list(back) == list(tensors_sd), rel(path)
            assert all(torch.equal(back[k], tensors_sd[k]) for k in back), rel(path)
            safe = None
        else:
            safe = check_file_reproduces(path, meta, outputs_mem[meta["expected"]], inputs)
        index["checkpoints"].append(OrderedDict(
            path=rel(path), size=path.stat().st_size, tensors=rel(tsv_path),
            meta_path=rel(meta_path) if meta_path else None, meta=meta,
            torch_weights_only_load=safe))

    def meta_of(container="zip", structure="bare", key=None, prefix=None, protocol=2, extras=None,
                model="lfnsb", classes=7, heads=None, expected_case="lfnsb7"):
        return OrderedDict(container=container, structure=structure, state_dict_key=key,
                           prefix=prefix, protocol=protocol, extras=extras or {}, model=model,
                           classes=classes, heads=heads, expected=expected_case)

    # weights/lfnsb7-seeded.pth
    authors = {"iter": 40, "model_state_dict": sd7, "optimizer_state_dict": opt.state_dict()}
    wmeta = meta_of(structure="authors", key="model_state_dict", extras={"iter": 40})
    emit(WEIGHTS / "lfnsb7-seeded.pth", authors, wmeta, sd7,
         tsv_path=WEIGHTS / "lfnsb7-seeded.tensors.tsv")
    index["checkpoints"][-1]["optimizer"] = {
        "type": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "steps": 3,
        "momentum_buffers": n_mom, "params": len(list(lfnsb7.parameters())),
        "note": "params without a gradient in forward (the unused `bn`) have no state"}

    C = FIX / "checkpoints"
    dp = nn.DataParallel(lfnsb7).state_dict()   # 'module.' prefix, as DataParallel writes it
    assert list(dp) == ["module." + k for k in sd7]
    views, view_notes = views_state_dict(sd7)
    forms = [
        ("lfnsb7-bare", sd7, meta_of(), sd7, {}),
        ("lfnsb7-dataparallel", dp, meta_of(prefix="module."), sd7, {}),
        ("lfnsb7-nested", {"epoch": 3, "state_dict": sd7, "best_acc": 0.875, "arch": "LFNSB2"},
         meta_of(structure="nested", key="state_dict",
                 extras={"epoch": 3, "best_acc": 0.875, "arch": "LFNSB2"}), sd7, {}),
        ("lfnsb7-model-key", {"model": partial(sd7)},
         meta_of(structure="nested", key="model", expected_case=None), partial(sd7), {}),
        ("lfnsb7-whole-module", lfnsb7, meta_of(structure="whole-module"), sd7, {}),
        ("lfnsb7-legacy", sd7, meta_of(container="legacy"), sd7,
         {"_use_new_zipfile_serialization": False}),
        ("lfnsb7-protocol4", partial(sd7), meta_of(protocol=4, expected_case=None), partial(sd7),
         {"pickle_protocol": 4}),
        ("lfnsb7-float16", convert_floats(sd7, torch.float16),
         meta_of(expected_case="lfnsb7-float16"), convert_floats(sd7, torch.float16), {}),
        ("lfnsb7-bfloat16", convert_floats(sd7, torch.bfloat16),
         meta_of(expected_case="lfnsb7-bfloat16"), convert_floats(sd7, torch.bfloat16), {}),
        ("lfnsb7-float64", convert_floats(partial(sd7), torch.float64), meta_of(expected_case=None),
         convert_floats(partial(sd7), torch.float64), {}),
        ("lfnsb7-views", views, meta_of(), sd7, {}),
    ]
    for form, obj, meta, tsd, kw in forms:
        emit(C / form / "model.pth", obj, meta, tsd, kw)
        if form == "lfnsb7-views":
            index["checkpoints"][-1]["views"] = view_notes
        if form == "lfnsb7-whole-module":
            index["checkpoints"][-1]["class"] = f"{type(lfnsb7).__module__}.{type(lfnsb7).__name__}"

    M = FIX / "models"
    others = [("lfnsb8", lfnsb8, meta_of(classes=8, expected_case="lfnsb8")),
              ("lfn", lfn, meta_of(model="lfn", classes=None, expected_case="lfn")),
              ("mfn", mfn, meta_of(model="mfn", classes=None, expected_case="mfn"))]
    for (c, h), m in ddam.items():
        name = f"ddamnet{c}-{h}head" + ("s" if h > 1 else "")
        others.append((name, m, meta_of(model="ddamnet", classes=c, heads=h, expected_case=name)))
    for name, m, meta in others:
        sd = m.state_dict()
        emit(M / name / "model.pth", sd, meta, sd)
    for case, e in index["expected"].items():
        e["checkpoints"] = [c["path"] for c in index["checkpoints"]
                            if c["meta"]["expected"] == case]
    log(f"checkpoints: {len(index['checkpoints'])} files, each reloaded (torch.load "
        f"weights_only=False + load_state_dict strict) and its expected outputs reproduced")

    # ---- third-party listings
    index["thirdparty"] = []
    tp = [("retinaface-mobilenet0.25", SHARED / "data" / "retinaface-mobilenet0.25.pth",
           "../shared/data/retinaface-mobilenet0.25.pth")]
    for n in ("pnet", "rnet", "onet"):
        tp.append((f"mtcnn-{n}", REPO / ".downloads" / "facenet_pytorch" / f"{n}.pt",
                   f".downloads/facenet_pytorch/{n}.pt"))
    for name, src, shown in tp:
        if not src.is_file():
            sys.exit(f"missing {src}: run tools/setup first")
        sd = torch.load(src, map_location="cpu", weights_only=True)
        out = FIX / "thirdparty" / f"{name}.tensors.tsv"
        write_text(out, tsv_lines(sd))
        nonc = [k for k, v in sd.items() if not v.is_contiguous()]
        head = src.read_bytes()[:4]
        index["thirdparty"].append(OrderedDict(
            name=name, source=shown, tensors=rel(out), count=len(sd),
            container="zip" if head == b"PK\x03\x04" else "legacy",
            non_contiguous=len(nonc)))
    log("thirdparty: " + ", ".join(f"{t['name']} ({t['count']} tensors, {t['container']}, "
                                   f"{t['non_contiguous']} non-contiguous)"
                                   for t in index["thirdparty"]))

    index["tolerances"] = TOLERANCES
    index["labels"] = {
        "rafdb7": ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"],
        "affectnet8": ["Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger",
                       "Contempt"]}
    write_json(FIX / "fixtures.json", index)
    log("wrote Tests/Fixtures/fixtures.json")


if __name__ == "__main__":
    main()
