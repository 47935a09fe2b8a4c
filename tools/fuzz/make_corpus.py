#!/usr/bin/env python3
"""Builds the seed corpus for tools/fuzz/fuzz-checkpoint from the repository's fixtures.

Each seed is one selector byte (0: Checkpoint.load, 1: bare pickle machine, 2: zip reader, see
FuzzCheckpoint.swift) followed by a payload:
  - the small fixture checkpoints (zip), whole, and re-zipped with deflate;
  - every fixture's data.pkl (pickle protocols 2 and 4, whole-module, views) as a bare pickle;
  - the legacy-format fixtures that are small enough (MTCNN pnet) and a legacy file's header;
  - a hand-made safetensors file and a few hand-assembled pickles (opcodes the fixtures lack).
Standard library only. Usage: python3 tools/fuzz/make_corpus.py [OUT_DIR]
(default tools/fuzz/.build/corpus).
"""
import hashlib
import io
import json
import os
import struct
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, ".build", "corpus")
MAX = 64 * 1024
os.makedirs(OUT, exist_ok=True)
count = 0


def seed(selector, payload):
    global count
    data = bytes([selector]) + payload
    if len(data) > MAX:
        return
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    count += 1


def fixture_paths():
    index = os.path.join(ROOT, "Tests", "Fixtures", "fixtures.json")
    with open(index) as f:
        return [os.path.join(ROOT, c["path"]) for c in json.load(f)["checkpoints"]]


for path in fixture_paths():
    if not os.path.exists(path):
        continue
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
            seed(1, z.read(pkl)[:MAX])
            if os.path.getsize(path) <= MAX:
                raw = open(path, "rb").read()
                seed(0, raw)
                seed(2, raw)
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
                    for info in z.infolist():
                        out.writestr(info.filename, z.read(info.filename))
                seed(0, buf.getvalue())
                seed(2, buf.getvalue())
    else:
        with open(path, "rb") as f:
            seed(0, f.read(MAX))  # legacy: header pickles and the object pickle

for name in ["pnet.pt"]:
    p = os.path.join(ROOT, ".downloads", "facenet_pytorch", name)
    if os.path.exists(p):
        seed(0, open(p, "rb").read())

# Tiny torch.save-layout zips (stored, deflated, big-endian) over a hand-written protocol-2
# pickle: OrderedDict {'w': 2x3 float32 tensor, 'v': transposed view of it, 'n': int64 scalar}.
def tensor(key, stype, offset, size, stride):
    def tup(xs):
        return b"(" + b"".join(b"K" + bytes([x]) for x in xs) + b"t"
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + b"(X\x07\x00\x00\x00storagectorch\n" + stype + b"\n"
            + b"X\x01\x00\x00\x00" + key + b"X\x03\x00\x00\x00cpuK\x06tQ" + b"K" + bytes([offset]) + tup(size)
            + tup(stride) + b"\x89ccollections\nOrderedDict\n)RtR")
pkl = (b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00w" + tensor(b"0", b"FloatStorage", 0, [2, 3], [3, 1])
       + b"X\x01\x00\x00\x00v" + tensor(b"0", b"FloatStorage", 0, [3, 2], [1, 3])
       + b"X\x01\x00\x00\x00n" + tensor(b"1", b"LongStorage", 0, [], []) + b"u.")
for order, method in [(b"little", zipfile.ZIP_STORED), (b"little", zipfile.ZIP_DEFLATED), (b"big", zipfile.ZIP_STORED)]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr("tiny/data.pkl", pkl)
        z.writestr("tiny/byteorder", order)
        fmt = "<" if order == b"little" else ">"
        z.writestr("tiny/data/0", struct.pack(fmt + "6f", 1, 2, 3, 4, 5, 6))
        z.writestr("tiny/data/1", struct.pack(fmt + "q", 40))
    seed(0, buf.getvalue())
    seed(2, buf.getvalue())
seed(1, pkl)

# A memory-bomb shape: a zero-stride view expanding one float to 2^20 elements (4 MiB), its storage
# stored and deflated.
bomb = (b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00z"
        + b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
        + b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00(J\x00\x00\x10\x00t(K\x00t"
        + b"\x89ccollections\nOrderedDict\n)RtRu.")
for method in [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr("bomb/data.pkl", bomb)
        z.writestr("bomb/data/0", struct.pack("<f", 2.5) + bytes(4096 if method == zipfile.ZIP_DEFLATED else 0))
    seed(0, buf.getvalue())

# A safetensors file with two tensors and metadata.
header = json.dumps({"__metadata__": {"format": "pt"},
                     "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                     "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}}).encode()
header += b" " * (-len(header) % 8)
seed(0, struct.pack("<Q", len(header)) + header + struct.pack("<4f", 1, 2, 3, 4) + struct.pack("<q", 7))

# Hand-assembled pickles: protocol 4 framing, sets, frozensets, bytes, long ints, memo ops.
seed(1, b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94\x8f\x94(K\x01K\x02\x90\x8c\x01b"
        b"(K\x03\x91u.")
seed(1, b"\x80\x02}q\x00(X\x01\x00\x00\x00xq\x01C\x03abcX\x01\x00\x00\x00y\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01"
        b"X\x01\x00\x00\x00zG?\xf0\x00\x00\x00\x00\x00\x00u.")
seed(1, b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00kh\x01s.")
print(f"{count} seeds in {OUT}")
