#!/usr/bin/env python3
"""RetinaFace (MobileNet-0.25) reference outputs for the Swift detector tests.

    .venv-reference/bin/python tools/reference/make_retinaface_fixtures.py

Reads weights/retinaface-mobilenet0.25.pth (checked against its sha256) and
../shared/data/images/astronaut.png; writes Tests/Fixtures/retinaface/ (see the README.md it
writes there). The network is our own definition in tools/reference/retinaface.py.
Deterministic: fixed seeds, one CPU thread; running it twice gives byte-identical files.
"""

from __future__ import annotations

import shutil
import sys
import zlib
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import retinaface as rf  # noqa: E402

REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
OUT = REPO / "Tests" / "Fixtures" / "retinaface"
WEIGHTS = REPO / "weights" / "retinaface-mobilenet0.25.pth"
ASTRONAUT = SHARED / "data" / "images" / "astronaut.png"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

# (H, W, batch); sample 0 of 320x320 is the astronaut photo, every other sample seeded noise.
SIZES = ((320, 320, 2), (443, 640, 1), (75, 101, 1))
STAGES_AT = (75, 101)


def log(*a):
    print(*a, flush=True)


def gen(tag: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(tag.encode()))


def random_input(h: int, w: int, tag: str) -> np.ndarray:
    """[3, H, W]: uniform(0, 255) 'BGR pixel values' minus the mean, as a detector sees them."""
    x = torch.rand((3, h, w), generator=gen(tag), dtype=torch.float32) * 255.0
    x = x - torch.tensor(rf.MEAN_BGR, dtype=torch.float32).view(3, 1, 1)
    return x.numpy()


def astronaut_input(h: int, w: int):
    """[3, H, W] from astronaut.png: PIL RGB -> cv2.resize INTER_LINEAR -> BGR -> float32 - mean.
    Also returns the resize factor (the photo is square, so one factor serves both axes)."""
    rgb = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    bgr = np.ascontiguousarray(resized[:, :, ::-1]).astype(np.float32)
    bgr -= np.array(rf.MEAN_BGR, dtype=np.float32)
    assert rgb.shape[0] == rgb.shape[1] and h == w
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)), w / rgb.shape[1], rgb.shape


def original_size_check(model, shape):
    """The spec's figure: the astronaut at its original size gives one face near (177, 56, 270, 176)."""
    rgb = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    bgr = rgb[:, :, ::-1].astype(np.float32) - np.array(rf.MEAN_BGR, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        b, s, l = model(x)
    faces = rf.detect(b[0], s[0], l[0], shape[0], shape[1])
    assert len(faces) == 1, faces
    box = faces[0]["box"]
    assert max(abs(u - v) for u, v in zip(box, (177, 56, 270, 176))) < 1.0, box
    log(f"  astronaut at its original size (not stored): 1 face, score {faces[0]['score']:.4f}, "
        f"box ({', '.join(f'{v:.1f}' for v in box)}) (spec: near (177, 56, 270, 176))")
    return faces[0]


def save(path: Path, a) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(a, torch.Tensor):
        a = a.detach().numpy()
    a = np.ascontiguousarray(a, dtype=np.float32)
    np.save(path, a)
    return f"{path.relative_to(OUT)} {list(a.shape)}"


def main():
    sd = rf.load_weights(WEIGHTS)
    model = rf.RetinaFace()
    model.load_state_dict(sd, strict=True)
    model.eval()
    m64 = rf.RetinaFace().double()
    m64.load_state_dict(sd, strict=True)
    m64.eval()

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    facts = OrderedDict()
    detection = None
    for h, w, n in SIZES:
        name = f"{h}x{w}"
        samples, resize, orig = [], None, None
        for i in range(n):
            if (h, w) == (320, 320) and i == 0:
                x, resize, orig = astronaut_input(h, w)
            else:
                x = random_input(h, w, f"retinaface-input:{name}:{i}")
            samples.append(x)
        x = np.stack(samples).astype(np.float32)
        log(save(OUT / f"input-{name}.npy", x))
        with torch.no_grad():
            (boxes, scores, lms), stages = model.forward_with_stages(torch.from_numpy(x))
            (b64, s64, l64), _ = m64.forward_with_stages(torch.from_numpy(x).double())
        levels = [tuple(stages[f"ssh{k}"].shape[2:]) for k in (1, 2, 3)]
        assert levels == rf.feature_sizes(h, w), (levels, rf.feature_sizes(h, w))
        a = 2 * sum(r * c for r, c in levels)
        assert boxes.shape == (n, a, 4) and scores.shape == (n, a, 2) and lms.shape == (n, a, 10)
        assert rf.priors(h, w).shape[0] == a
        diff = max((b64 - boxes.double()).abs().max().item(), (s64 - scores.double()).abs().max().item(),
                   (l64 - lms.double()).abs().max().item())
        facts[name] = OrderedDict(batch=n, levels=levels, anchors=a, fp64_diff=diff)
        log(save(OUT / f"{name}.boxes.npy", boxes))
        log(save(OUT / f"{name}.scores.npy", scores))
        log(save(OUT / f"{name}.landmarks.npy", lms))
        log(f"  {name}: levels {levels}, A = {a}, max |fp32 - fp64| {diff:.2e}")
        if (h, w) == STAGES_AT:
            for sname, t in stages.items():
                log(save(OUT / "stages" / name / f"{sname}.npy", t))
        if (h, w) == (320, 320):
            faces = rf.detect(boxes[0], scores[0], lms[0], h, w, resize=resize)
            assert len(faces) == 1 and faces[0]["score"] > 0.6, faces
            f = faces[0]
            net_box = [v * resize for v in f["box"]]
            log(f"  astronaut (512x512 resized to 320x320, factor {resize}): {len(faces)} face, "
                f"score {f['score']:.4f}, box in the 320x320 input "
                f"({', '.join(f'{v:.1f}' for v in net_box)}), in the original "
                f"({', '.join(f'{v:.1f}' for v in f['box'])}); landmarks (original) "
                f"{', '.join(f'{v:.1f}' for v in f['landmarks'])}")
            noise = rf.detect(boxes[1], scores[1], lms[1], h, w)
            log(f"  random sample of 320x320: {len(noise)} faces above 0.6")
            full = original_size_check(model, orig)
            detection = (f, net_box, full)

    write_readme(facts, detection)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    log(f"wrote {OUT.relative_to(REPO)}: {total / 1e6:.2f} MB")


def write_readme(facts, detection):
    f, net_box, full = detection
    lines = [
        "# RetinaFace reference outputs",
        "",
        "Made by `tools/reference/make_retinaface_fixtures.py` (deterministic) with our PyTorch",
        "definition `tools/reference/retinaface.py` and `weights/retinaface-mobilenet0.25.pth`",
        "(sha256 2979b33f...5220). All files are float32, C order.",
        "",
        "- `input-<H>x<W>.npy` [N, 3, H, W]: what the network sees, pixel values in BGR order minus",
        "  (104, 117, 123), not divided by anything. Sample 0 of `input-320x320.npy` is",
        "  `../shared/data/images/astronaut.png` (512x512, PIL `convert('RGB')`, `cv2.resize` to 320x320",
        "  with INTER_LINEAR, RGB -> BGR, float32, minus the mean); every other sample is seeded",
        "  uniform(0, 255) minus the mean.",
        "- `<H>x<W>.boxes.npy` [N, A, 4]: raw box regressions (before decoding with the priors).",
        "- `<H>x<W>.scores.npy` [N, A, 2]: softmax over the two class values; index 1 = face.",
        "- `<H>x<W>.landmarks.npy` [N, A, 10]: raw landmark regressions.",
        "  Anchor order: level 1 (stride 8), 2 (16), 3 (32); within a level row, column, then the",
        "  two anchor sizes.",
        "- `stages/75x101/<name>.npy` [1, C, h, w]: intermediate activations for `input-75x101.npy`:",
        "  `body.stage1` (C1, 64 ch), `body.stage2` (C2, 128), `body.stage3` (C3, 256), `fpn.P1`,",
        "  `fpn.P2`, `fpn.P3` (64 each, after merge; P3 = output3(C3)), `ssh1..3` (64 each, after the",
        "  final ReLU).",
        "",
        "Sizes. Each 3x3 stride-2 conv with padding 1 gives floor((n - 1) / 2) + 1 = ceil(n / 2); five",
        "of them make the level maps ceil(n / 8), ceil(n / 16), ceil(n / 32) for every n, so the",
        "network's maps always match the spec's prior grid (ceil(H / step) x ceil(W / step)) and",
        "A = 2 * sum over steps (8, 16, 32) of ceil(H / step) * ceil(W / step):",
        "",
        "| input H x W | batch | level 1 | level 2 | level 3 | A | max abs diff fp32 vs fp64 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x in facts.items():
        lv = " | ".join(f"{r}x{c}" for r, c in x["levels"])
        lines.append(f"| {name} | {x['batch']} | {lv} | {x['anchors']} | {x['fp64_diff']:.1e} |")
    lines += [
        "",
        "(The last column is PyTorch's own float32 error against a float64 run of the same",
        "weights, over boxes, scores and landmarks.)",
        "",
        "Astronaut check (decoded with the spec's priors and variances, threshold 0.6, NMS 0.35):",
        f"one face, score {f['score']:.4f}, box ({', '.join(f'{v:.1f}' for v in net_box)}) in the",
        f"320x320 input, ({', '.join(f'{v:.1f}' for v in f['box'])}) in the 512x512 original;",
        "landmarks (original pixels): " + ", ".join(
            f"({f['landmarks'][2 * k]:.1f}, {f['landmarks'][2 * k + 1]:.1f})" for k in range(5)) + ".",
        "The same photo at its original 512x512 (not stored here) gives one face, score "
        f"{full['score']:.4f}, box ({', '.join(f'{v:.1f}' for v in full['box'])}), as detection.md says.",
        "",
    ]
    (OUT / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
