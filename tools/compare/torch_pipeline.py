#!/usr/bin/env python3
"""The PyTorch + OpenCV + scikit-image peer of `fer-infer PHOTO` (issue 12, "Speed"):
tools/reference/photo_pipeline.py, the reference pipeline, imported as it is (decode with PIL,
detect with RetinaFace at long side --detect-size, align every face with skimage's
SimilarityTransform and cv2.warpAffine, classify all crops in one LFNSB batch), run on one thread
with its stages timed separately.

Two differences from running photo_pipeline.py itself, both in the peer's favour:
- one thread for PyTorch (intra- and inter-op) and OpenCV, like ours;
- the detector's priors are computed once per input size (make_face_fixtures.priors memoised), as a
  pipeline serving many photos would, not once per photo (about 10 ms of Python loops at 640x443).

As a command it is the cold-start peer: a new process that imports everything, loads both models,
runs one photo and prints one line per face (or one JSON object with --json):

    .venv-compare/bin/python tools/compare/torch_pipeline.py .downloads/photos/t1.jpg
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reference"))
import make_face_fixtures  # noqa: E402
import photo_pipeline  # noqa: E402

make_face_fixtures.priors = functools.lru_cache(maxsize=8)(make_face_fixtures.priors)

STAGES = ("decode", "detect_network", "detect", "align", "classify", "total")
LABELS_7 = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]   # RAF-DB order


def set_one_thread():
    """One thread for PyTorch (intra- and inter-op) and OpenCV."""
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    cv2.setNumThreads(1)


class TimedPipeline:
    """photo_pipeline.Pipeline with both models loaded once (`load_ms`) and a stage-timed `run`."""

    def __init__(self, detector=photo_pipeline.DETECTOR_WEIGHTS, checkpoint=photo_pipeline.CLASSIFIER_WEIGHTS,
                 detect_size=photo_pipeline.DETECT_SIZE):
        t0 = time.perf_counter()
        self.pipe = photo_pipeline.Pipeline(Path(detector), Path(checkpoint))
        self.load_ms = (time.perf_counter() - t0) * 1000
        self.detect_size = detect_size
        self._network = [0, 0]
        self.pipe.detector.register_forward_pre_hook(lambda *_: self._network.__setitem__(0, time.perf_counter_ns()))
        self.pipe.detector.register_forward_hook(lambda *_: self._network.__setitem__(1, time.perf_counter_ns()))

    def run(self, path, times=None):
        """(faces, detector input (w, h)) of the photo at `path`; `times`, if given, gets each stage's
        ms (keys STAGES; detect_network is the detector's forward pass, part of detect)."""
        t0 = time.perf_counter_ns()
        rgb = photo_pipeline.decode(path)
        t1 = time.perf_counter_ns()
        faces, input_size, _ = self.pipe.detect(rgb, self.detect_size)
        t2 = time.perf_counter_ns()
        for face in faces:
            self.pipe.align(rgb, face)
        t3 = time.perf_counter_ns()
        self.pipe.classify(faces)
        t4 = time.perf_counter_ns()
        if times is not None:
            spans = {"decode": (t0, t1), "detect_network": tuple(self._network), "detect": (t1, t2),
                     "align": (t2, t3), "classify": (t3, t4), "total": (t0, t4)}
            times.update({k: (b - a) / 1e6 for k, (a, b) in spans.items()})
        return faces, input_size

    def label(self, index):
        return LABELS_7[index] if self.pipe.classes == 7 else str(index)


def face_record(face, name):
    """A face as `fer-infer --json` gives it (the fields the comparison reads)."""
    return {"box": [float(v) for v in face.box], "score": float(face.score),
            "landmarks": face.landmarks.tolist(), "label": name, "index": int(face.label),
            "probability": float(face.probabilities[face.label]), "logits": face.logits.tolist()}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Detect, align and classify every face of a photo with "
                                     "tools/reference/photo_pipeline.py on one thread.")
    parser.add_argument("photo")
    parser.add_argument("--detect-size", type=int, default=photo_pipeline.DETECT_SIZE)
    parser.add_argument("--detector", default=str(photo_pipeline.DETECTOR_WEIGHTS))
    parser.add_argument("--checkpoint", default=str(photo_pipeline.CLASSIFIER_WEIGHTS))
    parser.add_argument("--json", action="store_true", help="one JSON object: input, faces")
    args = parser.parse_args(argv)
    set_one_thread()
    timed = TimedPipeline(args.detector, args.checkpoint, args.detect_size)
    try:
        faces, _ = timed.run(args.photo)
    except OSError as error:         # PIL's UnidentifiedImageError is an OSError too
        print(f"error: {args.photo}: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"input": args.photo, "faces": [face_record(f, timed.label(f.label)) for f in faces]}))
        return 0
    if not faces:
        print(f"{args.photo}: no face")
    for k, f in enumerate(faces):
        box = ",".join(f"{v:.0f}" for v in f.box)
        print(f"{args.photo} face {k + 1} ({box}) {f.score:.2f}: {timed.label(f.label)} "
              f"{f.probabilities[f.label]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
