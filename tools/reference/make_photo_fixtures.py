#!/usr/bin/env python3
"""Writes Tests/Fixtures/photos/: the whole-photo pipeline (tools/reference/photo_pipeline.py) on real
photos, for the Swift FaceAnalyzer tests.

    tools/setup                                                     # fetches .downloads/photos/
    .venv-reference/bin/python tools/reference/make_photo_fixtures.py [--check]

Photos (not committed; tests read them from .downloads/photos): insightface 2.1's t1.jpg and
scikit-image 0.26.0's astronaut.png, camera.png, chelsea.png. Each at detect size 640, t1.jpg also at
320. Per (photo, size): `<stem>-<size>.json` and `<stem>-<size>.crops.npy`; plus index.json and
README.md (format, versions, command). Deterministic: one thread for torch and OpenCV, no randomness;
running it twice gives byte-identical files. `--check` also measures how far the results move under
the differences a faithful reimplementation may show (see `check`) and adds the figures to README.md.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import PIL
import skimage
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import photo_pipeline as pp  # noqa: E402
import retinaface as rf  # noqa: E402
from make_face_fixtures import best_template, decode_nms, model_resize, model_warp  # noqa: E402

REPO = HERE.parents[1]
PHOTOS = REPO / ".downloads" / "photos"
OUT = REPO / "Tests" / "Fixtures" / "photos"
CASES = [("t1.jpg", 640), ("t1.jpg", 320), ("astronaut.png", 640), ("camera.png", 640),
         ("chelsea.png", 640)]
SOURCES = {"t1.jpg": "insightface==2.1 wheel, insightface/data/images/t1.jpg",
           "astronaut.png": "scikit-image==0.26.0 wheel, skimage/data/astronaut.png",
           "camera.png": "scikit-image==0.26.0 wheel, skimage/data/camera.png",
           "chelsea.png": "scikit-image==0.26.0 wheel, skimage/data/chelsea.png"}
COMMAND = "tools/setup && .venv-reference/bin/python tools/reference/make_photo_fixtures.py --check"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
cv2.setNumThreads(1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def face_json(f: pp.Face) -> dict:
    return {"box": [float(v) for v in f.box],
            "score": float(f.score),
            "landmarks": [[float(x), float(y)] for x, y in f.landmarks],
            "template": f.template,
            "template_error": f.template_error,
            "matrix": [[float(v) for v in row] for row in f.matrix],
            "logits": [float(v) for v in f.logits],
            "probabilities": [float(v) for v in f.probabilities],
            "label": f.label}


def dump(case: dict) -> str:
    """JSON, one key per line and one face per line."""
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in case.items() if k != "faces"]
    faces = ",\n".join(f"  {json.dumps(f)}" for f in case["faces"])
    return "{\n" + "\n".join(lines) + "\n \"faces\": [" + (f"\n{faces}\n ]" if faces else "]") + "\n}\n"


def main():
    missing = [n for n in SOURCES if not (PHOTOS / n).is_file()]
    if missing:
        sys.exit(f"missing {', '.join(missing)} in {PHOTOS}: run tools/setup first")
    pipe = pp.Pipeline()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    index = {"command": COMMAND,
             "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                          "opencv": cv2.__version__, "scikit-image": skimage.__version__,
                          "pillow": PIL.__version__, "numpy": np.__version__},
             "weights": {p.name: sha256(p) for p in (pp.DETECTOR_WEIGHTS, pp.CLASSIFIER_WEIGHTS)},
             "photos": {n: {"source": SOURCES[n], "sha256": sha256(PHOTOS / n)} for n in SOURCES},
             "cases": []}
    for name, size in CASES:
        rgb = pp.decode(PHOTOS / name)
        r = pipe.run(rgb, detect_size=size)
        stem = f"{Path(name).stem}-{size}"
        crops = np.stack([f.crop for f in r.faces]) if r.faces else np.zeros((0, pp.CROP, pp.CROP, 3), np.uint8)
        assert crops.dtype == np.uint8 and crops.shape == (len(r.faces), pp.CROP, pp.CROP, 3)
        np.save(OUT / f"{stem}.crops.npy", crops)
        case = {"photo": name, "photo_sha256": index["photos"][name]["sha256"],
                "width": r.width, "height": r.height, "detect_size": size,
                "threshold": pp.THRESHOLD, "nms_iou": pp.NMS_IOU,
                "input_width": r.input_width, "input_height": r.input_height,
                "above_threshold": r.above_threshold, "crops": f"{stem}.crops.npy",
                "faces": [face_json(f) for f in r.faces]}
        (OUT / f"{stem}.json").write_text(dump(case))
        index["cases"].append({"json": f"{stem}.json", "faces": len(r.faces)})
        print(f"{stem}: {r.width}x{r.height} -> {r.input_width}x{r.input_height}, "
              f"{r.above_threshold} anchors above {pp.THRESHOLD}, {len(r.faces)} face(s)")
        for k, f in enumerate(r.faces):
            top2 = np.sort(f.logits)[-2:]
            print(f"  {k}: box ({', '.join(f'{v:.2f}' for v in f.box)}) score {f.score:.4f} "
                  f"template {f.template} label {f.label} (logit margin {top2[1] - top2[0]:.3f})")
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    readme = README.format(command=COMMAND, **index["versions"])
    if "--check" in sys.argv:
        readme += CHECK_README + "".join(f"- {line}\n" for line in check(pipe))
    (OUT / "README.md").write_text(readme)
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT.relative_to(REPO)}: {total / 1e3:.0f} kB")


def check(pipe: pp.Pipeline):
    """Per case with faces: (1) the numpy models of the Swift resize and warp (make_face_fixtures)
    against cv2 on this photo; (2) the detector in float64 against float32 (boxes, landmarks);
    (3) landmarks jittered by +-1e-4 and +-1e-3 px (seeded), then aligned and classified again:
    the crops' mean level difference, the largest logit change and label flips."""
    m64 = rf.RetinaFace().double()
    m64.load_state_dict(pipe.detector.state_dict())
    m64.eval()
    rng = np.random.default_rng(12)
    lines = []
    for name, size in CASES:
        rgb = pp.decode(PHOTOS / name)
        r = pipe.run(rgb, detect_size=size)
        if not r.faces:
            continue
        h, w = rgb.shape[:2]
        iw, ih = r.input_width, r.input_height
        resize = "no resize"
        if (iw, ih) != (w, h):
            d = np.abs(cv2.resize(rgb, (iw, ih), interpolation=cv2.INTER_LINEAR).astype(int)
                       - model_resize(rgb, iw, ih).astype(int)).max()
            resize = f"resize model vs cv2 max |d| {d}"
        warp = max(np.abs(model_warp(rgb, f.matrix, pp.CROP, pp.CROP).astype(int) - f.crop.astype(int)).max()
                   for f in r.faces)
        x = torch.from_numpy(pp.detector_input(rgb, size)).double()
        with torch.no_grad():
            b, s, lm = m64(x)
        f64, _ = decode_nms(b[0].numpy(), s[0].numpy(), lm[0].numpy(), ih, iw, iw / w, ih / h)
        assert len(f64) == len(r.faces)
        dbox = max(np.abs(np.array(a["box"]) - f.box).max() for a, f in zip(f64, r.faces))
        dlm = max(np.abs(np.array(a["landmarks"]).reshape(5, 2) - f.landmarks).max() for a, f in zip(f64, r.faces))
        jitter = []
        logits = np.stack([f.logits for f in r.faces])
        crops = np.stack([f.crop for f in r.faces])
        for eps in (1e-4, 1e-3):
            moved = np.stack([cv2.warpAffine(rgb, best_template(f.landmarks + rng.uniform(-eps, eps, (5, 2)))[0],
                                             (pp.CROP, pp.CROP)) for f in r.faces])
            with torch.no_grad():
                lg = pipe.classifier(torch.from_numpy(pp.normalize(moved)))[0].numpy()
            mad = np.abs(moved.astype(int) - crops.astype(int)).mean(axis=(1, 2, 3)).max()
            flips = int((lg.argmax(1) != logits.argmax(1)).sum())
            jitter.append(f"+-{eps:g} px: crops mean |d| <= {mad:.4f}, logits max |d| {np.abs(lg - logits).max():.4f}, "
                          f"{flips} label flips")
        margin = min(float(np.diff(np.sort(f.logits)[-2:])[0]) for f in r.faces)
        lines.append(f"`{Path(name).stem}-{size}`: {resize}; warp model vs cv2 max |d| {warp}; float64 detector: "
                     f"boxes {dbox:.1e}, landmarks {dlm:.1e} px; landmarks {'; '.join(jitter)}; "
                     f"smallest top-2 logit margin {margin:.3f}")
        print(lines[-1])
    return lines


CHECK_README = """
## How far the results move (`--check`)

Per case: the numpy models of the Swift resize and warp (`make_face_fixtures.model_resize`,
`model_warp`) against cv2 on the photo itself; the detector in float64 against float32; the
landmarks jittered by +-1e-4 and +-1e-3 px (uniform, seeded), then aligned and classified again
(the crops' mean level difference per face, the largest logit change, label flips); the smallest
gap between a face's two largest logits (labels closer than that can flip).

"""


README = """# Whole-photo pipeline on real photos

Made by `tools/reference/make_photo_fixtures.py` with the PyTorch + OpenCV + scikit-image pipeline
`tools/reference/photo_pipeline.py` (its docstring lists every step). To regenerate:

    {command}

Versions: python {python}, torch {torch}, opencv-python-headless {opencv}, scikit-image {scikit-image},
pillow {pillow}, numpy {numpy}; one thread; deterministic (a second run gives the same bytes).
`index.json` records these, the weights' and photos' sha256 and the face count of every case.

The photos are not stored here: `tools/setup` takes them out of pinned wheels into
`.downloads/photos/` (`t1.jpg` from insightface 2.1; `astronaut.png`, `camera.png`, `chelsea.png`
from scikit-image 0.26.0). Weights: `weights/retinaface-mobilenet0.25.pth` (detector) and
`weights/lfnsb7-seeded.pth` (LFNSB-7, seeded, not trained: its labels mean nothing, but they are
what the Swift pipeline must reproduce).

Cases: every photo at detect size 640, `t1.jpg` also at 320. Per case `<stem>-<size>`:

- `<stem>-<size>.json`:
  - `photo` (file name in `.downloads/photos`), `photo_sha256`, `width`, `height` (decoded size),
  - `detect_size`, `threshold` (0.6), `nms_iou` (0.35), `input_width`, `input_height` (the
    detector input: s = min(1, detect_size / long side), (round(w*s), round(h*s)), half to even),
  - `above_threshold`: anchors with score > threshold before NMS,
  - `crops`: the `.npy` file name,
  - `faces`, in score order (best first), each with
    `box` [x1, y1, x2, y2] and `landmarks` [[x, y] x 5] (float64, original photo's pixels,
    landmarks not truncated; left eye, right eye, nose, left and right mouth corner), `score`
    (face probability, a float32 value), `template` (0-based index of the chosen alignment template,
    2 = frontal), `template_error` (its summed point distance), `matrix` [[a, b, c], [d, e, f]]
    (float64, photo -> crop, as given to `cv2.warpAffine`), `logits` and `probabilities` (7 float32
    values each; softmax of the logits), `label` (argmax of the logits, 0-based).
- `<stem>-<size>.crops.npy`: uint8 (`|u1`), C order, shape (faces, 112, 112, 3), RGB: the aligned crops
  in the same order (`cv2.warpAffine`, INTER_LINEAR, black borders, of the decoded original photo).
  Shape (0, 112, 112, 3) when there is no face.
"""


if __name__ == "__main__":
    main()
