#!/usr/bin/env python3
"""Writes Tests/Fixtures/eval/: a small labelled test set in every layout `fer-infer eval` reads,
with PyTorch's predictions and scikit-learn's metrics for each.

    .venv-reference/bin/pip install -r tools/reference/requirements.txt   # scikit-learn included
    .venv-reference/bin/python tools/reference/make_eval_fixtures.py

Deterministic (seeded numpy generator, no clock). The images are crops of
../shared/data/images/astronaut.png (public domain, NASA) and of the synthetic patterns in
Tests/Fixtures/faces/, turned, flipped and recoloured so that the seeded (untrained) model
weights/lfnsb7-seeded.pth predicts several classes; the tests need nothing outside Tests/Fixtures.
The true labels are chosen, per class, as mostly the model's own prediction plus a few others, so the
metrics are neither perfect nor trivial and the confusion matrix is mostly diagonal.

Layouts written:
    rafdb/EmoLabel/list_patition_label.txt    RAF-DB basic (labels 1..7, RAF-DB order), test_ and train_ lines
    rafdb/Image/aligned/*_aligned.jpg         112x112 JPEG (quality 90)
    folders/<class>/*.png|*.jpg               class-per-folder by name ('happy' is an alias of Happiness),
                                              some images not 112x112 (resized as the authors' evaluation does)
    list.csv                                  path,label with a header, labels as names and as indices
    list.tsv                                  the same images, tab-separated, no header, indices only
expected.json, per case (rafdb-test, rafdb-train, folders, list-csv, list-tsv): every image's path
(relative to Tests/Fixtures/eval), true class, PyTorch's predicted class and probabilities, and
scikit-learn's accuracy_score, balanced_accuracy_score, f1_score(average="macro"),
precision_recall_fscore_support(labels=range(7), zero_division=0) and confusion_matrix (counts and
normalize="true").

PyTorch's input is what the runtime does: PIL's decode + convert('RGB'), resize to 112x112 with
PIL's BILINEAR when the image is another size, ToTensor + ImageNet normalisation.
Images whose top two probabilities are within 0.02 are not used, so rounding cannot flip a prediction.
"""
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import sklearn
import torch
from PIL import Image, ImageEnhance, ImageOps
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fer_models as fm  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "Tests" / "Fixtures" / "eval"
ASTRONAUT = REPO / ".." / "shared" / "data" / "images" / "astronaut.png"
PATTERNS = sorted((REPO / "Tests" / "Fixtures" / "faces").glob("in-*.png"))
WEIGHTS = REPO / "weights" / "lfnsb7-seeded.pth"
MEAN = np.array((0.485, 0.456, 0.406), np.float32)
STD = np.array((0.229, 0.224, 0.225), np.float32)
RAFDB = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
CLASSES = 7
MARGIN = 0.02
BILINEAR = getattr(Image, "BILINEAR", None) or Image.Resampling.BILINEAR


def load_model():
    ck = torch.load(WEIGHTS, map_location="cpu", weights_only=False)
    sd = ck["model_state_dict"] if "model_state_dict" in ck else ck
    m = fm.LFNSB2(CLASSES)
    m.load_state_dict(sd, strict=True)
    return m.eval()


def to_input(img: Image.Image) -> np.ndarray:
    img = img.convert("RGB")
    if img.size != (112, 112):
        img = img.resize((112, 112), BILINEAR)
    a = (np.asarray(img, np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(a.transpose(2, 0, 1))


@torch.no_grad()
def predict(model, images):
    x = torch.from_numpy(np.stack([to_input(i) for i in images]))
    probs = torch.softmax(model(x)[0], dim=1).numpy().astype(np.float64)
    return probs


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        img.save(buf, "JPEG", quality=90)
    else:
        img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def candidates(rng, count):
    """(image, size) pairs: crops with a transform; size is 112 or another (width, height)."""
    sources = [Image.open(ASTRONAUT).convert("RGB")] + [Image.open(p).convert("RGB") for p in PATTERNS]
    out = []
    for i in range(count):
        src = sources[0] if i % 4 else sources[1 + (i // 4) % len(PATTERNS)]
        w, h = src.size
        s = int(rng.integers(min(w, h) // 6, min(w, h) + 1))
        x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        crop = src.crop((x0, y0, x0 + s, y0 + s))
        k = int(rng.integers(0, 6))
        if k == 1:
            crop = ImageOps.invert(crop)
        elif k == 2:
            crop = Image.merge("RGB", crop.split()[::-1])
        elif k == 3:
            crop = ImageEnhance.Contrast(crop).enhance(float(rng.uniform(0.2, 3)))
        elif k == 4:
            crop = crop.rotate(float(rng.uniform(-180, 180)))
        elif k == 5:
            crop = ImageEnhance.Color(crop).enhance(float(rng.uniform(0, 4)))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(crop)
    return out


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def pick(model, pool, fmt, sizes, per_class, wrong_every, rng, used):
    """Encodes pool images (resized to one of `sizes`) as `fmt`, predicts them and picks a labelled
    set: per class up to `per_class` images the model predicts as that class (labelled so), and for
    every `wrong_every`-th class one more image labelled with it but predicted otherwise.
    Returns [(bytes, true, probs)]."""
    encoded, images = [], []
    for i, img in enumerate(pool):
        if i in used:
            encoded.append(None)
            images.append(None)
            continue
        size = sizes[i % len(sizes)]
        data = encode(img.resize(size, BILINEAR), fmt)
        encoded.append(data)
        images.append(decoded(data))
    index = [i for i, im in enumerate(images) if im is not None]
    probs = predict(model, [images[i] for i in index])
    by_class = {c: [] for c in range(CLASSES)}
    for j, i in enumerate(index):
        top2 = np.sort(probs[j])[-2:]
        if top2[1] - top2[0] >= MARGIN:
            by_class[int(probs[j].argmax())].append((i, probs[j]))
    chosen = []
    present = [c for c in range(CLASSES) if by_class[c]]
    for n, c in enumerate(present):
        for i, p in by_class[c][:per_class]:
            chosen.append((i, c, p))
            used.add(i)
    spare = [(i, p) for c in present for i, p in by_class[c][per_class:]]
    for n, c in enumerate(present):
        if n % wrong_every:
            continue
        for k, (i, p) in enumerate(spare):
            if int(p.argmax()) != c and i not in used:
                chosen.append((i, c, p))
                used.add(i)
                break
    order = rng.permutation(len(chosen))
    return [(encoded[chosen[k][0]], chosen[k][1], chosen[k][2]) for k in order]


def metrics(truth, pred):
    labels = list(range(CLASSES))
    p, r, f, s = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    return {
        "accuracy": accuracy_score(truth, pred),
        "balanced_accuracy": balanced_accuracy_score(truth, pred),
        "macro_f1": f1_score(truth, pred, average="macro"),
        "precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": s.tolist(),
        "confusion_matrix": confusion_matrix(truth, pred, labels=labels).tolist(),
        "confusion_matrix_normalized": confusion_matrix(truth, pred, labels=labels, normalize="true").tolist(),
    }


def case(name, args, entries):
    truth = [e["label"] for e in entries]
    pred = [e["predicted"] for e in entries]
    return {"name": name, "args": args, "images": entries, "metrics": metrics(truth, pred)}


def entry(path, label, probs):
    return {"path": path, "label": int(label), "predicted": int(np.argmax(probs)),
            "probabilities": [round(float(v), 7) for v in probs]}


def main():
    if not ASTRONAUT.is_file():
        sys.exit(f"missing {ASTRONAUT} (../shared/data)")
    torch.manual_seed(0)
    rng = np.random.default_rng(20261201)
    model = load_model()
    pool = candidates(rng, 900)
    used = set()

    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "rafdb" / "EmoLabel").mkdir(parents=True)
    (OUT / "rafdb" / "Image" / "aligned").mkdir(parents=True)

    # RAF-DB: test split (4 per class, plus wrong ones), train split (smaller).
    test = pick(model, pool, "jpg", [(112, 112)], 4, 2, rng, used)
    train = pick(model, pool, "jpg", [(112, 112)], 1, 3, rng, used)
    lines, cases = [], []
    for split, chosen in (("train", train), ("test", test)):
        entries = []
        for n, (data, label, probs) in enumerate(chosen, 1):
            stem = f"{split}_{n:04d}"
            rel = f"rafdb/Image/aligned/{stem}_aligned.jpg"
            (OUT / rel).write_bytes(data)
            lines.append(f"{stem}.jpg {label + 1}")
            entries.append(entry(rel, label, probs))
        cases.append(case(f"rafdb-{split}", ["rafdb", "--split", split], entries))
    (OUT / "rafdb" / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")

    # Class folders: PNG, a third of them at other sizes (resized like the authors' evaluation).
    folder_names = {c: n for c, n in enumerate(RAFDB)}
    folder_names[3] = "happy"
    folder_names[1] = "fear"
    chosen = pick(model, pool, "png", [(112, 112), (112, 112), (150, 150), (96, 128)], 3, 2, rng, used)
    counts = {}
    entries = []
    for data, label, probs in chosen:
        counts[label] = counts.get(label, 0) + 1
        folder = OUT / "folders" / folder_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        rel = f"folders/{folder_names[label]}/img{counts[label]:02d}.png"
        (OUT / rel).write_bytes(data)
        entries.append(entry(rel, label, probs))
    # The CLI lists folders and files sorted by name.
    entries.sort(key=lambda e: e["path"].encode())
    cases.append(case("folders", ["folders"], entries))

    # Lists over the images above: every other folder image and every third RAF-DB test image.
    listed = entries[::2] + cases[1]["images"][::3]
    csv = ["path,label"]
    tsv = []
    for k, e in enumerate(listed):
        label = RAFDB[e["label"]] if k % 2 else str(e["label"])
        csv.append(f"{e['path']},{label}")
        tsv.append(f"{e['path']}\t{e['label']}")
    (OUT / "list.csv").write_text("\n".join(csv) + "\n")
    (OUT / "list.tsv").write_text("\n".join(tsv) + "\n")
    cases.append(case("list-csv", ["list.csv"], listed))
    cases.append(case("list-tsv", ["list.tsv"], listed))

    meta = {"model": "weights/lfnsb7-seeded.pth", "classes": RAFDB,
            "versions": {"torch": torch.__version__, "scikit-learn": sklearn.__version__,
                         "numpy": np.__version__, "pillow": Image.__version__},
            "cases": cases}
    (OUT / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")
    for c in cases:
        m = c["metrics"]
        print(f"{c['name']:12s} n={len(c['images']):3d} acc={m['accuracy']:.4f} "
              f"bal={m['balanced_accuracy']:.4f} f1={m['macro_f1']:.4f} support={m['support']}")


if __name__ == "__main__":
    main()
