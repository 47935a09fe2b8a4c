#!/usr/bin/env python3
"""Writes Tests/Fixtures/images/opencv-reading.tsv: how OpenCV's imread reads each PNG of the image
fixtures (Tests/Fixtures/images/manifest.tsv), for the Swift decoder's PixelReading.opencv, which is how
photos go to the face detector (the LFNSB authors detected on cv2.imread's pixels).

    .venv-reference/bin/python tools/reference/make_opencv_reading_fixtures.py

Per PNG: name, FNV-1a 64 of cv2.imread(path, cv2.IMREAD_COLOR) turned to RGB (height x width x 3 bytes),
and whether that equals PIL's Image.open(path).convert('RGB'). Deterministic; versions in the header.
"""

from pathlib import Path

import cv2
import numpy as np
import PIL
from PIL import Image

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent.parent / "Tests" / "Fixtures" / "images"


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def main() -> None:
    rows = [f"# opencv-python-headless {cv2.__version__}, Pillow {PIL.__version__}",
            "# name\topencv_rgb_fnv1a64\tsame_as_pil"]
    for line in (IMAGES / "manifest.tsv").read_text().splitlines():
        if line.startswith("#"):
            continue
        name, rel = line.split("\t")[:2]
        if not rel.endswith(".png") or ":" in rel:  # only the committed inputs
            continue
        path = str(IMAGES / rel)
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        pil = np.asarray(Image.open(path).convert("RGB"))
        rows.append(f"{name}\t{fnv1a64(rgb.tobytes())}\t{'yes' if np.array_equal(rgb, pil) else 'no'}")
    (IMAGES / "opencv-reading.tsv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
