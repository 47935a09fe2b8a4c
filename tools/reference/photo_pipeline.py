#!/usr/bin/env python3
"""The whole-photo pipeline in PyTorch + OpenCV + scikit-image: decode -> detect -> align -> classify.

Written from /work/shared/spec/detection.md and the product's choices in issue 12; the truth the
Swift FaceAnalyzer is checked against (Tests/Fixtures/photos, tools/reference/make_photo_fixtures.py).

    .venv-reference/bin/python tools/reference/photo_pipeline.py PHOTO... [--detect-size 640]

Steps (every face in score order):
1. decode: PIL `Image.open(path).convert("RGB")`, as the product's PNG/JPEG decoders do;
2. detector input: s = min(1, detect_size / long side), size (round(w*s), round(h*s)) (Python's
   round, at least 1), `cv2.resize(INTER_LINEAR)` to that explicit size (none when s == 1), BGR,
   float32 minus (104, 117, 123), NCHW;
3. RetinaFace (`retinaface.py`, weights/retinaface-mobilenet0.25.pth) at that size; priors, decode
   with variances (0.1, 0.2) in float64, boxes and landmarks divided per axis by w'/w and h'/h,
   scores > threshold (0.6), greedy NMS at IoU 0.35 with +1 areas (`make_face_fixtures.decode_nms`);
4. alignment of the floating-point landmarks (not truncated): skimage `SimilarityTransform` to each
   of the five templates, the smallest summed point distance wins (`make_face_fixtures.best_template`),
   `cv2.warpAffine(original RGB photo, M, (112, 112))` (INTER_LINEAR, BORDER_CONSTANT 0);
5. classifier: each 112x112 crop through ToTensor + Normalize(ImageNet) in float32 (no resize), all
   faces of a photo in one batch through LFNSB-7 (weights/lfnsb7-seeded.pth); softmax; argmax.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import cv2
import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fer_models as fm  # noqa: E402
import retinaface as rf  # noqa: E402
from make_face_fixtures import best_template, decode_nms  # noqa: E402
from make_fixtures import MEAN, STD  # noqa: E402

REPO = HERE.parents[1]
DETECTOR_WEIGHTS = REPO / "weights" / "retinaface-mobilenet0.25.pth"
CLASSIFIER_WEIGHTS = REPO / "weights" / "lfnsb7-seeded.pth"
CROP = 112
DETECT_SIZE = 640
THRESHOLD = 0.6
NMS_IOU = 0.35


@dataclass
class Face:
    box: List[float]                 # x1, y1, x2, y2 in the original photo's pixels
    score: float
    landmarks: np.ndarray            # (5, 2) float64, original pixels; eyes, nose, mouth corners
    template: int = -1               # 0-based index of the chosen template
    template_error: float = 0.0      # its summed point distance (112x112 pixels)
    matrix: np.ndarray = None        # (2, 3) float64, photo -> crop
    crop: np.ndarray = None          # (112, 112, 3) uint8 RGB
    logits: np.ndarray = None        # (classes,) float32
    probabilities: np.ndarray = None  # (classes,) float32
    label: int = -1


@dataclass
class Result:
    width: int
    height: int
    input_width: int                 # detector input size
    input_height: int
    above_threshold: int             # anchors above the threshold before NMS
    faces: List[Face] = field(default_factory=list)


def decode(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, as PIL decodes the file."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def detector_size(width: int, height: int, detect_size: int = DETECT_SIZE):
    """(w', h'): the long side at most `detect_size`, never enlarged, Python's round per axis."""
    s = min(1.0, detect_size / max(width, height))
    if s >= 1.0:
        return width, height
    return max(1, round(width * s)), max(1, round(height * s))


def detector_input(rgb: np.ndarray, detect_size: int = DETECT_SIZE) -> np.ndarray:
    """[1, 3, h', w'] float32: resized (cv2 INTER_LINEAR) when the long side passes `detect_size`,
    BGR, minus (104, 117, 123)."""
    h, w = rgb.shape[:2]
    tw, th = detector_size(w, h, detect_size)
    if (tw, th) != (w, h):
        rgb = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_LINEAR)
    bgr = rgb[:, :, ::-1].astype(np.float32) - np.array(rf.MEAN_BGR, dtype=np.float32)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))[None]


def normalize(crops: np.ndarray) -> np.ndarray:
    """(N, 112, 112, 3) uint8 -> (N, 3, 112, 112) float32: p / 255, then (x - mean) / std, each a
    float32 operation (torchvision ToTensor + Normalize)."""
    x = crops.astype(np.float32) / np.float32(255)
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class Pipeline:
    """RetinaFace + LFNSB-7, both float32 on the CPU, in eval mode."""

    def __init__(self, detector: Path = DETECTOR_WEIGHTS, classifier: Path = CLASSIFIER_WEIGHTS):
        self.detector = rf.RetinaFace()
        self.detector.load_state_dict(rf.load_weights(detector), strict=True)
        self.detector.eval()
        ckpt = torch.load(classifier, map_location="cpu", weights_only=True)
        sd = ckpt["model_state_dict"] if "model_state_dict" in ckpt else ckpt
        self.classes = sd["fc.weight"].shape[0]
        self.classifier = fm.LFNSB2(self.classes)
        self.classifier.load_state_dict(sd, strict=True)
        self.classifier.eval()

    def detect(self, rgb: np.ndarray, detect_size: int = DETECT_SIZE, threshold: float = THRESHOLD):
        """Faces (box, score, landmarks) in score order, the detector input size and the number of
        anchors above the threshold."""
        h, w = rgb.shape[:2]
        x = detector_input(rgb, detect_size)
        ih, iw = x.shape[2:]
        with torch.no_grad():
            boxes, scores, lms = self.detector(torch.from_numpy(x))
        found, above = decode_nms(boxes[0].numpy(), scores[0].numpy(), lms[0].numpy(), ih, iw,
                                  iw / w, ih / h, threshold=threshold, iou=NMS_IOU)
        faces = [Face(box=f["box"], score=f["score"],
                      landmarks=np.array(f["landmarks"], np.float64).reshape(5, 2)) for f in found]
        return faces, (iw, ih), above

    @staticmethod
    def align(rgb: np.ndarray, face: Face) -> None:
        """Sets face.template, template_error, matrix and crop."""
        m, i, err = best_template(face.landmarks)
        face.matrix, face.template, face.template_error = m, int(i), float(err)
        face.crop = cv2.warpAffine(rgb, m, (CROP, CROP), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def classify(self, faces: List[Face]) -> None:
        """Sets logits, probabilities and label on every face; one batch for all of them."""
        if not faces:
            return
        x = torch.from_numpy(normalize(np.stack([f.crop for f in faces])))
        with torch.no_grad():
            logits = self.classifier(x)[0]
            probs = torch.softmax(logits, dim=1)
        for f, lg, p in zip(faces, logits.numpy(), probs.numpy()):
            f.logits, f.probabilities, f.label = lg, p, int(np.argmax(lg))

    def run(self, rgb: np.ndarray, detect_size: int = DETECT_SIZE, threshold: float = THRESHOLD) -> Result:
        faces, (iw, ih), above = self.detect(rgb, detect_size, threshold)
        for f in faces:
            self.align(rgb, f)
        self.classify(faces)
        return Result(rgb.shape[1], rgb.shape[0], iw, ih, above, faces)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--detect-size", type=int, default=DETECT_SIZE)
    ap.add_argument("--threshold", type=float, default=THRESHOLD)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    pipe = Pipeline()
    for path in a.photos:
        r = pipe.run(decode(path), a.detect_size, a.threshold)
        print(f"{path.name} {r.width}x{r.height}, detector input {r.input_width}x{r.input_height}: "
              f"{len(r.faces)} face(s)")
        for k, f in enumerate(r.faces):
            box = ",".join(f"{v:.1f}" for v in f.box)
            print(f"  face {k} ({box}) {f.score:.4f} template {f.template}: class {f.label} "
                  f"{f.probabilities[f.label]:.3f}")


if __name__ == "__main__":
    main()
