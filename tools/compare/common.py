"""Shared parts of the tools/compare drivers (compare.py: LFNSB classifier; photo.py: RetinaFace
detector and the whole-photo pipeline): percentiles, timing loops, child processes, runtime
sessions with the same settings, interleaved rounds, machine and version reporting.

Imports only the standard library at module level; numpy, torch, onnxruntime and openvino are
imported inside the functions that need them, so a worker imports only its own runtime.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_FER_INFER = REPO / ".build" / "release" / "fer-infer"
DEFAULT_CACHE = REPO / ".build-compare"

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")   # set for the Python workers (see child_env)
# Environment variables that change what the BLAS / threading libraries do; reported with the table.
ENV_OF_INTEREST = ("OPENBLAS_", "OMP_", "MKL_", "GOTO", "KMP_", "ONEDNN_", "DNNL_", "FER_")
PACKAGES = ("torch", "onnxruntime", "openvino", "onnx", "onnxscript", "numpy")


def log(msg):
    """Progress goes to stderr; the report to stdout."""
    import sys
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def percentile(sorted_values, p):
    """Nearest-rank on (n - 1), the same rule `fer-infer bench` uses."""
    n = len(sorted_values)
    return sorted_values[min(n - 1, int(round(p / 100 * (n - 1))))]


def vm_hwm_mb():
    """VmHWM of this process (peak resident set of its current memory image), for cross-checking."""
    try:
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return None


def timing_summary(times_ms, batch):
    s = sorted(times_ms)
    return {"p50_ms": percentile(s, 50), "p90_ms": percentile(s, 90), "p99_ms": percentile(s, 99),
            "min_ms": s[0], "mean_ms": sum(s) / len(s),
            "images_per_s": batch * len(s) / (sum(s) / 1000)}



def peak_rss_mb():
    """getrusage(RUSAGE_SELF).ru_maxrss of this process in MB (see run_child for why that is its own)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_passes(run, warmup, iterations):
    """Runs `run()` `warmup` times untimed, then `iterations` times; returns each timed pass in ms."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        run()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


def stage_summary(times_ms):
    """{p50_ms, p90_ms, mean_ms, min_ms} of one stage's times, the keys `fer-infer bench --photo` uses."""
    s = sorted(times_ms)
    return {"p50_ms": percentile(s, 50), "p90_ms": percentile(s, 90), "mean_ms": sum(s) / len(s),
            "min_ms": s[0]}


def interleaved_rounds(names, rounds, measure, describe):
    """`rounds` rounds; in each, `measure(name)` once per name, the order rotating by one each round
    (so no runtime always runs first or after the same neighbour). Logs `describe(name, result,
    round)` after each measurement. Returns [{name: result}] per round."""
    out = []
    for r in range(rounds):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        results = {}
        for name in order:
            results[name] = measure(name)
            log(describe(name, results[name], r))
        out.append(results)
    return out


def median_of(results, key):
    """Median over rounds of results[i][key] (a dict path given as 'a.b.c')."""
    import statistics

    def get(d):
        for part in key.split("."):
            d = d[part]
        return d
    return statistics.median(get(r) for r in results)


# ---------------------------------------------------------------------------------------------
# Runtime sessions (the settings tabulated in README.md, in one place)
# ---------------------------------------------------------------------------------------------

def torch_threads(threads):
    """PyTorch eager on `threads` intra-op threads, one inter-op thread."""
    import torch
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def ort_session(onnx_path, threads):
    """ONNX Runtime: CPUExecutionProvider, intra-op `threads`, inter-op 1, sequential, ORT_ENABLE_ALL."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])


def ov_config(threads, hint, streams=1):
    """OpenVINO CPU compile settings: `threads` inference threads, the performance hint, f32 pinned
    (no bf16 on CPUs that have it: same numerics as the others)."""
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "f32"}
    if hint == "THROUGHPUT":
        config["NUM_STREAMS"] = streams
    return config


def file_digest(path, length=16):
    """The first `length` hex digits of the file's sha256 (cache keys)."""
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


def onnx_export(model, example_inputs, path, what, **kwargs):
    """torch.onnx.export(model, example_inputs, dynamo=True, weights embedded, **kwargs) into `path`
    (written under a temporary name, then renamed, so an interrupted export leaves no cache entry).
    The exporter's progress lines go to stderr, not into the report. Returns `path` as a string."""
    import contextlib
    import sys
    import torch
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"ONNX: exporting {what} with torch.onnx.export(dynamo=True) ...")
    t0 = time.time()
    tmp = path.with_suffix(".tmp.onnx")
    with contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(model.eval(), example_inputs, str(tmp), dynamo=True, external_data=False, **kwargs)
    tmp.rename(path)
    log(f"ONNX: wrote {path} in {time.time() - t0:.1f} s")
    return str(path)


# ---------------------------------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------------------------------

def run_child(cmd, env, cwd=None):
    """Runs one child; returns (stdout, wall seconds).

    The child is started through `/bin/sh -c '"$@"; exit $?'`, which forks it from the small shell
    rather than from this (large) Python process. That matters for peak RSS: Linux carries the
    high-water mark of the memory image a process exec()s away from into its ru_maxrss, so a child
    spawned straight from here would report at least this process's own peak (hundreds of MB once
    torch has exported the model). Through the shell, the child's getrusage(RUSAGE_SELF).ru_maxrss
    is its own; every child reports that figure itself (fer-infer bench: `peak_rss_mb`)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.time()
        proc = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh"] + [str(c) for c in cmd],
                              stdout=out, stderr=err, env=env, cwd=cwd)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"command failed (exit {proc.returncode}): {shlex.join(map(str, cmd))}\n"
                           f"{stderr[-4000:]}")
    return stdout, time.time() - t0


def last_json(stdout):
    """The JSON object a child printed (fer-infer prints it pretty, over several lines)."""
    start = stdout.find("{")
    if start < 0:
        raise RuntimeError(f"no JSON in output:\n{stdout[-2000:]}")
    return json.loads(stdout[start:])


def child_env(threads, runtime):
    """Python workers get OMP_NUM_THREADS / MKL_NUM_THREADS = T (PyTorch's OpenMP pool; ONNX Runtime
    and OpenVINO have their own pools, set by option). fer-infer gets the caller's environment
    unchanged: it sets its OpenBLAS thread count itself (openblas_set_num_threads)."""
    env = dict(os.environ)
    if runtime == "ours":
        return env
    for name in THREAD_ENV:
        if name not in os.environ:       # an explicit setting in the caller's environment wins
            env[name] = str(threads)
    return env


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def machine_info():
    """CPU model, cores (all and usable), SIMD flags, memory, kernel, BLAS / threading variables set."""
    info = {"cpu": platform.processor() or "?", "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), [])
        info["simd"] = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
                                if f in flags)
    except OSError:
        pass
    info["usable_cores"] = len(os.sched_getaffinity(0))
    try:
        kb = int(next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal")))
        info["memory_gb"] = round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration):
        pass
    info["kernel"] = platform.release()
    info["env"] = {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_OF_INTEREST)}
    return info


def versions(fer_infer, packages=PACKAGES):
    """Python's and each package's version, and our tree's commit and the binary's build time."""
    from importlib.metadata import version, PackageNotFoundError
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        out["ours"] = f"fer-infer at {commit}{' + uncommitted changes' if dirty else ''}"
    except OSError:
        out["ours"] = "fer-infer"
    try:
        built = time.strftime("%Y-%m-%d %H:%M", time.localtime(Path(fer_infer).stat().st_mtime))
        out["ours"] += f", binary built {built}"
    except OSError:
        pass
    return out


def fmt(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def ratio(ours, peer):
    """ours / peer, or None when either is missing."""
    return None if ours is None or peer is None or peer == 0 else ours / peer


def report_header(title, command, machine, vers):
    """The lines above the tables: title, command, machine, environment, versions."""
    lines = [f"## {title}", "",
             f"Command (in `{os.getcwd()}`): `{command}`", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
             f"{machine.get('memory_gb', '?')} GB, SIMD: {machine.get('simd', '?')}, Linux {machine['kernel']}"]
    if machine["env"]:
        lines.append("Environment (affects the BLAS / threading libraries, ours and numpy's OpenBLAS included): "
                     + ", ".join(f"`{k}={v}`" for k, v in machine["env"].items()))
    else:
        lines.append("Environment: no OPENBLAS_* / OMP_* / MKL_* variables set; the Python workers get "
                     "OMP_NUM_THREADS = MKL_NUM_THREADS = their thread count, fer-infer sets its own.")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items())]
    return lines


def finish(report, args, command, machine, vers, results, failed):
    """Prints the report, writes it to --markdown and every measurement to --json; exit status 2
    when a runtime disagreed (the timings were taken anyway because of --allow-disagreement)."""
    text = "\n".join(report)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
        log(f"wrote {args.markdown}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"command": command, "machine": machine, "versions": vers,
                                                   "results": results}, indent=1))
    if failed:
        log("DISAGREEMENT (see above); the timings were taken anyway because of --allow-disagreement")
        return 2
    return 0
