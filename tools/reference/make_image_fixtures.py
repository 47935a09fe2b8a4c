#!/usr/bin/env python3
"""Image fixtures for Tests/FERImageTests: PNG/JPEG inputs made with PIL (and a tiny raw PNG writer
for what PIL cannot write: 2/4-bit grey, 16-bit grey+alpha/RGB/RGBA, tRNS, Adam7 interlacing), and
what PIL + torchvision make of them.

    /tmp/refvenv/bin/python tools/reference/make_image_fixtures.py            # writes Tests/Fixtures/images
    /tmp/refvenv/bin/python tools/reference/make_image_fixtures.py --sweep DIR  # optional big resize sweep

Output (see Tests/Fixtures/images/README.md):
    inputs/<name>.png|.jpg          the test images
    expected/<name>.decoded.png     PIL's Image.open(f).convert('RGB'), stored losslessly as 8-bit RGB PNG
                                    (not for 8-bit RGB PNG inputs: their pixels are the file's; the hash checks them)
    expected/<name>.resized.png     ... .resize((112, 112), Image.BILINEAR) (torchvision's Resize((112,112)));
                                    for rgb-* and STORE_RESIZED, the others through the hash
    expected/resize/<name>.<W>x<H>.png   PIL bilinear resize of a decoded input to other sizes
    expected/grey2-interlaced-13x11.decoded.npy, rgb-3x2.resized.npy   uint8 arrays (cross-check of the PNGs)
    expected/normalize-lut.npy      float32 (3, 256): torchvision ToTensor()+Normalize(ImageNet) of every value
    manifest.tsv                    name, input, PIL mode, width, height, and FNV-1a 64 hashes of the decoded
                                    and resized bytes and of torchvision's (3,112,112) float32 tensor (LE bytes)
Inputs named shared:... and downloads:... are read at test time from ../shared and .downloads.

Versions: pillow 13.0.0, torch 2.13.0, torchvision 0.28.0 (installed with --no-deps; its CUDA-linked
_C extension does not load against the CPU torch, so torchvision._meta_registrations, which only
registers fake kernels for torchvision.ops, is stubbed; the transforms are pure Python).
"""
import argparse
import io
import struct
import sys
import types
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision import transforms  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "images"
SHARED = ROOT.parent / "shared"
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
BILINEAR = Image.Resampling.BILINEAR
TRANSFORM = transforms.Compose([transforms.Resize((112, 112)), transforms.ToTensor(),
                                transforms.Normalize(mean=MEAN, std=STD)])


# ---------------------------------------------------------------- synthetic content

def content(w, h, seed, noise=None):
    """Smooth gradients, a disc and a bar with sharp edges, a little noise: varied but compressible."""
    rng = np.random.default_rng(seed)
    if noise is None:
        noise = 1.5 if w * h <= 4096 else 0.0
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * (x + 0.5) / w
    g = 255 * (y + 0.5) / h
    b = 127.5 + 127.5 * np.sin((x + 2 * y) / max(3.0, (w + h) / 12))
    img = np.stack([r, g, b], -1)
    disc = (x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(w, h) * 0.25) ** 2
    img[disc] = [250, 20, 120]
    img[(x > w * 0.2) & (x < w * 0.3)] = [10, 200, 30]
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- raw PNG writer

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filter_rows(rows, bpp):
    """Filters each row with type (row index % 5): None, Sub, Up, Average, Paeth."""
    out, prev = [], bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        t = i % 5
        f = bytearray(len(row))
        for j, v in enumerate(row):
            a = row[j - bpp] if j >= bpp else 0
            b = prev[j]
            c = prev[j - bpp] if j >= bpp else 0
            pred = (0, a, b, (a + b) // 2, paeth(a, b, c))[t]
            f[j] = (v - pred) & 0xFF
        out.append(bytes([t]) + bytes(f))
        prev = row
    return b"".join(out)


def pack_rows(samples, bits):
    """samples: (h, w*channels) ints -> list of packed big-endian rows."""
    rows = []
    for line in samples:
        if bits == 16:
            rows.append(np.asarray(line, dtype=">u2").tobytes())
        elif bits == 8:
            rows.append(np.asarray(line, dtype=np.uint8).tobytes())
        else:
            per = 8 // bits
            padded = list(line) + [0] * ((-len(line)) % per)
            rows.append(bytes(sum(int(v) << (8 - bits * (k + 1)) for k, v in enumerate(padded[i:i + per]))
                              for i in range(0, len(padded), per)))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def raw_png(samples, bits, color_type, extra=b"", interlace=False):
    """samples: (h, w, channels) array of sample values (indices for palette)."""
    h, w, ch = samples.shape
    bpp = max(1, ch * bits // 8)
    if interlace:
        data = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                data += filter_rows(pack_rows(sub.reshape(sub.shape[0], -1), bits), bpp)
    else:
        data = filter_rows(pack_rows(samples.reshape(h, -1), bits), bpp)
    ihdr = struct.pack(">IIBBBBB", w, h, bits, color_type, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(data, 9))
            + chunk(b"IEND", b""))


# ---------------------------------------------------------------- the cases

def pil_bytes(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def cases():
    """(name, file bytes, extension) for every synthetic input."""
    c = []
    rgb = lambda w, h, s: Image.fromarray(content(w, h, s), "RGB")  # noqa: E731
    # RGB 8-bit at sizes that exercise the resizer: up, down, odd, non-square, 1 pixel, identity.
    for w, h in [(64, 48), (300, 200), (37, 113), (1, 1), (112, 112), (113, 111), (224, 224), (250, 7), (3, 2)]:
        c.append((f"rgb-{w}x{h}", pil_bytes(rgb(w, h, w * 1000 + h), "PNG", optimize=True), "png"))
    base = content(40, 30, 7)
    grey = np.asarray(Image.fromarray(base, "RGB").convert("L"))
    c.append(("grey-40x30", pil_bytes(Image.fromarray(grey, "L"), "PNG"), "png"))
    c.append(("grey1-40x30", pil_bytes(Image.fromarray(grey).convert("1"), "PNG"), "png"))  # dithered 1-bit
    for bits in (2, 4):
        s = (grey.astype(int) >> (8 - bits))[..., None]
        c.append((f"grey{bits}-40x30", raw_png(s, bits, 0), "png"))
    c.append(("grey4-interlaced-40x30", raw_png((grey.astype(int) >> 4)[..., None], 4, 0, interlace=True), "png"))
    alpha = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    c.append(("greyalpha-40x30", pil_bytes(Image.fromarray(np.dstack([grey, alpha]), "LA"), "PNG"), "png"))
    c.append(("rgba-40x30", pil_bytes(Image.fromarray(np.dstack([base, alpha]), "RGBA"), "PNG"), "png"))
    pal = Image.fromarray(base, "RGB").quantize(colors=200, dither=Image.Dither.NONE)
    c.append(("palette-40x30", pil_bytes(pal, "PNG"), "png"))
    pal16 = Image.fromarray(base, "RGB").quantize(colors=16, dither=Image.Dither.NONE)
    c.append(("palette4-40x30", pil_bytes(pal16, "PNG", bits=4), "png"))
    pal2 = Image.fromarray(base, "RGB").quantize(colors=2)
    c.append(("palette1-40x30", pil_bytes(pal2, "PNG", bits=1), "png"))
    # palette + tRNS, with indices past the end of a short PLTE (PIL shows them as black)
    idx = (np.arange(40 * 30).reshape(30, 40, 1) * 7) % 12
    plte = bytes(int(v) for v in np.arange(30) * 8 + 3)
    c.append(("palette-trns-40x30", raw_png(idx, 8, 3, chunk(b"PLTE", plte) + chunk(b"tRNS", bytes([0, 64, 128]))), "png"))
    c.append(("palette-trns-interlaced-40x30",
              raw_png(idx, 8, 3, chunk(b"PLTE", plte) + chunk(b"tRNS", bytes([0, 64, 128])), interlace=True), "png"))
    # grey / RGB with tRNS (PIL keeps mode L / RGB; transparency is ignored by convert('RGB'))
    c.append(("grey-trns-40x30", raw_png(grey[..., None], 8, 0, chunk(b"tRNS", b"\x00\x40")), "png"))
    c.append(("rgb-trns-40x30", raw_png(base, 8, 2, chunk(b"tRNS", b"\x00\x40\x00\x40\x00\x40")), "png"))
    # 16-bit: grey (PIL mode I;16, convert clips to 255), grey+alpha, RGB, RGBA (high byte)
    g16 = (np.arange(40 * 30).reshape(30, 40, 1) * 1103) % 65536
    c.append(("grey16-40x30", raw_png(g16, 16, 0), "png"))
    c.append(("grey16-small-40x30", raw_png(g16 % 400, 16, 0), "png"))
    c.append(("greyalpha16-40x30", raw_png(np.dstack([g16[..., 0], (g16[..., 0] * 3) % 65536]), 16, 4), "png"))
    rgb16 = base.astype(np.int64) * 257 + np.arange(40)[None, :, None] * 3
    c.append(("rgb16-40x30", raw_png(rgb16 % 65536, 16, 2), "png"))
    c.append(("rgba16-40x30", raw_png(np.dstack([rgb16 % 65536, g16[..., 0]]), 16, 6), "png"))
    c.append(("rgba16-interlaced-40x30", raw_png(np.dstack([rgb16 % 65536, g16[..., 0]]), 16, 6, interlace=True), "png"))
    c.append(("rgb-interlaced-37x29", raw_png(content(37, 29, 3), 8, 2, interlace=True), "png"))
    c.append(("grey2-interlaced-13x11", raw_png((grey[:11, :13].astype(int) >> 6)[..., None], 2, 0, interlace=True), "png"))
    # JPEG: baseline 4:2:0 / 4:2:2 / 4:4:4 at odd sizes, progressive, grey, CMYK (Adobe, inverted by PIL)
    j = rgb(75, 51, 11)
    c.append(("jpeg-420-75x51", pil_bytes(j, "JPEG", quality=90), "jpg"))
    c.append(("jpeg-422-75x51", pil_bytes(j, "JPEG", quality=90, subsampling=1), "jpg"))
    c.append(("jpeg-444-75x51", pil_bytes(j, "JPEG", quality=90, subsampling=0), "jpg"))
    c.append(("jpeg-progressive-61x47", pil_bytes(rgb(61, 47, 12), "JPEG", quality=85, progressive=True), "jpg"))
    c.append(("jpeg-big-130x90", pil_bytes(rgb(130, 90, 13), "JPEG", quality=80), "jpg"))
    c.append(("jpeg-grey-45x33", pil_bytes(rgb(45, 33, 14).convert("L"), "JPEG", quality=90), "jpg"))
    c.append(("jpeg-cmyk-45x33", pil_bytes(rgb(45, 33, 15).convert("CMYK"), "JPEG", quality=90), "jpg"))
    c.append(("jpeg-progressive-grey-45x33",
              pil_bytes(rgb(45, 33, 16).convert("L"), "JPEG", quality=90, progressive=True), "jpg"))
    # A PNG with a .jpg extension: decoded by content, the extension mismatch is a note.
    c.append(("png-named-jpg-20x10", pil_bytes(rgb(20, 10, 17), "PNG"), "jpg"))
    return c


# Resized pixels are stored for these (and every rgb-*): the resizer does not depend on the source
# format, so the other cases are checked through the hash in manifest.tsv.
STORE_RESIZED = {"jpeg-420-75x51", "jpeg-big-130x90", "astronaut", "grey16-40x30"}

# 17x73 and 17x72 sit either side of Pillow's pass-order rule (vertical first when the height shrinks by
# more than twice as many pixels as the width: 113 - 73 = 2 * (37 - 17) is horizontal first, 72 vertical).
RESIZES = [("rgb-37x113", [(5, 11), (1, 1), (200, 9), (37, 1), (74, 226), (17, 73), (17, 72)]),
           ("rgb-300x200", [(7, 5), (299, 13), (150, 100)]),
           ("rgb-3x2", [(16, 16), (1, 7)])]


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def fnv1a64_np(arr):
    return fnv1a64(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())


def save_rgb_png(arr, path):
    Image.fromarray(arr, "RGB").save(path, format="PNG", optimize=True)
    assert np.array_equal(np.asarray(Image.open(path)), arr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", help="also write a big random resize sweep into this directory (not committed)")
    args = ap.parse_args()
    print(f"pillow {Image.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}")
    (OUT / "inputs").mkdir(parents=True, exist_ok=True)
    (OUT / "expected" / "resize").mkdir(parents=True, exist_ok=True)
    manifest = ["# name\tinput\tpil_mode\twidth\theight\tdecoded_fnv1a64\tresized_fnv1a64\ttensor_fnv1a64"]
    decoded_of = {}

    def add(name, path, rel, store_decoded=True):
        with Image.open(path) as im:
            mode = im.mode
            rgb = im.convert("RGB")
        dec = np.asarray(rgb)
        res = np.asarray(rgb.resize((112, 112), BILINEAR))
        # torchvision's Resize on a PIL image must be exactly PIL's bilinear resize
        assert np.array_equal(np.asarray(transforms.Resize((112, 112))(rgb)), res), name
        tensor = TRANSFORM(rgb).numpy()
        assert tensor.dtype == np.float32 and tensor.shape == (3, 112, 112)
        decoded_of[name] = rgb
        if store_decoded and (mode != "RGB" or not str(path).endswith(".png")):
            save_rgb_png(dec, OUT / "expected" / f"{name}.decoded.png")
        if name.startswith("rgb-") or name in STORE_RESIZED:
            save_rgb_png(res, OUT / "expected" / f"{name}.resized.png")
        manifest.append(f"{name}\t{rel}\t{mode}\t{rgb.width}\t{rgb.height}\t{fnv1a64_np(dec)}\t{fnv1a64_np(res)}\t"
                        f"{fnv1a64(tensor.astype('<f4').tobytes())}")
        print(f"{name:32s} {mode:5s} {rgb.width}x{rgb.height}")

    for name, data, ext in cases():
        path = OUT / "inputs" / f"{name}.{ext}"
        path.write_bytes(data)
        add(name, path, f"inputs/{name}.{ext}")
    add("astronaut", SHARED / "data" / "images" / "astronaut.png", "shared:data/images/astronaut.png", False)
    sample = ROOT / ".downloads" / "samples" / "Tom_Hanks_54745.png"
    if sample.exists():
        add("tom-hanks", sample, "downloads:samples/Tom_Hanks_54745.png", False)
    else:
        print("warning: .downloads/samples/Tom_Hanks_54745.png missing (run tools/setup); not in manifest")

    for name, sizes in RESIZES:
        for w, h in sizes:
            save_rgb_png(np.asarray(decoded_of[name].resize((w, h), BILINEAR)),
                         OUT / "expected" / "resize" / f"{name}.{w}x{h}.png")
    # uint8 .npy cross-checks of the PNG-stored expectations
    np.save(OUT / "expected" / "grey2-interlaced-13x11.decoded.npy", np.asarray(decoded_of["grey2-interlaced-13x11"]))
    np.save(OUT / "expected" / "rgb-3x2.resized.npy", np.asarray(decoded_of["rgb-3x2"].resize((112, 112), BILINEAR)))

    # Normalisation: every 8-bit value per channel through ToTensor + Normalize.
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1).reshape(16, 16, 3)
    t = transforms.Normalize(mean=MEAN, std=STD)(transforms.ToTensor()(Image.fromarray(ramp, "RGB")))
    lut = t.numpy().reshape(3, 256).astype(np.float32)
    x = np.arange(256, dtype=np.float32) / np.float32(255)
    mine = (x[None, :] - np.array(MEAN, np.float32)[:, None]) / np.array(STD, np.float32)[:, None]
    print("LUT equals float32 (p/255 - mean)/std bit for bit:", np.array_equal(mine.astype(np.float32), lut))
    np.save(OUT / "expected" / "normalize-lut.npy", lut)

    (OUT / "manifest.tsv").write_text("\n".join(manifest) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(manifest) - 1} cases, {total / 1024:.0f} KiB under {OUT.relative_to(ROOT)}")

    if args.sweep:
        sweep(Path(args.sweep))


def sweep(out):
    """Many random sizes (1..700 px) resized to random targets (1..300 px): raw RGB files for a local run
    of the FERIMAGE_SWEEP test (see Tests/Fixtures/images/README.md). Format per case: one PNG source
    <i>.src.png and the expected <i>.<W>x<H>.png."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    for i in range(300):
        w, h = (int(v) for v in rng.integers(1, 700, 2))
        tw, th = (int(v) for v in rng.integers(1, 300, 2))
        if i % 3 == 0:
            tw, th = 112, 112
        src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if i % 2 else content(w, h, i, noise=40)
        img = Image.fromarray(src, "RGB")
        img.save(out / f"{i}.src.png")
        img.resize((tw, th), BILINEAR).save(out / f"{i}.{tw}x{th}.png")
    print(f"sweep: 300 cases in {out}")


if __name__ == "__main__":
    main()
