#!/usr/bin/env python3
"""Seeds the fuzz corpora (fuzz/corpus/<target>/seed-*) from the repository's fixtures.

usage: fuzz/seeds.py WIFIPOS_BINARY

voucher_decode: every token of tests/fixtures/voucher-vectors{,-v2}.json (valid and invalid) and the
accepted input forms. uci_parse: tests/fixtures/uci/* and the shipped config. photo: a voucher
QR made by `wifipos issue --format png` with the vectors' key, decoded to grayscale pixels and
downscaled to about 2 pixels per module (two bytes of width, then the pixels). http_request:
hand-written requests for every route (probe, pages, link, code, photo, API), pipelined,
chunked, HEAD, bad framing.
"""
import json
import os
import pathlib
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
PORTAL = "10.20.0.1:2050"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def png_gray(data):
    """Pixels of an 8-bit grayscale, non-interlaced PNG (what wifipos issue writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color == 0 and interlace == 0
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, rows, prev = zlib.decompress(idat), [], bytearray(w)
    for y in range(h):
        f, line = raw[y * (w + 1)], bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a = line[x - 1] if x else 0
            b, c = prev[x], (prev[x - 1] if x else 0)
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pr) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows


def photo_seed(rows, w, h, side):
    step = max(1, -(-w // side))
    small = [row[::step] for row in rows[::step]]
    sw = len(small[0])
    return sw, len(small), b"".join(small)


def http(method, path, body=b"", host=PORTAL, extra=""):
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def main():
    wifipos = sys.argv[1]
    vectors = json.loads((ROOT / "tests/fixtures/voucher-vectors.json").read_text())
    tokens = [v["token"] for v in vectors["valid"]] + [v["token"] for v in vectors["invalid"]]
    v2 = json.loads((ROOT / "tests/fixtures/voucher-vectors-v2.json").read_text())
    tokens += [v["token"] for v in v2["valid"]] + [v["token"] for v in v2["invalid"]]
    for i, t in enumerate(tokens):
        put("voucher_decode", f"token-{i}", t)
        put("voucher_decode", f"url-{i}", f"http://{PORTAL}/v/{t}")
    forms = vectors.get("accepted_input_forms", [])
    for i, f in enumerate(forms):
        put("voucher_decode", f"form-{i}", f if isinstance(f, str) else json.dumps(f))

    fixtures = ROOT / "tests/fixtures/uci"
    uci = sorted(p for p in fixtures.rglob("*") if p.is_file())
    for p in uci + [ROOT / "files/etc/config/wifipos"]:
        name = str(p.relative_to(fixtures)) if p.is_relative_to(fixtures) else p.name
        put("uci_parse", name.replace(os.sep, "-"), p.read_bytes())

    with tempfile.TemporaryDirectory() as tmp:
        key = pathlib.Path(tmp) / "till.pem"
        key.write_text(vectors["private_key_pem"])
        key.chmod(0o600)
        out = pathlib.Path(tmp) / "v.png"
        subprocess.run([wifipos, "issue", "--key", str(key), "--duration", "2h", "--devices", "3",
                        "--ref", "FUZZ1", "--portal-url", f"http://{PORTAL}", "--format", "png",
                        "--out", str(out)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        w, h, rows = png_gray(out.read_bytes())
        issued = subprocess.run([wifipos, "issue", "--key", str(key), "--duration", "1h",
                                 "--format", "json"], check=True, capture_output=True, text=True)
        token = json.loads(issued.stdout)["token"]
    # About 2 pixels per module: the smallest that still decodes.
    sw, sh, px = photo_seed(rows, w, h, 160)
    put("photo", "qr", struct.pack(">H", sw) + px)
    put("http_request", "photo", http("POST", f"/photo?w={sw}&h={sh}", px))
    put("photo", "blank", struct.pack(">H", 8) + b"\xff" * 64)

    reqs = {
        "probe-android": http("GET", "/generate_204", host="connectivitycheck.gstatic.com"),
        "probe-apple": http("GET", "/hotspot-detect.html", host="captive.apple.com",
                            extra="User-Agent: CaptiveNetworkSupport\r\n"),
        "home-de": http("GET", "/", extra="Accept-Language: de-DE,de;q=0.9,en;q=0.5\r\n"),
        "status-head": http("HEAD", "/status"),
        "api": http("GET", "/api/captive", extra="Accept: application/captive+json\r\n"),
        "link": http("GET", f"/v/{token}"),
        "link-bad": http("GET", f"/v/{tokens[-1]}"),
        "code": http("POST", "/redeem", f"code={token}".encode(),
                     extra="Content-Type: application/x-www-form-urlencoded\r\n"),
        "code-pct": http("POST", "/redeem", b"code=%41%57+x&y=%ZZ"),
        "put": http("PUT", "/redeem", b"x"),
        "pipelined": http("GET", "/") + http("GET", "/api/captive") + http("GET", "/x", host="a.b"),
        "chunked": (f"POST /redeem HTTP/1.1\r\nHost: {PORTAL}\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\ncode=\r\n3\r\nABC\r\n0\r\n\r\n").encode(),
        "expect": http("POST", "/redeem", b"code=A", extra="Expect: 100-continue\r\n"),
        "http10": f"GET / HTTP/1.0\r\nHost: {PORTAL}\r\n\r\n".encode(),
        "absolute": f"GET http://{PORTAL}/status HTTP/1.1\r\n\r\n".encode(),
        "too-large": http("POST", "/photo?w=1200&h=1200", extra="Content-Length: 99999999\r\n"),
        "close": http("GET", "/", extra="Connection: close\r\n"),
    }
    for name, data in reqs.items():
        put("http_request", name, data)


if __name__ == "__main__":
    main()
