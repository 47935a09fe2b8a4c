#!/usr/bin/env python3
"""Whole photos: fer-infer's face detector and photo pipeline against PyTorch, ONNX Runtime and
OpenVINO (issue 12, "Speed").

One run does, on one photo (default insightface's t1.jpg, 1280x886, six faces) and one thread each:
  1. agreement, before any timing:
     - detector: the RetinaFace MobileNet-0.25 network (tools/reference/retinaface.py) on the
       detector input (BGR minus the mean, long side --detect-size) in PyTorch eager, ONNX Runtime
       and OpenVINO (the same network exported to ONNX): raw boxes, scores and landmarks compared
       with PyTorch's, then the faces they decode to;
     - pipeline: the faces, boxes, landmarks and labels of `fer-infer --json PHOTO` against those of
       the PyTorch + OpenCV pipeline (tools/compare/torch_pipeline.py);
  2. timing, R interleaved rounds (order rotating each round), each measurement its own process:
     ours = `fer-infer bench --photo PHOTO --json` (one pass = decode, detect, align, classify;
     its stages.detect_network is our detector latency, stages.total the pipeline's); the three
     detector runtimes on the saved detector input; the PyTorch + OpenCV pipeline, stage by stage;
  3. cold start, N interleaved runs: a new `fer-infer PHOTO` process against a new
     `python torch_pipeline.py PHOTO` process (imports and model loads included), wall time;
  4. Markdown tables with ratios ours / peer and the issue's targets.

The script is also its own worker (`photo.py detector-worker ...`, `photo.py pipeline-worker ...`).
See tools/compare/README.md for the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from common import (finish, DEFAULT_CACHE, DEFAULT_FER_INFER, REPO, child_env, file_digest, fmt, interleaved_rounds,
                    last_json, log, machine_info, median_of, onnx_export, ort_session, ov_config, peak_rss_mb,
                    ratio, report_header, run_child, stage_summary, time_passes, torch_threads, versions,
                    vm_hwm_mb)

DEFAULT_DETECTOR = REPO / "weights" / "retinaface-mobilenet0.25.pth"
DEFAULT_CHECKPOINT = REPO / "weights" / "lfnsb7-seeded.pth"
DEFAULT_PHOTO = REPO / ".downloads" / "photos" / "t1.jpg"
# Where t1.jpg comes from until tools/setup puts it in .downloads/photos/.
INSIGHTFACE_WHEEL = REPO / ".downloads" / "wheels" / "insightface-2.1-py3-none-any.whl"
WHEEL_MEMBER = "insightface/data/images/t1.jpg"
PIPELINE = Path(__file__).resolve().parent / "torch_pipeline.py"

RUNTIMES = ["ours", "torch", "onnxruntime", "openvino", "pipeline"]
DETECTORS = ["torch", "onnxruntime", "openvino"]
LABELS = {"ours": "ours (fer-infer)", "torch": "PyTorch eager", "onnxruntime": "ONNX Runtime",
          "openvino": "OpenVINO", "pipeline": "PyTorch + OpenCV pipeline"}
STAGES = ["decode", "detect_network", "detect", "align", "classify", "total"]
OUTPUTS = ["boxes", "scores", "landmarks"]
# Targets of issue 12 (ours / peer at most this).
TARGETS = {"openvino": 1.0, "onnxruntime": 0.5, "pipeline": 0.3, "cold": 0.1}

RTOL = 1e-4          # raw detector outputs: max |diff| <= RTOL x max |PyTorch output|, per output
FACE_TOL_PX = 0.05   # faces decoded from another runtime's outputs: boxes and landmarks within this
PIPE_TOL_PX = 0.5    # ours against the PyTorch pipeline (issue 12's "within 0.5 px")


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def resolve_photo(arg, cache):
    """The photo to use: --photo, else .downloads/photos/t1.jpg, else t1.jpg unzipped from the
    insightface wheel in .downloads/wheels/ into the cache directory."""
    if arg:
        if not Path(arg).is_file():
            raise SystemExit(f"error: --photo {arg}: no such file")
        return str(Path(arg).resolve())
    if DEFAULT_PHOTO.is_file():
        return str(DEFAULT_PHOTO)
    target = Path(cache) / "t1.jpg"
    if not target.is_file():
        if not INSIGHTFACE_WHEEL.is_file():
            raise SystemExit(f"error: no photo: neither {DEFAULT_PHOTO} nor {INSIGHTFACE_WHEEL} exists; "
                             "run tools/setup or pass --photo FILE")
        with zipfile.ZipFile(INSIGHTFACE_WHEEL) as wheel:
            target.write_bytes(wheel.read(WHEEL_MEMBER))
        log(f"photo: unzipped {WHEEL_MEMBER} from {INSIGHTFACE_WHEEL.name} into {target}")
    return str(target)


def detector_input(photo, detect_size, cache):
    """Saves the detector input of `photo` ([1, 3, h, w] float32, made by the reference pipeline:
    PIL decode, cv2 INTER_LINEAR resize, BGR minus the mean) as .npy in the cache; returns
    (path, width, height)."""
    import numpy as np
    import torch_pipeline
    x = torch_pipeline.photo_pipeline.detector_input(torch_pipeline.photo_pipeline.decode(photo), detect_size)
    h, w = x.shape[2], x.shape[3]
    path = Path(cache) / f"detector-input-{Path(photo).stem}-{file_digest(photo, 12)}-{w}x{h}.npy"
    np.save(path, x)
    return str(path), w, h


def load_detector(weights):
    """The RetinaFace reference model with `weights` (retinaface.load_weights checks their sha256)."""
    sys.path.insert(0, str(REPO / "tools" / "reference"))
    import retinaface
    model = retinaface.RetinaFace()
    model.load_state_dict(retinaface.load_weights(weights), strict=True)
    return model.eval()


def export_detector(weights, width, height, cache):
    """RetinaFace at a static [1, 3, height, width] input -> ONNX (outputs boxes, scores, landmarks),
    cached by the weights' hash, the size and torch's version."""
    import torch
    path = Path(cache) / f"{Path(weights).stem}-{file_digest(weights)}-{width}x{height}-torch{torch.__version__}.onnx"
    if path.exists():
        log(f"ONNX: cached {path}")
        return str(path)
    return onnx_export(load_detector(weights), (torch.zeros(1, 3, height, width),), path,
                       f"the detector at {width}x{height}", input_names=["input"], output_names=OUTPUTS)


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------

def detector_worker(args):
    """One detector runtime: load, one pass (outputs saved if asked), W warm-up, K timed passes."""
    import numpy as np
    x = np.load(args.input)
    t_load = time.perf_counter()
    extra = {}
    if args.runtime == "torch":
        import torch
        torch_threads(args.threads)
        model = load_detector(args.weights)
        load_ms = (time.perf_counter() - t_load) * 1000
        xt = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                return [t.numpy() for t in model(xt)]
    elif args.runtime == "onnxruntime":
        session = ort_session(args.onnx, args.threads)
        load_ms = (time.perf_counter() - t_load) * 1000
        name = session.get_inputs()[0].name

        def run():
            return session.run(None, {name: x})
    elif args.runtime == "openvino":
        import openvino as ov
        core = ov.Core()
        compiled = core.compile_model(core.read_model(args.onnx), "CPU", ov_config(args.threads, "LATENCY"))
        load_ms = (time.perf_counter() - t_load) * 1000
        request = compiled.create_infer_request()
        extra = {"ov_hint": "LATENCY", "ov_streams": 1}

        def run():
            request.infer({0: x})
            return [request.get_output_tensor(i).data.copy() for i in range(3)]
    else:
        raise SystemExit(f"unknown runtime {args.runtime}")

    outputs = run()
    if args.outputs_out:
        np.savez(args.outputs_out, **{k: np.asarray(v, np.float32) for k, v in zip(OUTPUTS, outputs)})
    times = time_passes(run, args.warmup, args.iterations)
    result = {"runtime": args.runtime, "threads": args.threads, "iterations": args.iterations,
              "input": list(x.shape), "load_ms": load_ms, **extra, "peak_rss_mb": peak_rss_mb(),
              "vm_hwm_mb": vm_hwm_mb()}
    if times:
        result["detect_network"] = stage_summary(times)
    print(json.dumps(result))
    return 0


def pipeline_worker(args):
    """The PyTorch + OpenCV pipeline on one thread, in process: load, W warm-up passes, K timed
    passes of decode -> detect -> align -> classify, each stage timed; prints the JSON shape of
    `fer-infer bench --photo --json` (stages.{decode, detect_network, detect, align, classify, total},
    each {p50_ms, p90_ms, mean_ms, min_ms}; faces, detector_input, load_ms, peak_rss_mb)."""
    import torch_pipeline
    torch_pipeline.set_one_thread()
    timed = torch_pipeline.TimedPipeline(DEFAULT_DETECTOR, args.checkpoint, args.detect_size)
    stages = {name: [] for name in torch_pipeline.STAGES}
    last = {}

    def run():
        times = {}
        faces, last["input"] = timed.run(args.photo, times)
        last["faces"] = len(faces)
        for name, ms in times.items():
            stages[name].append(ms)

    time_passes(run, args.warmup, 0)
    for values in stages.values():
        values.clear()
    time_passes(run, 0, args.iterations)      # its own spans are unused: `total` is timed inside run()
    result = {"runtime": "pipeline", "threads": 1, "iterations": args.iterations, "faces": last["faces"],
              "detector_input": list(last["input"]), "load_ms": timed.load_ms, "peak_rss_mb": peak_rss_mb(),
              "vm_hwm_mb": vm_hwm_mb(), "stages": {name: stage_summary(v) for name, v in stages.items()}}
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------
# Driver: agreement
# ---------------------------------------------------------------------------------------------

WORKER = [sys.executable, str(Path(__file__).resolve())]


def detector_cmd(runtime, args, paths, iterations, warmup, outputs_out=None):
    cmd = WORKER + ["detector-worker", "--runtime", runtime, "--input", paths["input"],
                               "--threads", str(args.threads), "--iterations", str(iterations),
                               "--warmup", str(warmup), "--weights", str(DEFAULT_DETECTOR), "--onnx", paths["onnx"]]
    return cmd + (["--outputs-out", outputs_out] if outputs_out else [])


def pipeline_cmd(args, iterations, warmup):
    return WORKER + ["pipeline-worker", "--photo", args.photo, "--detect-size", str(args.detect_size),
                                "--iterations", str(iterations), "--warmup", str(warmup),
                                "--checkpoint", args.checkpoint]


def ours_bench_cmd(args):
    return [args.fer_infer, "bench", "--model", args.checkpoint, "--detector", str(DEFAULT_DETECTOR),
            "--photo", args.photo, "--detect-size", str(args.detect_size),
            "--threads", str(args.threads), "--iterations", str(args.iterations), "--warmup", str(args.warmup),
            "--json"]


def ours_cold_cmd(args):
    return [args.fer_infer] + ours_photo_options(args) + [args.photo]


def ours_photo_options(args):
    """Model, detector, threads and detector size for `fer-infer [classify]` on a photo."""
    return ["--model", args.checkpoint, "--detector", str(DEFAULT_DETECTOR), "--threads", str(args.threads),
            "--detect-size", str(args.detect_size)]


def python_cold_cmd(args, json_out=False):
    return [sys.executable, str(PIPELINE), args.photo, "--detect-size", str(args.detect_size),
            "--checkpoint", args.checkpoint] + (["--json"] if json_out else [])


def face_diffs(faces, ref):
    """Max |diff| of boxes and of landmarks (px), and of scores, between two face lists in order."""
    import numpy as np
    box = max((float(np.abs(np.subtract(a["box"], b["box"])).max()) for a, b in zip(faces, ref)), default=0.0)
    lm = max((float(np.abs(np.subtract(a["landmarks"], b["landmarks"])).max()) for a, b in zip(faces, ref)),
             default=0.0)
    score = max((abs(a["score"] - b["score"]) for a, b in zip(faces, ref)), default=0.0)
    return box, lm, score


def detector_agreement(args, paths, runtimes):
    """Each detector runtime once on the saved input; raw outputs and decoded faces against PyTorch's."""
    import numpy as np
    import torch_pipeline
    decode_nms = torch_pipeline.make_face_fixtures.decode_nms
    w, h = paths["size"]
    sx, sy = w / paths["photo_size"][0], h / paths["photo_size"][1]
    outs, faces = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for rt in DETECTORS:
            if rt not in runtimes:
                continue
            out = os.path.join(tmp, f"{rt}.npz")
            run_child(detector_cmd(rt, args, paths, 0, 0, outputs_out=out), child_env(args.threads, rt))
            with np.load(out) as z:
                outs[rt] = [z[k][0] for k in OUTPUTS]
            faces[rt] = decode_nms(*outs[rt], h, w, sx, sy)[0]
    ref, ok = outs["torch"], True
    lines = [f"Detector agreement with PyTorch eager ({w}x{h}, batch 1, {args.threads} thread(s)): raw outputs "
             f"max |diff| <= {RTOL:g} x max |PyTorch output| each; faces (threshold 0.6, NMS 0.35) the same "
             f"number, boxes and landmarks within {FACE_TOL_PX} px. PyTorch finds {len(faces['torch'])} faces.",
             "",
             "| runtime | boxes max diff (rel) | scores max diff (rel) | landmarks max diff (rel) | faces "
             "| box / landmark / score max diff | verdict |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for rt in outs:
        if rt == "torch":
            continue
        cells, good = [], True
        for got, want in zip(outs[rt], ref):
            if got.shape != want.shape:
                cells.append(f"shape {got.shape} != {want.shape}")
                good = False
                continue
            d, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
            good &= d <= RTOL * scale
            cells.append(f"{d:.3g} ({d / scale:.2g})")
        box, lm, score = face_diffs(faces[rt], faces["torch"])
        good &= len(faces[rt]) == len(faces["torch"]) and max(box, lm) <= FACE_TOL_PX
        ok &= good
        lines.append(f"| {LABELS[rt]} | {' | '.join(cells)} | {len(faces[rt])} | {box:.3g} / {lm:.3g} / {score:.2g} "
                     f"| {'ok' if good else '**DISAGREES**'} |")
    log("\n".join(lines))
    return ok, lines, len(faces["torch"])


def pipeline_agreement(args, use_ours):
    """The PyTorch pipeline's faces and labels, and (if `use_ours`) those of `fer-infer --json PHOTO`
    compared with them: same number of faces, boxes and landmarks within PIPE_TOL_PX, same labels."""
    import numpy as np
    ref = last_json(run_child(python_cold_cmd(args, json_out=True), child_env(1, "torch"))[0])["faces"]
    lines = [f"Pipeline: the PyTorch + OpenCV pipeline finds {len(ref)} faces in `{Path(args.photo).name}` "
             f"(labels {', '.join(f['label'] for f in ref)})."]
    if not use_ours:
        log(lines[0])
        return True, lines + [""], ref
    obj = last_json(run_child([args.fer_infer, "--json"] + ours_photo_options(args) + [args.photo],
                              child_env(args.threads, "ours"))[0])
    record = obj["results"][0] if "results" in obj else obj
    ours = record.get("faces")
    if ours is None:
        raise SystemExit(f"error: `{args.fer_infer} --json PHOTO` printed no \"faces\": is it a build with the "
                         "photo pipeline (issue 12)? Pass --runtimes without `ours` to skip ours.")
    same_count = len(ours) == len(ref)
    box, lm, score = face_diffs(ours, ref)
    same_labels = [a["index"] for a in ours] == [b["index"] for b in ref]
    logit = max((float(np.abs(np.subtract(a["logits"], b["logits"])).max()) for a, b in zip(ours, ref)),
                default=0.0)
    good = same_count and max(box, lm) <= PIPE_TOL_PX and same_labels
    lines += ["",
              f"Pipeline agreement, ours against it: same faces, boxes and landmarks within {PIPE_TOL_PX} px, "
              "same labels, logits compared (both decode as PIL does).",
              "",
              "| faces ours / PyTorch | box max diff px | landmark max diff px | score max diff | same labels "
              "| logit max diff | verdict |",
              "|---:|---:|---:|---:|---|---:|---|",
              f"| {len(ours)} / {len(ref)} | {box:.3g} | {lm:.3g} | {score:.2g} | {'yes' if same_labels else 'no'} "
              f"| {logit:.3g} | {'ok' if good else '**DISAGREES**'} |", ""]
    log("\n".join(lines))
    return good, lines, ref


# ---------------------------------------------------------------------------------------------
# Driver: timing
# ---------------------------------------------------------------------------------------------

def measure(name, args, paths):
    """One measurement of `name` (ours, a detector runtime, or the PyTorch pipeline), its own process."""
    if name == "ours":
        cmd, env = ours_bench_cmd(args), child_env(args.threads, "ours")
    elif name == "pipeline":
        cmd, env = pipeline_cmd(args, args.iterations, args.warmup), child_env(1, "torch")
    else:
        cmd, env = detector_cmd(name, args, paths, args.iterations, args.warmup), child_env(args.threads, name)
    stdout, wall = run_child(cmd, env)
    result = last_json(stdout)
    result["wall_s"] = wall
    return result


def describe(name, res, r, rounds):
    if "stages" in res:
        s = res["stages"]
        text = (f"detect_network p50 {s['detect_network']['p50_ms']:8.2f} ms  "
                f"total p50 {s['total']['p50_ms']:8.2f} ms"
                f"  faces {res.get('faces')}")
    else:
        text = f"detect_network p50 {res['detect_network']['p50_ms']:8.2f} ms"
    return f"round {r + 1}/{rounds}: {name:12s} {text}  RSS {res['peak_rss_mb']:6.1f} MB"


def cold_runs(args):
    """N interleaved pairs of cold processes (order alternating); wall seconds of each."""
    names = [n for n in ("ours", "python") if n != "ours" or "ours" in args.runtime_list]
    cmds = {"ours": (ours_cold_cmd(args), child_env(args.threads, "ours")),
            "python": (python_cold_cmd(args), child_env(1, "torch"))}
    for name in names:                 # once untimed each: page cache warm, as for any repeated command
        run_child(*cmds[name])
    rounds = interleaved_rounds(names, args.cold_runs, lambda n: run_child(*cmds[n])[1] * 1000,
                                lambda n, ms, r: f"cold {r + 1}/{args.cold_runs}: {n:7s} {ms:8.1f} ms")
    return {n: [r[n] for r in rounds] for n in names}


# ---------------------------------------------------------------------------------------------
# Driver: tables
# ---------------------------------------------------------------------------------------------

def target_cell(value, peer):
    t = TARGETS.get(peer)
    if t is None or value is None:
        return "—"
    return f"<= {t:g}: {'met' if value <= t else '**not met**'}"


def detector_table(rounds, args, paths):
    names = [n for n in ["ours"] + DETECTORS if n in args.runtime_list]
    # per runtime, per round: {p50_ms, p90_ms, mean_ms, min_ms} of the network alone
    p50 = {n: [r[n]["stages"]["detect_network"] if n == "ours" else r[n]["detect_network"] for r in rounds]
           for n in names}
    w, h = paths["size"]
    lines = [f"### Detector: RetinaFace MobileNet-0.25 at {w}x{h}, batch 1, {args.threads} thread",
             "",
             f"Median over {len(rounds)} interleaved rounds of {args.iterations} timed passes (after {args.warmup} "
             "warm-up passes). Ours: `stages.detect_network` of `fer-infer bench --photo` (the network alone, "
             "from the prepared input to the head outputs, timed inside whole-photo passes); peers: one forward "
             "pass of the same network, back to back (PyTorch eager; ONNX Runtime and OpenVINO on its ONNX "
             "export).",
             "",
             "| runtime | p50 ms | p90 ms | min ms | peak RSS MB | load ms | ours/peer p50 | target "
             "| p50 min–max over rounds |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    med = {n: {k: median_of(p50[n], k) for k in ("p50_ms", "p90_ms", "min_ms")} for n in names}
    for n in names:
        rss = load = None
        if n != "ours":
            rss, load = median_of([r[n] for r in rounds], "peak_rss_mb"), median_of([r[n] for r in rounds], "load_ms")
        lat = ratio(med["ours"]["p50_ms"], med[n]["p50_ms"]) if "ours" in med and n != "ours" else None
        name = LABELS[n] + (" (hint LATENCY)" if n == "openvino" else "")
        lows, highs = min(x["p50_ms"] for x in p50[n]), max(x["p50_ms"] for x in p50[n])
        lines.append(f"| {name} | {fmt(med[n]['p50_ms'])} | {fmt(med[n]['p90_ms'])} | {fmt(med[n]['min_ms'])} "
                     f"| {fmt(rss, 1)} | {fmt(load, 0)} | {fmt(lat)} | {target_cell(lat, n)} "
                     f"| {fmt(lows)}–{fmt(highs)} |")
    lines += ["", "Peak RSS and load time of ours are in the pipeline table (one process runs both models)."]
    return lines, med


def pipeline_table(rounds, args, faces):
    names = [n for n in ("ours", "pipeline") if n in args.runtime_list]
    lines = [f"### Whole photo: `{Path(args.photo).name}` ({faces} faces), decode + detect + align + classify "
             f"(batched), {args.threads} thread",
             "",
             f"Median over {len(rounds)} interleaved rounds of the p50 of {args.iterations} timed passes "
             f"(after {args.warmup} warm-up passes). `detect` includes resizing the photo and decoding the "
             "boxes (NMS); `detect_network` is the part of it in the network; `total` is timed as one span.",
             "",
             "| stage | " + " | ".join(f"{LABELS[n]} p50 ms" for n in names)
             + (" | ours/PyTorch | target |" if len(names) == 2 else " |"),
             "|---|" + "---:|" * len(names) + ("---:|---|" if len(names) == 2 else "")]
    med = {}
    for stage in STAGES:
        vals = [median_of([r[n] for r in rounds], f"stages.{stage}.p50_ms") for n in names]
        med[stage] = dict(zip(names, vals))
        row = f"| {stage} | " + " | ".join(fmt(v) for v in vals)
        if len(names) == 2:
            q = ratio(*vals)
            row += f" | {fmt(q)} | {target_cell(q, 'pipeline') if stage == 'total' else ''}"
        lines.append(row + " |")
    for key, label, digits in (("load_ms", "load ms (both models)", 0), ("peak_rss_mb", "peak RSS MB", 1)):
        vals = [median_of([r[n] for r in rounds], key) for n in names]
        lines.append(f"| {label} | " + " | ".join(fmt(v, digits) for v in vals)
                     + (f" | {fmt(ratio(*vals))} | |" if len(names) == 2 else " |"))
    spans = [f"{LABELS[n]} {fmt(min(r[n]['stages']['total']['p50_ms'] for r in rounds))}–"
             f"{fmt(max(r[n]['stages']['total']['p50_ms'] for r in rounds))}" for n in names]
    lines += ["", "Total p50 min–max over rounds: " + "; ".join(spans) + "."]
    return lines, med


def cold_table(cold, args):
    import statistics
    names = list(cold)
    lines = [f"### Cold start: a new process classifying every face of `{Path(args.photo).name}`",
             "",
             f"Wall time of {args.cold_runs} runs each, interleaved (after one untimed run each), including "
             "process start, imports, model loads and the photo. Ours: `" + shlex.join(map(str, ours_cold_cmd(args)))
             + "`; Python: `python tools/compare/torch_pipeline.py PHOTO` (torch, cv2, skimage imported; "
             "both models loaded; one thread).",
             "",
             "| process | median ms | min ms | max ms | ours/Python (median) | target |",
             "|---|---:|---:|---:|---:|---|"]
    med = {n: statistics.median(cold[n]) for n in names}
    for n in names:
        q = ratio(med["ours"], med["python"]) if n == "python" and "ours" in med else None
        label = "ours (`fer-infer PHOTO`)" if n == "ours" else "PyTorch + OpenCV (`torch_pipeline.py PHOTO`)"
        lines.append(f"| {label} | {fmt(med[n], 1)} | {fmt(min(cold[n]), 1)} | {fmt(max(cold[n]), 1)} | {fmt(q)} "
                     f"| {target_cell(q, 'cold') if q is not None else ''} |")
    return lines, med


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def snapshot_binary(fer_infer, cache):
    """A copy of our binary in the cache, named by its hash, used for the whole run: rebuilding
    fer-infer during a run then neither fails a measurement ("Text file busy") nor mixes two builds."""
    target = Path(cache) / f"fer-infer-{file_digest(fer_infer, 12)}"
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        shutil.copy2(fer_infer, tmp)
        tmp.rename(target)
    return str(target)


def ours_supports_photo(fer_infer):
    """Whether this fer-infer's `bench` has the photo mode (issue 12)."""
    try:
        stdout, _ = run_child([fer_infer, "bench", "--help"], dict(os.environ))
    except (RuntimeError, OSError):
        return False
    return "--photo" in stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    d = sub.add_parser("detector-worker", help="internal: run one detector runtime and print JSON")
    d.add_argument("--runtime", required=True, choices=DETECTORS)
    d.add_argument("--input", required=True)
    d.add_argument("--threads", type=int, required=True)
    d.add_argument("--iterations", type=int, required=True)
    d.add_argument("--warmup", type=int, required=True)
    d.add_argument("--weights", required=True)
    d.add_argument("--onnx", required=True)
    d.add_argument("--outputs-out")
    p = sub.add_parser("pipeline-worker", help="internal: time the PyTorch + OpenCV pipeline and print JSON")
    p.add_argument("--photo", required=True)
    p.add_argument("--detect-size", type=int, required=True)
    p.add_argument("--iterations", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--checkpoint", required=True)

    parser.add_argument("--photo", help=f"default {DEFAULT_PHOTO.relative_to(REPO)}, else t1.jpg from "
                        f"{INSIGHTFACE_WHEEL.relative_to(REPO)}")
    parser.add_argument("--detect-size", type=int, default=640, help="long side of the detector input (%(default)s)")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                        help="LFNSB checkpoint; default %(default)s")
    parser.add_argument("--fer-infer", default=str(DEFAULT_FER_INFER), help="default %(default)s")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help="comma-separated subset of %(default)s (pipeline = PyTorch + OpenCV)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=50, help="timed passes per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed passes per measurement")
    parser.add_argument("--cold-runs", type=int, default=10, help="cold processes of each kind (0: skip)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="ONNX and input cache; default %(default)s")
    parser.add_argument("--markdown", help="also write the report to FILE")
    parser.add_argument("--json", dest="json_out", help="also write every measurement to FILE as JSON")
    parser.add_argument("--allow-disagreement", action="store_true",
                        help="time the runtimes even if their outputs disagree")
    parser.add_argument("--skip-agreement", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "detector-worker":
        return detector_worker(args)
    if args.mode == "pipeline-worker":
        return pipeline_worker(args)

    args.threads = 1      # issue 12's targets are all on one thread
    command = shlex.join([sys.executable] + sys.argv)
    args.runtime_list = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    for rt in args.runtime_list:
        if rt not in RUNTIMES:
            parser.error(f"unknown runtime {rt!r}; choose from {RUNTIMES}")
    if "torch" not in args.runtime_list and not args.skip_agreement and set(DETECTORS) & set(args.runtime_list):
        parser.error("the detector agreement check needs torch (the reference); add it or pass --skip-agreement")
    if args.rounds < 1 or args.iterations < 1 or args.warmup < 0 or args.cold_runs < 0:
        parser.error("--rounds and --iterations must be >= 1, --warmup and --cold-runs >= 0")
    if "ours" in args.runtime_list:
        if not os.access(args.fer_infer, os.X_OK):
            parser.error(f"{args.fer_infer} not found: run `swift build -c release` first, pass --fer-infer, "
                         "or leave `ours` out of --runtimes")
        if not ours_supports_photo(args.fer_infer):
            parser.error(f"{args.fer_infer} has no `bench --photo` (issue 12's photo mode): build a newer one, "
                         "pass --fer-infer, or leave `ours` out of --runtimes")
    args.checkpoint = str(Path(args.checkpoint).resolve())
    args.fer_infer = os.path.abspath(args.fer_infer)
    built_from = args.fer_infer
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    args.photo = resolve_photo(args.photo, cache)
    if "ours" in args.runtime_list:
        args.fer_infer = snapshot_binary(built_from, cache)
        log(f"ours: {built_from}, run as its copy {args.fer_infer}")

    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(args.photo) as image:
            paths = {"photo_size": image.size, "onnx": ""}
    except (OSError, UnidentifiedImageError) as error:
        raise SystemExit(f"error: {args.photo}: not a readable image ({error})")
    paths["input"], w, h = detector_input(args.photo, args.detect_size, cache)
    paths["size"] = (w, h)
    if {"onnxruntime", "openvino"} & set(args.runtime_list):
        paths["onnx"] = export_detector(str(DEFAULT_DETECTOR), w, h, cache)

    machine, vers = machine_info(), versions(built_from, ("torch", "onnxruntime", "openvino", "onnx",
                                                               "onnxscript", "numpy", "opencv-python-headless",
                                                               "scikit-image"))
    report = report_header("Whole-photo comparison: detector and pipeline", command, machine, vers)
    report += [f"Photo: `{args.photo}` ({paths['photo_size'][0]}x{paths['photo_size'][1]}); detector input {w}x{h} "
               f"(long side {args.detect_size}); detector `{DEFAULT_DETECTOR}`; classifier `{args.checkpoint}`; "
               f"ONNX `{paths['onnx'] or '-'}` (torch.onnx.export dynamo=True, static shape)"
               + (f"; ours `{built_from}` (run as its copy `{args.fer_infer}`)"
                  if "ours" in args.runtime_list else ""),
               ""]

    failed, faces = False, None
    if not args.skip_agreement:
        checks = []
        if "torch" in args.runtime_list:
            ok, lines, faces = detector_agreement(args, paths, args.runtime_list)
            report += lines + [""]
            checks.append(ok)
        if "pipeline" in args.runtime_list or "ours" in args.runtime_list:
            ok, lines, ref = pipeline_agreement(args, "ours" in args.runtime_list)
            report += lines
            faces = len(ref)
            checks.append(ok)
        if not all(checks):
            failed = True
            log("\n" + "!" * 80 + "\nDISAGREEMENT: a runtime's outputs differ from the reference's (tables above)\n"
                + "!" * 80)
            if not args.allow_disagreement:
                print("\n".join(report))
                return 2

    timed = [n for n in RUNTIMES if n in args.runtime_list]
    rounds = interleaved_rounds(timed, args.rounds, lambda n: measure(n, args, paths),
                                lambda n, res, r: describe(n, res, r, args.rounds))
    results = {"rounds": rounds}
    if set(DETECTORS) & set(timed):
        lines, results["detector_median"] = detector_table(rounds, args, paths)
        report += lines + [""]
    if "ours" in timed or "pipeline" in timed:
        if faces is None:
            faces = next(r[n]["faces"] for r in rounds[:1] for n in ("ours", "pipeline") if n in r)
        lines, results["pipeline_median"] = pipeline_table(rounds, args, faces)
        report += lines + [""]
    if "ours" in timed and "pipeline" in timed:
        ours_faces = {r["ours"]["faces"] for r in rounds}
        if ours_faces != {faces}:
            log(f"note: fer-infer bench reported {sorted(ours_faces)} faces, the PyTorch pipeline {faces}")
            report += [f"**Note:** `fer-infer bench --photo` reported {sorted(ours_faces)} faces, the PyTorch "
                       f"pipeline {faces}.", ""]
    if args.cold_runs and "pipeline" not in args.runtime_list:
        log("cold starts skipped: they compare against the Python pipeline (add `pipeline` to --runtimes)")
    if args.cold_runs and "pipeline" in args.runtime_list:
        cold = cold_runs(args)
        lines, results["cold_median_ms"] = cold_table(cold, args)
        results["cold_ms"] = cold
        report += lines + [""]

    report.append("Ratios ours/peer below 1 mean ours is faster; targets are issue 12's. Peak RSS is ru_maxrss of "
                  "each measurement's own process (started via /bin/sh, see README); the Python figures include "
                  "the interpreter, numpy and their runtime. Load ms: PyTorch = build + torch.load + "
                  "load_state_dict; ONNX Runtime = InferenceSession; OpenVINO = read_model + compile_model; ours = "
                  "as `fer-infer bench` reports it (imports excluded everywhere).")
    return finish(report, args, command, machine, vers, results, failed)


if __name__ == "__main__":
    sys.exit(main())
