#!/usr/bin/env python3
"""Helpers for bench/s3.sh (standard library only).

Subcommands:
  freeport                          print a free TCP port on 127.0.0.1
  waitport PORT [SECONDS]           wait until 127.0.0.1:PORT accepts connections
  s3fs-adopt ROOT BUCKET KEY MD5    write the s3s-fs sidecar that a PUT of ROOT/BUCKET/KEY would have written
                                    (ETag = MD5), so a file placed directly in the data dir is served like an upload
  million SRC DST BUCKET N          make N tiny files under SRC/BUCKET (1,000 per directory, hard links to base
                                    files kept in SRC-base/) and the same tree under DST/BUCKET with 1 % missing
                                    and 1 % of a different size
  raw-copy ...                      the raw GET+PUT limit: ranged GETs from one S3 endpoint, multipart PUTs to
                                    another, a pool of threads, no checksums, no listing (see --help)
  summary FILE [KEY=VALUE ...]      check a `dth --json` summary: failed == 0 and each KEY == VALUE
                                    (KEY1|KEY2=VALUE: the first key present; a.b = nested); print the fields as key=value;
                                    exit 1 on a mismatch
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import queue
import socket
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET


def cmd_freeport(_args):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def cmd_waitport(args):
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", args.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on 127.0.0.1:{args.port} after {args.seconds} s")


def cmd_s3fs_adopt(args):
    enc = lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")
    path = os.path.join(args.root, f".bucket-{enc(args.bucket)}.object-{enc(args.key)}.internal.json")
    with open(path, "w") as f:
        json.dump({"e_tag": args.md5}, f)


def cmd_million(args):
    """Hard links keep inode use small: 2 base files (two sizes) per 1,000-file directory on each side."""
    per_dir = 1000
    n_dirs = (args.n + per_dir - 1) // per_dir
    made = {"src": 0, "dst": 0, "missing": 0, "resized": 0}
    for side, root in (("src", args.src), ("dst", args.dst)):
        base_dir = root.rstrip("/") + "-base"  # outside the served tree
        os.makedirs(base_dir, exist_ok=True)
        for d in range(n_dirs):
            b_same = os.path.join(base_dir, f"{d:04d}-a")
            b_diff = os.path.join(base_dir, f"{d:04d}-b")
            with open(b_same, "wb") as f:
                f.write(b"x" * 100)
            with open(b_diff, "wb") as f:
                f.write(b"y" * 101)
            out = os.path.join(root, args.bucket, f"d{d:04d}")
            os.makedirs(out, exist_ok=True)
            for i in range(d * per_dir, min(args.n, (d + 1) * per_dir)):
                base = b_same
                if side == "dst":
                    if i % 100 == 17:
                        made["missing"] += 1
                        continue
                    if i % 100 == 71:
                        made["resized"] += 1
                        base = b_diff
                os.link(base, os.path.join(out, f"f{i:07d}"))
                made[side] += 1
    print(" ".join(f"{k}={v}" for k, v in made.items()))


# ---------------------------------------------------------------- SigV4 (UNSIGNED-PAYLOAD) client

class S3:
    def __init__(self, endpoint, access, secret, region="us-east-1"):
        u = urllib.parse.urlsplit(endpoint)
        self.host, self.port = u.hostname, u.port or 80
        self.hostport = u.netloc
        self.access, self.secret, self.region = access, secret, region
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=600)
            c.connect()
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.local.c = c
        return c

    def sign(self, method, path, query, headers):
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        headers = {k.lower(): v for k, v in headers.items()}
        headers["host"] = self.hostport
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        q = sorted((urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in query)
        cq = "&".join(f"{k}={v}" for k, v in q)
        signed = sorted(k.lower() for k in headers)
        ch = "".join(f"{k}:{str(headers[k]).strip()}\n" for k in signed)
        sh = ";".join(signed)
        creq = "\n".join([method, urllib.parse.quote(path, safe="/-_.~"), cq, ch, sh, "UNSIGNED-PAYLOAD"])
        scope = f"{day}/{self.region}/s3/aws4_request"
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
        k = ("AWS4" + self.secret).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, SignedHeaders={sh}, Signature={sig}"
        return headers, cq

    def request(self, method, path, query=(), headers=None, body=None, into=None):
        hdrs, cq = self.sign(method, path, query, headers or {})
        url = urllib.parse.quote(path, safe="/-_.~") + (("?" + cq) if cq else "")
        for attempt in range(3):
            c = self.conn()
            try:
                c.request(method, url, body=body, headers=hdrs)
                r = c.getresponse()
                if into is not None and r.status in (200, 206):
                    mv, got = memoryview(into), 0
                    while got < len(into):
                        n = r.readinto(mv[got:])
                        if not n:
                            break
                        got += n
                    rest = r.read()
                    if got != len(into) or rest:
                        raise IOError(f"{method} {path}: got {got} bytes, wanted {len(into)}")
                    return r.status, r.headers, None
                data = r.read()
                if r.status >= 300:
                    raise IOError(f"{method} {path} {query}: HTTP {r.status}: {data[:300]!r}")
                return r.status, r.headers, data
            except (http.client.HTTPException, ConnectionError) as e:
                c.close()
                self.local.c = None
                if attempt == 2:
                    raise
                time.sleep(0.2)


def cmd_raw_copy(args):
    src = S3(args.src_endpoint, args.src_access, args.src_secret)
    dst = S3(args.dst_endpoint, args.dst_access, args.dst_secret)
    ps = args.part_size
    t0 = time.time()
    jobs = queue.Queue()
    uploads = {}
    total = 0
    for spec in args.objects:
        key, size = spec.rsplit(":", 1)
        size = int(size)
        total += size
        _, _, body = dst.request("POST", f"/{args.dst_bucket}/{key}", [("uploads", "")])
        upload_id = ET.fromstring(body).find("{*}UploadId").text
        n = (size + ps - 1) // ps
        uploads[key] = {"id": upload_id, "etags": [None] * n}
        for i in range(n):
            jobs.put((key, i, i * ps, min(size, (i + 1) * ps)))
    errors = []

    def worker():
        buf = bytearray(ps)
        while True:
            try:
                key, i, a, b = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                mv = memoryview(buf)[: b - a]
                src.request("GET", f"/{args.src_bucket}/{key}", headers={"Range": f"bytes={a}-{b - 1}"}, into=mv)
                _, h, _ = dst.request("PUT", f"/{args.dst_bucket}/{key}",
                                      [("partNumber", str(i + 1)), ("uploadId", uploads[key]["id"])],
                                      headers={"Content-Length": str(b - a)}, body=mv)
                uploads[key]["etags"][i] = h["ETag"]
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"{key} part {i + 1}: {e}")

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("raw-copy failed: " + "; ".join(errors[:5]))
    for key, u in uploads.items():
        parts = "".join(f"<Part><PartNumber>{i + 1}</PartNumber><ETag>{e}</ETag></Part>" for i, e in enumerate(u["etags"]))
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        dst.request("POST", f"/{args.dst_bucket}/{key}", [("uploadId", u["id"])], body=body,
                    headers={"Content-Length": str(len(body))})
    dt = time.time() - t0
    print(f"raw-copy bytes={total} seconds={dt:.2f} mib_s={total / dt / 2**20:.1f}")


def cmd_summary(args):
    """SPEC is KEY=VALUE or KEY1|KEY2=VALUE (the first key present is checked). failed == 0 and no
    errors always."""
    try:
        with open(args.file) as f:
            text = f.read().strip()
        # the summary is the last JSON object on stdout
        start = text.rfind("\n{")
        doc = json.loads(text[start + 1 if start >= 0 else 0:])
    except Exception as e:  # noqa: BLE001
        print(f"error=no-json-summary({e})")
        sys.exit(1)
    flat = {}

    def walk(d, pre=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{pre}{k}.")
            elif not isinstance(v, list):
                flat[pre + k] = v

    walk(doc)
    print(" ".join(f"{k}={v}" for k, v in flat.items()) + f" errors={len(doc.get('errors') or [])}")
    bad = []
    if doc.get("failed", 0) != 0:
        bad.append(f"failed={doc.get('failed')}")
    if doc.get("errors"):
        bad.append(f"errors={doc['errors'][:3]}")
    for spec in args.specs:
        keys, want = spec.split("=", 1)
        key = next((k for k in keys.split("|") if k in flat), None)
        if key is None:
            bad.append(f"{keys}:missing")
        elif str(flat[key]) != want:
            bad.append(f"{key}={flat[key]}!={want}")
    if bad:
        print("error=" + ",".join(bad))
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("freeport").set_defaults(f=cmd_freeport)
    s = sub.add_parser("waitport")
    s.add_argument("port", type=int)
    s.add_argument("seconds", type=float, nargs="?", default=30)
    s.set_defaults(f=cmd_waitport)
    s = sub.add_parser("s3fs-adopt")
    for a in ("root", "bucket", "key", "md5"):
        s.add_argument(a)
    s.set_defaults(f=cmd_s3fs_adopt)
    s = sub.add_parser("million")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("bucket")
    s.add_argument("n", type=int)
    s.set_defaults(f=cmd_million)
    s = sub.add_parser("raw-copy")
    for a in ("src-endpoint", "src-access", "src-secret", "src-bucket",
              "dst-endpoint", "dst-access", "dst-secret", "dst-bucket"):
        s.add_argument("--" + a, required=True)
    s.add_argument("--part-size", type=int, default=16 << 20)
    s.add_argument("--concurrency", type=int, default=16)
    s.add_argument("objects", nargs="+", help="KEY:SIZE")
    s.set_defaults(f=cmd_raw_copy)
    s = sub.add_parser("summary")
    s.add_argument("file")
    s.add_argument("specs", nargs="*", help="KEY=VALUE or KEY1|KEY2=VALUE")
    s.set_defaults(f=cmd_summary)
    args = p.parse_args()
    args.f(args)


if __name__ == "__main__":
    main()
