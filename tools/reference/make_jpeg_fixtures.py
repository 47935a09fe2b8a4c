#!/usr/bin/env python3
"""JPEG fixtures for Tests/FERImageTests that PIL cannot write: chroma samplings other than 4:4:4, 4:2:2
and 4:2:0 (2x4, 4x2, 3x1, 1x3, 1x4, different factors per component, grey at 2x2), arithmetic coding,
progressive files with exactly 100, 101 and 499 scans; and two large flat JPEGs (CMYK, grey) for the
bounded-memory tests. The files are written by libjpeg-turbo's cjpeg (Debian package
libjpeg-turbo-progs) from a PPM this script draws, or by PIL; what PIL makes of each is the expectation.
cjpeg writes at most 100 scans, so the 101- and 499-scan files repeat the 100-scan file's last scan (its
Huffman tables, SOS and data): a repeated first-pass AC scan is valid to libjpeg and changes nothing.

    .venv-reference/bin/python tools/reference/make_jpeg_fixtures.py   # writes Tests/Fixtures/images/jpeg

Output (see Tests/Fixtures/images/README.md):
    jpeg/inputs/<name>.jpg             the test files
    jpeg/expected/<name>.decoded.png   PIL's Image.open(f).convert('RGB'), stored losslessly as 8-bit RGB PNG
    jpeg/manifest.tsv                  name, input, width, height, FNV-1a 64 of PIL's decoded RGB bytes and of
                                       its resize((112, 112), BILINEAR)
    jpeg/large.tsv                     name, input, width, height, and the one RGB value PIL decodes every
                                       pixel of these flat images to (checked here)
Deterministic for a given cjpeg and Pillow (libjpeg-turbo 2.1.5's cjpeg, Pillow 13.0.0 with its bundled
libjpeg-turbo 3.2.0 were used). Needs numpy and pillow only.
"""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, features

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "images" / "jpeg"
BILINEAR = Image.Resampling.BILINEAR

# name, size, cjpeg options (the ones TurboJPEG's API refused: "Could not determine subsampling type")
SAMPLINGS = [
    ("s2x4", (37, 29), ["-sample", "2x4,1x1,1x1"]),
    ("s4x2", (37, 29), ["-sample", "4x2,1x1,1x1"]),
    ("s3x1", (37, 29), ["-sample", "3x1,1x1,1x1"]),
    ("s1x3", (29, 37), ["-sample", "1x3,1x1,1x1"]),
    ("s1x4", (29, 37), ["-sample", "1x4,1x1,1x1"]),
    ("s2x2-1x2-2x1", (37, 29), ["-sample", "2x2,1x2,2x1"]),
    ("s2x1-1x2-1x1", (37, 29), ["-sample", "2x1,1x2,1x1"]),
    ("s1x1-2x2-1x1", (37, 29), ["-sample", "1x1,2x2,1x1"]),
    ("s2x4-progressive", (53, 41), ["-sample", "2x4,1x1,1x1", "-progressive"]),
    ("s4x2-arithmetic", (53, 41), ["-sample", "4x2,1x1,1x1", "-arithmetic"]),
    ("grey-s2x2", (37, 29), ["-grayscale", "-sample", "2x2"]),
]


def scan_script(total):
    """A progressive scan script with exactly `total` scans: one DC scan, then the 63 AC coefficients of
    each component split into bands (Y one scan per coefficient, Cb and Cr sharing the rest)."""
    rest = total - 1 - 63
    assert 2 <= rest <= 126
    lines = ["0,1,2: 0 0 0 0;"] + [f"0: {k} {k} 0 0;" for k in range(1, 64)]
    for component, bands in ((1, rest // 2), (2, rest - rest // 2)):
        edges = np.linspace(1, 64, bands + 1).round().astype(int)
        lines += [f"{component}: {a} {b - 1} 0 0;" for a, b in zip(edges[:-1], edges[1:])]
    assert len(lines) == total
    return "\n".join(lines) + "\n"


def content(w, h, seed):
    """Colour ramps, a sine, hard-edged shapes and noise: chroma that changes at every scale, so that
    each sampling's upsampling shows (including at the odd right and bottom edges)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * x / (w - 1), 255 * y / (h - 1), 128 + 120 * np.sin(x / 2.3 + y / 3.1)], -1)
    img[(x + y) % 7 < 2] = [240, 30, 60]
    img[((x - w / 2) ** 2 + (y - h / 2) ** 2) < (min(w, h) / 4) ** 2] = [20, 90, 230]
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def repeat_last_scan(jpeg, extra):
    """`jpeg` with its last scan (the DHT segments right before its SOS, the SOS and its entropy-coded
    data) repeated `extra` more times, right after itself."""
    units, pos, start = [], 2, None  # units: (start of the DHTs, end of the scan data)
    while jpeg[pos + 1] != 0xD9:
        marker, length = jpeg[pos + 1], int.from_bytes(jpeg[pos + 2:pos + 4], "big")
        if marker == 0xC4 and start is None:
            start = pos
        if marker != 0xDA:
            if marker != 0xC4:
                start = None
            pos += 2 + length
            continue
        begin = pos if start is None else start
        pos += 2 + length
        while not (jpeg[pos] == 0xFF and jpeg[pos + 1] not in (0x00, *range(0xD0, 0xD8))):
            pos += 1
        units.append((begin, pos))
        start = None
    begin, end = units[-1]
    return jpeg[:end] + jpeg[begin:end] * extra + jpeg[end:]


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def cjpeg(ppm, out, options, tmp):
    subprocess.run(["cjpeg", "-quality", "90", *options, "-outfile", str(out), str(ppm)], check=True, cwd=tmp)


def main():
    if shutil.which("cjpeg") is None:
        sys.exit("cjpeg not found: apt-get install libjpeg-turbo-progs")
    version = subprocess.run(["cjpeg", "-version"], capture_output=True, text=True).stderr.strip()
    print(f"{version}; pillow {Image.__version__} with libjpeg-turbo {features.version('libjpeg_turbo')}")
    for sub in ("inputs", "expected"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    rows, large = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [(name, size, options) for name, size, options in SAMPLINGS]
        (tmp / "scans100.txt").write_text(scan_script(100))
        cases.append(("progressive-100-scans", (45, 33), ["-scans", "scans100.txt"]))
        cases += [(f"progressive-{n}-scans", (45, 33), n - 100) for n in (101, 499)]
        for seed, (name, (w, h), options) in enumerate(cases):
            path = OUT / "inputs" / f"{name}.jpg"
            if isinstance(options, int):
                path.write_bytes(repeat_last_scan((OUT / "inputs" / "progressive-100-scans.jpg").read_bytes(), options))
            else:
                ppm = tmp / f"{name}.ppm"
                Image.fromarray(content(w, h, seed), "RGB").save(ppm)
                cjpeg(ppm, path, options, tmp)
            with Image.open(path) as im:
                assert im.size == (w, h), (name, im.size)
                decoded = im.convert("RGB")
            arr = np.asarray(decoded)
            Image.fromarray(arr, "RGB").save(OUT / "expected" / f"{name}.decoded.png", optimize=True)
            resized = np.asarray(decoded.resize((112, 112), BILINEAR))
            rows.append([name, f"inputs/{name}.jpg", str(w), str(h), fnv1a64(arr.tobytes()), fnv1a64(resized.tobytes())])
            print(f"{name}: {path.stat().st_size} bytes")

        # Large flat images for the memory tests: what PIL decodes must be one value everywhere.
        for name, mode, size, colour in (("large-cmyk-2048x1024", "CMYK", (2048, 1024), (40, 90, 150, 30)),
                                         ("large-grey-4096x2048", "L", (4096, 2048), 77)):
            path = OUT / "inputs" / f"{name}.jpg"
            Image.new(mode, size, colour).save(path, quality=90, optimize=True)
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
            first = arr[0, 0]
            assert (arr == first).all(), f"{name} does not decode to one value"
            large.append([name, f"inputs/{name}.jpg", str(size[0]), str(size[1]), *map(str, first)])
            print(f"{name}: {path.stat().st_size} bytes, every pixel {tuple(first)}")

    header = f"# made by tools/reference/make_jpeg_fixtures.py with {version}, pillow {Image.__version__}\n"
    (OUT / "manifest.tsv").write_text(header + "".join("\t".join(r) + "\n" for r in rows))
    (OUT / "large.tsv").write_text(header + "".join("\t".join(r) + "\n" for r in large))


if __name__ == "__main__":
    main()
