#!/usr/bin/env python3
"""Side-by-side comparison of our runtime (fer-infer) with PyTorch eager, ONNX Runtime and OpenVINO.

One run does, for each configuration (batch N, threads T):
  1. agreement: every runtime classifies the same seeded, normalised input batch; its logits are
     compared with PyTorch's (max |diff| <= 1e-4 x max |logit| and the same argmax per sample);
     a runtime that disagrees stops the run (exit status 2) unless --allow-disagreement;
  2. timing: R rounds; in each round every runtime is measured once, in its own subprocess, the
     order rotating from round to round; per round a subprocess warms up W passes and times K
     passes of one batch;
  3. a Markdown table of the medians over the rounds, with ratios ours / peer.

The ONNX file comes from PyTorch's dynamo-based exporter (torch.onnx.export(..., dynamo=True)) and
is cached under .build-compare/ (git-ignored). See tools/compare/README.md for the commands.

The script also runs as its own worker: `compare.py worker --runtime torch|onnxruntime|openvino ...`
loads one runtime, runs it and prints one line of JSON. Workers for ONNX Runtime and OpenVINO do
not import torch, so their peak RSS is that runtime's (plus Python and numpy).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (finish, DEFAULT_CACHE, DEFAULT_FER_INFER, REPO, child_env, file_digest, fmt, interleaved_rounds,
                    last_json, log, machine_info, onnx_export, ort_session, ov_config, peak_rss_mb, report_header,
                    run_child, time_passes, timing_summary, torch_threads, versions, vm_hwm_mb)

DEFAULT_CHECKPOINT = REPO / "weights" / "lfnsb7-seeded.pth"

RUNTIMES = ["ours", "torch", "onnxruntime", "openvino"]
LABELS = {"ours": "ours (fer-infer)", "torch": "PyTorch eager", "onnxruntime": "ONNX Runtime",
          "openvino": "OpenVINO"}

RTOL = 1e-4   # agreement: max |diff| <= RTOL x max |reference logit|


# ---------------------------------------------------------------------------------------------
# Shared helpers (used by the driver and the workers)
# ---------------------------------------------------------------------------------------------

def seeded_input(batch: int):
    """The input `fer-infer bench` uses, reproduced bit for bit: a 64-bit LCG
    (state = state * 6364136223846793005 + 1442695040888963407, seed 0x5EED), each value the top
    24 bits of the state as a signed integer / 2^23, so uniform in [-1, 1). Shape [N, 3, 112, 112].
    The batch-1 input is the first image of any larger batch."""
    import numpy as np
    count = batch * 3 * 112 * 112
    mult, inc, mask = 6364136223846793005, 1442695040888963407, (1 << 64) - 1
    out = np.empty(count, dtype=np.int64)
    state = 0x5EED
    for i in range(count):
        state = (state * mult + inc) & mask
        out[i] = state >> 40            # top 24 bits, unsigned ...
    out = np.where(out >= 1 << 23, out - (1 << 24), out)   # ... as a signed 24-bit integer
    return (out.astype(np.float32) / np.float32(1 << 23)).reshape(batch, 3, 112, 112)


# ---------------------------------------------------------------------------------------------
# Worker: one runtime, one subprocess
# ---------------------------------------------------------------------------------------------

def load_torch_model(checkpoint: str, num_class: int):
    import torch
    sys.path.insert(0, str(REPO / "tools" / "reference"))
    from fer_models import LFNSB2
    model = LFNSB2(num_class)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model_state_dict" in state:
        state = state["model_state_dict"]
    model.load_state_dict(state, strict=True)
    return model.eval()


def worker(args) -> int:
    import numpy as np
    x = np.load(args.input)
    batch, threads = x.shape[0], args.threads
    t_load = time.perf_counter()
    extra = {}

    if args.runtime == "torch":
        import torch
        torch_threads(threads)
        model = load_torch_model(args.checkpoint, args.num_class)
        load_ms = (time.perf_counter() - t_load) * 1000
        xt = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                return model(xt)[0].numpy()

    elif args.runtime == "onnxruntime":
        session = ort_session(args.onnx, threads)
        load_ms = (time.perf_counter() - t_load) * 1000
        name = session.get_inputs()[0].name

        def run():
            return session.run(None, {name: x})[0]

    elif args.runtime == "openvino":
        import openvino as ov
        core = ov.Core()
        hint = args.ov_hint
        streams = threads if hint == "THROUGHPUT" else 1
        if hint == "THROUGHPUT" and batch % streams:
            hint, streams = "LATENCY", 1            # the batch must split evenly across streams
        model = core.read_model(args.onnx)
        model.reshape({model.inputs[0].get_any_name(): [batch // streams, 3, 112, 112]})
        compiled = core.compile_model(model, "CPU", ov_config(threads, hint, streams))
        load_ms = (time.perf_counter() - t_load) * 1000
        extra = {"ov_hint": hint, "ov_streams": int(compiled.get_property("NUM_STREAMS")),
                 "ov_threads": int(compiled.get_property("INFERENCE_NUM_THREADS"))}
        if streams == 1:
            request = compiled.create_infer_request()

            def run():
                return request.infer({0: x})[0]
        else:
            # THROUGHPUT: the batch is split into one slice per stream, run as parallel async
            # requests; one "pass" = the whole batch, as for every other runtime.
            queue = ov.AsyncInferQueue(compiled, streams)
            slices = np.split(x, streams)
            out = [None] * streams

            def done(request, index):
                out[index] = request.get_output_tensor(0).data.copy()
            queue.set_callback(done)

            def run():
                for i, part in enumerate(slices):
                    queue.start_async({0: part}, userdata=i)
                queue.wait_all()
                return np.concatenate(out)
    else:
        raise SystemExit(f"unknown runtime {args.runtime}")

    logits = np.asarray(run(), dtype=np.float32)
    if args.logits_out:
        np.save(args.logits_out, logits)
    times = time_passes(run, args.warmup, args.iterations)
    result = {"runtime": args.runtime, "batch": batch, "threads": threads, "iterations": args.iterations,
              "load_ms": load_ms, **extra, "peak_rss_mb": peak_rss_mb(), "vm_hwm_mb": vm_hwm_mb()}
    if times:
        result.update(timing_summary(times, batch))
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def export_onnx(checkpoint, num_class, cache_dir, log):
    """Exports the checkpoint (logits only) with the dynamo exporter, dynamic batch axis; cached by
    the checkpoint's hash and torch's version. Returns the path."""
    import torch
    digest = file_digest(checkpoint)
    path = Path(cache_dir) / f"{Path(checkpoint).stem}-{digest}-c{num_class}-torch{torch.__version__}.onnx"
    if path.exists():
        log(f"ONNX: cached {path}")
        return str(path)
    model = load_torch_model(checkpoint, num_class)

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)[0]

    return onnx_export(Logits(model), (torch.zeros(2, 3, 112, 112),), path, "the classifier, dynamic batch axis",
                       input_names=["input"], output_names=["logits"],
                       dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}})


def measure(runtime, cfg, args, paths):
    """One timed measurement of one runtime in its own subprocess."""
    batch, threads = cfg
    if runtime == "ours":
        cmd = [args.fer_infer, "bench", "--model", args.checkpoint, "--batch", str(batch),
               "--threads", str(threads), "--iterations", str(args.iterations),
               "--warmup", str(args.warmup), "--json"]
    else:
        cmd = worker_cmd(runtime, cfg, args, paths, args.iterations, args.warmup)
    stdout, wall = run_child(cmd, child_env(threads, runtime))
    result = last_json(stdout)
    result["wall_s"] = wall
    return result


def worker_cmd(runtime, cfg, args, paths, iterations, warmup, logits_out=None):
    batch, threads = cfg
    cmd = [sys.executable, str(Path(__file__).resolve()), "worker", "--runtime", runtime,
           "--input", paths["input"][batch], "--threads", str(threads), "--iterations", str(iterations),
           "--warmup", str(warmup), "--checkpoint", args.checkpoint, "--num-class", str(args.num_class),
           "--onnx", paths["onnx"], "--ov-hint", ov_hint(args, cfg)]
    if logits_out:
        cmd += ["--logits-out", logits_out]
    return cmd


def ov_hint(args, cfg):
    """auto: LATENCY (one request, all threads on it) for batch 1 or one thread; THROUGHPUT (one
    stream per thread, the batch split evenly across them as parallel async requests) otherwise,
    which measured faster for OpenVINO at batch 32 on 2 threads (see README)."""
    batch, threads = cfg
    if args.ov_hint != "auto":
        return args.ov_hint
    return "THROUGHPUT" if batch > 1 and threads > 1 and batch % threads == 0 else "LATENCY"


def agreement(cfg, args, paths, runtimes, log):
    """Runs every runtime once on the seeded batch; compares its logits with PyTorch's."""
    import numpy as np
    batch, threads = cfg
    logits = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rt in ["torch"] + [r for r in runtimes if r != "torch"]:
            if rt == "ours":
                cmd = [args.fer_infer, "classify", "--json", "--model", args.checkpoint,
                       "--threads", str(threads), paths["input"][batch]]
                records = sorted(last_json(run_child(cmd, child_env(threads, rt))[0])["results"],
                                 key=lambda r: r["index"])
                logits[rt] = np.array([r["logits"] for r in records], dtype=np.float32)
            else:
                out = os.path.join(tmp, f"{rt}.npy")
                run_child(worker_cmd(rt, cfg, args, paths, 0, 0, logits_out=out), child_env(threads, rt))
                logits[rt] = np.load(out)
    ref = logits["torch"]
    scale = float(np.abs(ref).max())
    rows, ok = [], True
    for rt in runtimes:
        if rt == "torch":
            continue
        got = logits[rt]
        if got.shape != ref.shape:
            rows.append((rt, float("nan"), float("nan"), f"shape {got.shape} != {ref.shape}", False))
            ok = False
            continue
        diff = float(np.abs(got - ref).max())
        same = int((got.argmax(1) == ref.argmax(1)).sum())
        good = diff <= RTOL * scale and same == batch
        ok &= good
        rows.append((rt, diff, diff / scale, f"{same}/{batch}", good))
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = float((top2[:, 1] - top2[:, 0]).min())
    lines = [f"Agreement with PyTorch eager, batch {batch}, {threads} thread(s): max |logit| {scale:.4g}, "
             f"tolerance {RTOL:g} x that = {RTOL * scale:.3g}; smallest top-1/top-2 margin {margin:.3g}",
             "",
             "| runtime | max abs diff | / max abs logit | same argmax | verdict |",
             "|---|---:|---:|---:|---|"]
    for rt, diff, rel, same, good in rows:
        lines.append(f"| {LABELS[rt]} | {diff:.3g} | {rel:.3g} | {same} | {'ok' if good else '**DISAGREES**'} |")
    log("\n".join(lines))
    return ok, lines


def table(cfg, rounds_results, runtimes, args):
    """Markdown table of the medians over the rounds."""
    batch, threads = cfg
    agg = {}
    for rt in runtimes:
        rs = [r[rt] for r in rounds_results if rt in r]
        med = lambda key: statistics.median(x[key] for x in rs)
        agg[rt] = {k: med(k) for k in ("p50_ms", "p90_ms", "p99_ms", "images_per_s", "peak_rss_mb", "load_ms")}
        agg[rt]["p50_range"] = (min(x["p50_ms"] for x in rs), max(x["p50_ms"] for x in rs))
        if rt == "openvino":
            agg[rt]["note"] = f"hint {rs[0].get('ov_hint')}, {rs[0].get('ov_streams')} stream(s)"
    ours = agg.get("ours")
    lines = [f"### Batch {batch}, {threads} thread{'s' if threads > 1 else ''}",
             "",
             f"Median over {len(rounds_results)} interleaved rounds of {args.iterations} timed passes "
             f"(after {args.warmup} warm-up passes) each. Latency is per forward pass of one batch.",
             "",
             "| runtime | p50 ms/batch | p90 ms | p99 ms | images/s | peak RSS MB | load ms "
             "| latency ours/peer | throughput ours/peer | p50 min–max over rounds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rt in runtimes:
        a = agg[rt]
        lat = thr = None
        if ours and rt != "ours":
            lat = ours["p50_ms"] / a["p50_ms"]
            thr = ours["images_per_s"] / a["images_per_s"]
        name = LABELS[rt] + (f" ({a['note']})" if "note" in a else "")
        lines.append(f"| {name} | {fmt(a['p50_ms'])} | {fmt(a['p90_ms'])} | {fmt(a['p99_ms'])} "
                     f"| {fmt(a['images_per_s'], 1)} | {fmt(a['peak_rss_mb'], 1)} | {fmt(a['load_ms'], 0)} "
                     f"| {fmt(lat)} | {fmt(thr)} | {fmt(a['p50_range'][0])}–{fmt(a['p50_range'][1])} |")
    lines += ["", "Ratios: latency ours/peer < 1 and throughput ours/peer > 1 mean ours is faster."]
    return lines, agg


def parse_config(text):
    try:
        b, t = text.lower().split("x")
        return int(b), int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BATCHxTHREADS (e.g. 32x2), got {text!r}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")

    w = sub.add_parser("worker", help="internal: run one Python runtime and print JSON")
    w.add_argument("--runtime", required=True, choices=["torch", "onnxruntime", "openvino"])
    w.add_argument("--input", required=True)
    w.add_argument("--threads", type=int, required=True)
    w.add_argument("--iterations", type=int, required=True)
    w.add_argument("--warmup", type=int, required=True)
    w.add_argument("--checkpoint", required=True)
    w.add_argument("--num-class", type=int, default=7)
    w.add_argument("--onnx", required=True)
    w.add_argument("--ov-hint", default="LATENCY", choices=["LATENCY", "THROUGHPUT"])
    w.add_argument("--logits-out")

    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                        help="LFNSB checkpoint (authors' format or a bare state_dict); default %(default)s")
    parser.add_argument("--num-class", type=int, default=7)
    parser.add_argument("--fer-infer", default=str(DEFAULT_FER_INFER), help="default %(default)s")
    parser.add_argument("--config", dest="configs", type=parse_config, action="append",
                        metavar="BATCHxTHREADS", help="repeatable; default 1x1 and 32x2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=100, help="timed passes per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed passes per measurement")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help="comma-separated subset of %(default)s")
    parser.add_argument("--ov-hint", default="auto", choices=["auto", "LATENCY", "THROUGHPUT"],
                        help="OpenVINO PERFORMANCE_HINT; auto = LATENCY at batch 1 or 1 thread, else THROUGHPUT "
                             "with one stream per thread (see README)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="ONNX cache; default %(default)s")
    parser.add_argument("--markdown", help="also write the report (tables, machine, versions) to FILE")
    parser.add_argument("--json", dest="json_out", help="also write every measurement to FILE as JSON")
    parser.add_argument("--allow-disagreement", action="store_true",
                        help="time the runtimes even if their outputs disagree")
    parser.add_argument("--skip-agreement", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "worker":
        return worker(args)

    import numpy as np
    command = shlex.join([sys.executable] + sys.argv)
    configs = args.configs or [(1, 1), (32, 2)]
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    for rt in runtimes:
        if rt not in RUNTIMES:
            parser.error(f"unknown runtime {rt!r}; choose from {RUNTIMES}")
    if "torch" not in runtimes and not args.skip_agreement:
        parser.error("the agreement check needs torch (the reference); add it or pass --skip-agreement")
    args.checkpoint = str(Path(args.checkpoint).resolve())
    if "ours" in runtimes and not os.access(args.fer_infer, os.X_OK):
        parser.error(f"{args.fer_infer} not found: run `swift build -c release` first, or pass --fer-infer")

    machine, vers = machine_info(), versions(args.fer_infer)
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    paths = {"onnx": "", "input": {}}
    if {"onnxruntime", "openvino"} & set(runtimes):
        paths["onnx"] = export_onnx(args.checkpoint, args.num_class, cache, log)
    for batch in sorted({b for b, _ in configs}):
        p = cache / f"input-seeded-b{batch}.npy"
        if not p.exists():
            np.save(p, seeded_input(batch))
        paths["input"][batch] = str(p)

    report = report_header("LFNSB runtime comparison", command, machine, vers)
    report += [f"Checkpoint: `{args.checkpoint}`; ONNX: `{paths['onnx'] or '-'}` "
               "(torch.onnx.export dynamo=True, dynamic batch, logits only)", ""]

    all_results, failed = {}, False
    for cfg in configs:
        batch, threads = cfg
        if not args.skip_agreement:
            ok, lines = agreement(cfg, args, paths, runtimes, log)
            report += lines + [""]
            if not ok:
                failed = True
                log("\n" + "!" * 80 + f"\nDISAGREEMENT at batch {batch}, {threads} thread(s): a runtime's "
                    f"logits differ from PyTorch's beyond {RTOL:g} x max |logit| or in argmax\n" + "!" * 80)
                if not args.allow_disagreement:
                    print("\n".join(report))
                    return 2
        rounds = interleaved_rounds(
            runtimes, args.rounds, lambda rt: measure(rt, cfg, args, paths),
            lambda rt, res, r: f"batch {batch} x {threads} thr, round {r + 1}/{args.rounds}: {rt:12s} "
                               f"p50 {res['p50_ms']:8.2f} ms  {res['images_per_s']:8.1f} img/s  "
                               f"RSS {res['peak_rss_mb']:6.1f} MB")
        lines, agg = table(cfg, rounds, runtimes, args)
        report += lines + [""]
        all_results[f"{batch}x{threads}"] = {"rounds": rounds, "median": agg}

    report.append("Peak RSS is ru_maxrss of each measurement's own process (getrusage(RUSAGE_SELF), "
                  "reported by the process itself; started via /bin/sh so this script's memory does not "
                  "leak into it); for the Python "
                  "runtimes it includes the interpreter and numpy. Load ms: ours = import + fold + pack "
                  "of the checkpoint; PyTorch = build + torch.load + load_state_dict; ONNX Runtime = "
                  "InferenceSession; OpenVINO = read_model + reshape + compile_model (imports excluded).")
    return finish(report, args, command, machine, vers, all_results, failed)


if __name__ == "__main__":
    sys.exit(main())
