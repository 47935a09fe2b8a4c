#!/usr/bin/env python3
"""Seeds for fuzz-serve (standard library only): tools/fuzz/.build/serve-corpus.

Each seed is the switch byte (even: a bare multipart body with boundary "b0und"; odd: raw client bytes
through the HTTP/1 pipeline), the piece size minus one, then the bytes: well-formed multipart bodies
(a file, a text field beside it, a quoted boundary, an epilogue), requests with Content-Length and
chunked bodies, pipelined requests, and the broken cases the service answers 400 (a short body, a
malformed chunk size, Content-Length with Transfer-Encoding, a body cut before its closing delimiter).
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, ".build", "serve-corpus")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de")


def multipart(boundary, parts, closing=None):
    body = b""
    for disposition, ctype, data in parts:
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        if ctype:
            body += b"Content-Type: " + ctype + b"\r\n"
        body += b"\r\n" + data + b"\r\n"
    return body + (closing if closing is not None else b"--" + boundary + b"--\r\n")


def request(body, ctype=b"multipart/form-data; boundary=b0und", length=None, extra=b""):
    length = len(body) if length is None else length
    return (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
            + str(length).encode() + b"\r\n" + extra + b"\r\n" + body)


def chunked(body, ctype=b"multipart/form-data; boundary=b0und", size=7, extra=b"", last=b"0\r\n\r\n"):
    out = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype + b"\r\nTransfer-Encoding: chunked\r\n" + extra + b"\r\n"
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + last


def main():
    os.makedirs(OUT, exist_ok=True)
    file_part = (b'form-data; name="image"; filename="a.png"', b"image/png", PNG)
    field = (b'form-data; name="note"', None, b"hello --b0un")
    raw = (b'form-data; name="raw"', b"application/octet-stream", b"\x00\x01\r\n--b0und-")
    one = multipart(b"b0und", [file_part])
    three = multipart(b"b0und", [field, file_part, raw])
    seeds = {
        "mp-one": (0, 255, one),
        "mp-three": (0, 3, three),
        "mp-epilogue": (0, 16, three + b"epilogue\r\n"),
        "mp-preamble": (0, 64, b"preamble\r\n" + one),
        "mp-cut": (0, 9, one[:-12]),
        "mp-no-close": (0, 200, multipart(b"b0und", [file_part], closing=b"--b0und\r\n")),
        "http-length": (1, 255, request(three)),
        "http-quoted": (1, 31, request(multipart(b"simple boundary", [file_part]), ctype=b'multipart/form-data; boundary="simple boundary"')),
        "http-raw": (1, 255, request(PNG, ctype=b"image/png")),
        "http-chunked": (1, 5, chunked(three)),
        "http-chunk-ext": (1, 255, chunked(one, last=b"0;ext=1\r\nTrailer: x\r\n\r\n")),
        "http-pipelined": (1, 100, request(one) + chunked(one) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        "http-short": (1, 255, request(one, length=len(one) + 50)),
        "http-bad-chunk": (1, 255, chunked(one)[:90] + b"zz\r\n" + chunked(one)[90:]),
        "http-cl-te": (1, 255, chunked(one, extra=b"Content-Length: 12\r\n")),
        "http-cut-chunked": (1, 13, chunked(one)[:-20]),
        "http-over": (1, 255, request(b"", ctype=b"image/png", length=(1 << 20) + 1)),
    }
    for name, (switch, piece, data) in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(bytes([switch, piece]) + data)
    print(f"wrote {len(seeds)} seeds to {OUT}")


if __name__ == "__main__":
    main()
