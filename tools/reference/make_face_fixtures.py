#!/usr/bin/env python3
"""Writes Tests/Fixtures/faces/: OpenCV and scikit-image reference outputs for the FERFaces module.

    /work/main/.venv-reference/bin/pip install scikit-image   # once
    .venv-reference/bin/python tools/reference/make_face_fixtures.py [--check]

Deterministic (seeded numpy generators, no clock). Writes faces.json and PNGs (lossless):
- resize: cv2.resize(..., interpolation=cv2.INTER_LINEAR) of synthetic patterns (stored here) and of
  ../shared/data/images/astronaut.png (input read from ../shared at test time; only outputs stored);
- warp: cv2.warpAffine(img, M, (112, 112)) (INTER_LINEAR, BORDER_CONSTANT 0) for a few matrices,
  including the alignment of the astronaut's face;
- similarity: skimage SimilarityTransform estimates from landmark sets to each of the five templates,
  with the chosen template and its summed point distance;
- decode: random RetinaFace head outputs through `decode_nms` below, a numpy version of
  /work/shared/spec/detection.md's decoding and NMS (written from the spec, float64).
`--check` also prints how exactly the models the Swift code implements (described in
Sources/FERFaces/LinearResize.swift and WarpAffine.swift) reproduce cv2 on a random sweep.
"""
import json
import os
import sys

import cv2
import numpy as np
from PIL import Image
from skimage.transform import SimilarityTransform

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import retinaface  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "faces")
ASTRONAUT = os.path.join(ROOT, "..", "shared", "data", "images", "astronaut.png")

TEMPLATES = np.array([
    [[55.550, 49.477], [62.116, 49.339], [38.075, 70.237], [55.017, 92.262], [61.466, 92.979]],
    [[47.241, 48.598], [72.887, 49.540], [40.555, 71.067], [47.423, 93.643], [71.236, 94.353]],
    [[33.566, 40.559], [78.321, 40.559], [55.338, 64.967], [38.479, 90.276], [73.591, 90.276]],
    [[39.516, 49.540], [65.162, 48.598], [71.849, 71.067], [41.167, 94.353], [64.980, 93.643]],
    [[50.225, 49.339], [56.791, 49.477], [74.266, 70.237], [50.875, 92.979], [65.317, 92.262]],
])


def save_png(name, rgb):
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(os.path.join(OUT, name), optimize=True)
    return name


def patterns():
    """Synthetic RGB inputs: high-contrast checkerboard with stripes, and smooth gradient plus noise."""
    rng = np.random.default_rng(20240611)
    h, w = 97, 131
    yy, xx = np.mgrid[0:h, 0:w]
    chk = (((xx // 3) + (yy // 5)) % 2 * 255).astype(np.uint8)
    a = np.stack([chk, 255 - chk, ((xx * 7) % 256).astype(np.uint8)], -1)
    a[40:46, :] = (255, 0, 0)
    b = np.clip(np.stack([xx * 255.0 / w, yy * 255.0 / h, (xx + yy) % 64 * 4.0], -1)
                + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    c = rng.integers(0, 256, (150, 120, 3), dtype=np.uint8)   # 3x shrink to 40x50
    d = rng.integers(0, 256, (88, 128, 3), dtype=np.uint8)    # 2x shrink in both axes
    return {"checker": a, "smooth": b, "noise150x120": c, "noise88x128": d}


def similarity(src, dst):
    t = SimilarityTransform()
    if hasattr(SimilarityTransform, "from_estimate"):
        t = SimilarityTransform.from_estimate(src, dst)
    else:
        assert t.estimate(src, dst)
    return np.asarray(t.params[:2], np.float64)


def best_template(landmarks):
    best = None
    for i, tpl in enumerate(TEMPLATES):
        m = similarity(landmarks, tpl)
        res = landmarks @ m[:, :2].T + m[:, 2]
        err = float(np.sum(np.sqrt(np.sum((res - tpl) ** 2, axis=1))))
        if best is None or err < best[2]:
            best = (m, i, err)
    return best


def priors(h, w):
    return retinaface.priors(h, w).numpy()  # float64, the detector reference's own priors


def decode_nms(loc, conf, landm, h, w, scale_x, scale_y, threshold=0.6, iou=0.35):
    pr = priors(h, w)
    loc, conf, landm = loc.astype(np.float64), conf.astype(np.float64), landm.astype(np.float64)
    c = pr[:, :2] + loc[:, :2] * 0.1 * pr[:, 2:]
    wh = pr[:, 2:] * np.exp(loc[:, 2:] * 0.2)
    scale4 = np.array([w, h, w, h], np.float64)
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1) * scale4 / np.array([scale_x, scale_y] * 2)
    lms = np.concatenate([pr[:, :2] + landm[:, 2 * k:2 * k + 2] * 0.1 * pr[:, 2:] for k in range(5)], 1)
    lms = lms * np.array([w, h] * 5, np.float64) / np.array([scale_x, scale_y] * 5)
    s = conf[:, 1]
    idx = np.nonzero(s > threshold)[0]
    order = list(idx[np.argsort(-s[idx], kind="stable")])
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            iw = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + 1)
            ih = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + 1)
            inter = iw * ih
            ai = (boxes[i, 2] - boxes[i, 0] + 1) * (boxes[i, 3] - boxes[i, 1] + 1)
            aj = (boxes[j, 2] - boxes[j, 0] + 1) * (boxes[j, 3] - boxes[j, 1] + 1)
            if inter / (ai + aj - inter) <= iou:
                rest.append(j)
        order = rest
    return [{"anchor": int(k), "score": float(s[k]), "box": boxes[k].tolist(), "landmarks": lms[k].tolist()}
            for k in keep], len(idx)


def decode_case(seed, h, w, scale_x, scale_y):
    rng = np.random.default_rng(seed)
    a = len(priors(h, w))
    loc = rng.normal(0, 1.0, (a, 4)).astype(np.float32)
    logits = rng.normal(0, 1.5, (a, 2))
    conf = np.exp(logits - logits.max(1, keepdims=True))
    conf = (conf / conf.sum(1, keepdims=True)).astype(np.float32)
    landm = rng.normal(0, 1.0, (a, 10)).astype(np.float32)
    faces, above = decode_nms(loc, conf, landm, h, w, scale_x, scale_y)
    return {"height": h, "width": w, "scaleX": scale_x, "scaleY": scale_y, "anchors": a,
            "aboveThreshold": above,
            "boxes": [float(v) for v in loc.ravel()], "scores": [float(v) for v in conf.ravel()],
            "landmarks": [float(v) for v in landm.ravel()], "faces": faces}


def main():
    os.makedirs(OUT, exist_ok=True)
    pats = patterns()
    manifest = {"opencv": cv2.__version__, "resize": [], "warp": [], "similarity": [], "decode": []}
    inputs = {}
    for name, img in pats.items():
        inputs[name] = save_png(f"in-{name}.png", img)
    astro = None
    if os.path.exists(ASTRONAUT):
        astro = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
        inputs["astronaut"] = "shared:data/images/astronaut.png"
    src = dict(pats, **({"astronaut": astro} if astro is not None else {}))

    # Resize: (input, width, height). Shrinks by odd and even factors, one axis only, enlargements.
    resizes = [("checker", 64, 47), ("checker", 44, 33), ("checker", 131, 50), ("checker", 200, 150),
               ("smooth", 65, 48), ("smooth", 13, 9), ("smooth", 131, 97),
               ("noise150x120", 40, 50), ("noise88x128", 64, 44), ("noise88x128", 43, 29),
               ("astronaut", 171, 171), ("astronaut", 128, 85)]
    for name, w, h in resizes:
        out = cv2.resize(cv2.cvtColor(src[name], cv2.COLOR_RGB2BGR), (w, h), interpolation=cv2.INTER_LINEAR)
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
        file = save_png(f"resize-{name}-{w}x{h}.png", out)
        manifest["resize"].append({"input": inputs[name], "width": w, "height": h, "output": file})

    # Landmark sets (x, y) x 5 in the astronaut image (near its face box (177, 56, 270, 176)) and odd ones.
    landmark_sets = [
        [[201.3, 103.6], [244.1, 101.9], [223.8, 128.4], [205.9, 151.2], [241.7, 149.8]],
        [[201.0, 103.0], [244.0, 101.0], [223.0, 128.0], [205.0, 151.0], [241.0, 149.0]],
        [[210.5, 95.25], [250.0, 110.0], [240.0, 130.0], [205.0, 150.0], [236.0, 162.0]],
        [[30.0, 40.0], [38.0, 41.0], [12.0, 60.0], [29.0, 80.0], [36.0, 81.0]],     # left profile
        [[10.0, 10.0], [20.0, 20.0], [30.0, 30.0], [40.0, 40.0], [50.0, 50.0]],     # collinear
    ]
    for lm in landmark_sets:
        lm = np.array(lm, np.float64)
        m, i, err = best_template(lm)
        per = [similarity(lm, t).ravel().tolist() for t in TEMPLATES]
        manifest["similarity"].append({"landmarks": lm.tolist(), "matrices": per, "best": i, "error": err})

    # Warps: (input, matrix). Rotations, shrinking, enlarging, borders, half-pixel translations.
    warps = [("checker", [[1, 0, 0.5], [0, 1, 0.5]]),
             ("checker", [[0.8, -0.35, 10.3], [0.35, 0.8, -20.7]]),
             ("checker", [[2.7, 0.4, -140.2], [-0.4, 2.7, -60.9]]),
             ("checker", [[0.31, 0.05, 30.0], [-0.05, 0.31, 40.0]]),
             ("smooth", [[1.3, -0.9, 20.0], [0.9, 1.3, -70.0]]),
             ("smooth", [[-1.0, 0.0, 120.25], [0.0, 1.0, -0.75]])]
    if astro is not None:
        for s in manifest["similarity"][:3]:
            warps.append(("astronaut", np.array(s["matrices"][s["best"]]).reshape(2, 3).tolist()))
    # A random case where the bilinear sum lands next to .5, so only fused arithmetic matches cv2.
    name, img, m = fused_case()
    src[name] = img
    inputs[name] = save_png(f"in-{name}.png", img)
    warps.append((name, m.tolist()))
    for k, (name, m) in enumerate(warps):
        m = np.array(m, np.float64)
        out = cv2.warpAffine(src[name], m, (112, 112))
        file = save_png(f"warp-{k}-{name}.png", out)
        manifest["warp"].append({"input": inputs[name], "matrix": m.ravel().tolist(), "output": file})

    manifest["decode"].append(decode_case(7, 96, 128, 1.0, 1.0))
    manifest["decode"].append(decode_case(11, 45, 61, 0.5, 443 / 886 * 0.99))
    with open(os.path.join(OUT, "faces.json"), "w") as f:
        json.dump(manifest, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("decode cases:", [(len(c["faces"]), c["aboveThreshold"]) for c in manifest["decode"]])
    if "--check" in sys.argv:
        check()


# ------------------------------------------------------------------------------------------------
# --check: the arithmetic the Swift code implements, in numpy, against cv2 on random sizes.
# ------------------------------------------------------------------------------------------------

def model_resize(img, out_w, out_h):
    def axis(n_in, n_out):
        scale = 1.0 / (n_out / n_in)
        f = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
        s = np.floor(f)
        a = (f - s).astype(np.float32)
        s = s.astype(np.int64)
        w0 = np.rint((np.float32(1) - a) * np.float32(2048)).astype(np.int64)
        return np.clip(s, 0, n_in - 1), np.clip(s + 1, 0, n_in - 1), w0, 2048 - w0
    x0, x1, a0, a1 = axis(img.shape[1], out_w)
    y0, y1, b0, b1 = axis(img.shape[0], out_h)
    im = img.astype(np.int64)
    hs = im[:, x0] * a0[None, :, None] + im[:, x1] * a1[None, :, None]
    out = (((b0[:, None, None] * (hs[y0] >> 4)) >> 16) + ((b1[:, None, None] * (hs[y1] >> 4)) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def model_warp(img, m, out_w, out_h, fused=True):
    f32, f64 = np.float32, np.float64
    a, b, c = m[0]
    d, e, f = m[1]
    det = a * e - b * d
    det = 1.0 / det if det != 0 else 0.0
    n = np.array([[e * det, -b * det, 0.0], [-d * det, a * det, 0.0]])
    n[0, 2] = -n[0, 0] * c - n[0, 1] * f
    n[1, 2] = -n[1, 0] * c - n[1, 1] * f
    nf = n.astype(f32)
    yy, xx = np.mgrid[0:out_h, 0:out_w].astype(f32)
    coords = []
    for r in (0, 1):
        row = nf[r, 1] * yy + nf[r, 2]                                   # float multiply, float add
        coords.append((f64(nf[r, 0]) * xx.astype(f64) + row.astype(f64)).astype(f32))   # fma
    sx, sy = coords
    ix, iy = np.floor(sx), np.floor(sy)
    ax, ay = (sx - ix)[..., None], (sy - iy)[..., None]
    ix, iy = np.clip(ix, -2, 1 << 20).astype(np.int64), np.clip(iy, -2, 1 << 20).astype(np.int64)
    h, w = img.shape[:2]

    def tap(px, py):
        ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        v = img[np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)].astype(f32)
        return np.where(ok[..., None], v, f32(0))
    p00, p01, p10, p11 = tap(ix, iy), tap(ix + 1, iy), tap(ix, iy + 1), tap(ix + 1, iy + 1)
    def fma(a, b, c):   # one rounding: float32 products are exact in float64
        if not fused:
            return a * b + c
        return (a.astype(f64) * b.astype(f64) + c.astype(f64)).astype(f32)
    v0 = fma(ax, p01 - p00, p00)
    v1 = fma(ax, p11 - p10, p10)
    return np.clip(np.rint(fma(ay, v1 - v0, v0)), 0, 255).astype(np.uint8)


def fused_case():
    """The first seeded random (image, matrix) whose cv2 warp differs from unfused bilinear arithmetic."""
    rng = np.random.default_rng(1)
    for t in range(100000):
        img = rng.integers(0, 256, (int(rng.integers(8, 40)), int(rng.integers(8, 40)), 3), dtype=np.uint8)
        ang, sc = rng.uniform(-3.2, 3.2), rng.uniform(0.2, 4)
        m = np.array([[sc * np.cos(ang), -sc * np.sin(ang), rng.uniform(-30, 30)],
                      [sc * np.sin(ang), sc * np.cos(ang), rng.uniform(-30, 30)]])
        ref = cv2.warpAffine(img, m, (112, 112))
        if np.array_equal(ref, model_warp(img, m, 112, 112)) and not np.array_equal(
                ref, model_warp(img, m, 112, 112, fused=False)):
            return f"fused{t}", img, m
    raise RuntimeError("no case found")


def check():
    rng = np.random.default_rng(1)
    worst, exact, total = 0, 0, 0
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 300, 2))
        oh, ow = (int(v) for v in rng.integers(1, 400, 2))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        d = np.abs(cv2.resize(img, (ow, oh), interpolation=cv2.INTER_LINEAR).astype(int)
                   - model_resize(img, ow, oh).astype(int))
        worst, exact, total = max(worst, int(d.max())), exact + int((d == 0).sum()), total + d.size
    print(f"resize model vs cv2, 300 random sizes: max diff {worst}, exact {exact / total:.6f}")
    worst, exact, total = 0, 0, 0
    for _ in range(200):
        img = rng.integers(0, 256, (int(rng.integers(1, 200)), int(rng.integers(1, 200)), 3), dtype=np.uint8)
        ang, sc = rng.uniform(-3.2, 3.2), rng.uniform(0.2, 4)
        m = np.array([[sc * np.cos(ang), -sc * np.sin(ang), rng.uniform(-100, 100)],
                      [sc * np.sin(ang), sc * np.cos(ang), rng.uniform(-100, 100)]])
        d = np.abs(cv2.warpAffine(img, m, (112, 112)).astype(int) - model_warp(img, m, 112, 112).astype(int))
        worst, exact, total = max(worst, int(d.max())), exact + int((d == 0).sum()), total + d.size
    print(f"warp model vs cv2, 200 random matrices: max diff {worst}, exact {exact / total:.6f}")


if __name__ == "__main__":
    main()
