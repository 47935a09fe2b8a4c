#!/usr/bin/env python3
"""Check that the reference models' state_dict() keys (in order), shapes and dtypes equal the
spec listings in shared/spec/keys/, and that parameter counts match models.md section 4.

    python tools/reference/check_keys.py [--keys-dir DIR]

Prints one OK line per model; exits 1 with a readable diff on any mismatch.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fer_models as fm  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# MFN attribute name of each DDAMNet `features.N` (DDAMNet's features are MFN's first 9 children).
MFN_FROM_DDAMNET = dict(zip([f"features.{i}" for i in range(9)], fm.MFN_STAGE_NAMES))
# LFN attribute name of each LFNSB `features.N`.
LFN_FROM_LFNSB = dict(zip([f"features.{i}" for i in range(9)], fm.LFN_STAGE_NAMES))

# models.md section 4. LFNSB and LFN: sum of numel over model.parameters(). DDAMNet's figure
# (4,105,999) is NOT that sum: its own key listing holds 4,187,421 parameter values. 4,105,999
# is the count of the parameters the forward pass actually uses, i.e. without each head's unused
# `Linear` (2 x 26,112), MFN's unused conv_dw.bn / conv_dw.prelu (29,184) and the unused top-level
# `bn` (14); 81,422 in all. So DDAMNet is checked against both numbers, each counted its own way.
PARAM_COUNTS = {"LFNSB2(7)": 2_676_161, "LFN": 2_736_372}
USED_PARAM_COUNTS = {"DDAMNet(7,2)": 4_105_999}
LISTING_PARAM_COUNTS = {"DDAMNet(7,2)": 4_187_421}

DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
               torch.float64: "float64", torch.int64: "int64", torch.bool: "bool"}


def default_keys_dir() -> Path:
    for cand in (REPO.parent / "shared" / "spec" / "keys", REPO / "shared" / "spec" / "keys",
                 Path("/work/shared/spec/keys")):
        if cand.is_dir():
            return cand
    return REPO.parent / "shared" / "spec" / "keys"


def read_listing(path: Path):
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, shape, dtype = line.split("\t")
        rows.append((name, shape, dtype))
    return rows


def listing_of(model: torch.nn.Module):
    return [(k, str(list(v.shape)), DTYPE_NAMES[v.dtype]) for k, v in model.state_dict().items()]


def mfn_expected(ddam_rows):
    """DDAMNet's features.* entries renamed to MFN attribute names, plus MFN's 512-wide head."""
    rows = []
    for name, shape, dtype in ddam_rows:
        head, _, rest = name.partition(".")
        if head != "features":
            continue
        idx, _, tail = rest.partition(".")
        rows.append((f"{MFN_FROM_DDAMNET['features.' + idx]}.{tail}", shape, dtype))
    rows += [
        ("conv_6_dw.conv.weight", "[512, 1, 7, 7]", "float32"),
        ("conv_6_dw.bn.weight", "[512]", "float32"),
        ("conv_6_dw.bn.bias", "[512]", "float32"),
        ("conv_6_dw.bn.running_mean", "[512]", "float32"),
        ("conv_6_dw.bn.running_var", "[512]", "float32"),
        ("conv_6_dw.bn.num_batches_tracked", "[]", "int64"),
        ("linear.weight", "[512, 512]", "float32"),
        ("bn.weight", "[512]", "float32"),
        ("bn.bias", "[512]", "float32"),
        ("bn.running_mean", "[512]", "float32"),
        ("bn.running_var", "[512]", "float32"),
        ("bn.num_batches_tracked", "[]", "int64"),
    ]
    return rows


def compare(label: str, got, want) -> bool:
    if got == want:
        return True
    fmt = lambda rows: ["\t".join(r) for r in rows]  # noqa: E731
    diff = difflib.unified_diff(fmt(want), fmt(got), "expected (" + label + ")",
                                "model.state_dict()", lineterm="", n=1)
    lines = list(diff)
    print(f"MISMATCH {label}: {len(got)} entries vs {len(want)} expected", file=sys.stderr)
    for line in lines[:200]:
        print("  " + line, file=sys.stderr)
    if len(lines) > 200:
        print(f"  ... {len(lines) - 200} more diff lines", file=sys.stderr)
    return False


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_used_params(model: torch.nn.Module) -> int:
    """Parameters of the leaf modules that a batch-1 forward pass actually calls."""
    called = set()
    handles = [m.register_forward_hook(lambda mod, i, o: called.add(mod))
               for m in model.modules() if not list(m.children())]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 112, 112))
    for h in handles:
        h.remove()
    return sum(p.numel() for m in called for p in m.parameters(recurse=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys-dir", type=Path, default=default_keys_dir())
    args = ap.parse_args()
    kd: Path = args.keys_dir
    ok = True

    lfnsb_rows = read_listing(kd / "lfnsb-7class.tsv")
    lfn_rows = read_listing(kd / "lfn.tsv")
    ddam_rows = read_listing(kd / "ddamnet-7class-2heads.tsv")

    # Consistency of the listings among themselves: LFN's backbone keys are LFNSB's features.*
    # keys renamed, in the same order; MFN is derived from DDAMNet the same way.
    lfn_from_lfnsb = [(f"{LFN_FROM_LFNSB['features.' + r[0].split('.')[1]]}."
                       f"{r[0].split('.', 2)[2]}", r[1], r[2])
                      for r in lfnsb_rows if r[0].startswith("features.")]
    ok &= compare("lfn.tsv backbone vs lfnsb-7class.tsv features.* renamed",
                  lfn_rows[:len(lfn_from_lfnsb)], lfn_from_lfnsb)

    lfnsb8_rows = [(n, s.replace("[7", "[8") if n.startswith(("fc.", "bn.")) else s, d)
                   for n, s, d in lfnsb_rows]
    ddam71_rows = [r for r in ddam_rows if not r[0].startswith("cat_head1.")]
    cases = [
        ("LFNSB2(7)", fm.LFNSB2(7), lfnsb_rows),
        ("LFNSB2(8)", fm.LFNSB2(8), lfnsb8_rows),
        ("LFN", fm.LFN(), lfn_rows),
        ("MFN", fm.MixedFeatureNet(), mfn_expected(ddam_rows)),
        ("DDAMNet(7,2)", fm.DDAMNet(7, 2), ddam_rows),
        ("DDAMNet(7,1)", fm.DDAMNet(7, 1), ddam71_rows),
    ]
    for label, model, want in cases:
        got = listing_of(model)
        good = compare(label, got, want)
        count = n_params(model)
        if label in PARAM_COUNTS and count != PARAM_COUNTS[label]:
            print(f"MISMATCH {label}: {count:,} parameters, models.md says "
                  f"{PARAM_COUNTS[label]:,}", file=sys.stderr)
            good = False
        if label in LISTING_PARAM_COUNTS and count != LISTING_PARAM_COUNTS[label]:
            print(f"MISMATCH {label}: {count:,} parameters, its key listing holds "
                  f"{LISTING_PARAM_COUNTS[label]:,}", file=sys.stderr)
            good = False
        note = ""
        if label in USED_PARAM_COUNTS:
            used = n_used_params(model)
            if used != USED_PARAM_COUNTS[label]:
                print(f"MISMATCH {label}: forward uses {used:,} parameters, models.md says "
                      f"{USED_PARAM_COUNTS[label]:,}", file=sys.stderr)
                good = False
            note = f"; forward uses {used:,} (= models.md's figure)"
        if good:
            extra = f", {count:,} parameters" + (" (= models.md)" if label in PARAM_COUNTS else "")
            extra += note
            print(f"OK {label}: {len(got)} state_dict entries match{extra}")
        ok &= good
    # Batch size 1 must run (the authors' bare squeeze() bug is not reproduced).
    with torch.no_grad():
        for label, model, _ in cases:
            model.eval()
            model(torch.zeros(1, 3, 112, 112))
    print("OK batch size 1 forward for all models")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
