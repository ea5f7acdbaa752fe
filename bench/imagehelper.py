#!/usr/bin/env python3
"""Helpers for bench/images.sh (standard library only).

  fixture DIR                 write an OCI layout: 30 tagged images in 10 repositories sharing base
                              layers (4 of them multi-arch indexes); prints one `REF REPO:TAG` a line
  requests LOG OFFSET         count the access-log lines of a docker-registry log after byte OFFSET:
                              prints `total=N manifest_get=N manifest_head=N manifest_put=N blob_get=N
                              blob_head=N upload=N mount=N mount_self=N ping=N tags=N catalog=N`
                              (upload counts every POST/PATCH/PUT under /blobs/uploads; mount the
                              cross-repository mounts among them, mount_self the mounts from the
                              repository itself, a client's "is it here yet?" probe)
  size FILE                   print the size of FILE in bytes
"""
import gzip
import hashlib
import json
import os
import random
import re
import sys
import urllib.parse

MiB = 1 << 20


class Layout:
    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.index = []

    def blob(self, data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(self.root, "blobs", "sha256", digest)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    def layer(self, rng, size):
        raw = rng.randbytes(size)
        # Stored (level 0) gzip: tools see gzip and copy it as it is; writing it is fast.
        gz = gzip.compress(raw, compresslevel=0, mtime=0)
        d = self.blob(gz, "application/vnd.oci.image.layer.v1.tar+gzip")
        d["_diff_id"] = "sha256:" + hashlib.sha256(raw).hexdigest()
        return d

    def image(self, layers, arch, label):
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {"Labels": {"bench": label}},
            "rootfs": {"type": "layers", "diff_ids": [l["_diff_id"] for l in layers]},
        }
        c = self.blob(json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
        m = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": c,
            "layers": [{k: v for k, v in l.items() if not k.startswith("_")} for l in layers],
        }
        return self.blob(json.dumps(m).encode(), m["mediaType"])

    def index_of(self, children):
        idx = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [dict(m, platform={"architecture": a, "os": "linux"}) for m, a in children],
        }
        return self.blob(json.dumps(idx).encode(), idx["mediaType"])

    def tag(self, desc, name):
        self.index.append(dict(desc, annotations={"org.opencontainers.image.ref.name": name}))

    def write_index(self):
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.index}, f)


def cmd_fixture(root):
    rng = random.Random(20261125)
    l = Layout(root)
    # Three base images shared across repositories: 80 MiB.
    bases = [
        [l.layer(rng, 30 * MiB), l.layer(rng, 10 * MiB)],
        [l.layer(rng, 20 * MiB), l.layer(rng, 5 * MiB)],
        [l.layer(rng, 15 * MiB)],
    ]
    arm_bases = [[l.layer(rng, 12 * MiB)], [l.layer(rng, 8 * MiB)]]
    n = 0
    for r in range(10):
        repo = f"r{r}"
        base = bases[r % 3]
        for t in range(3):
            tag = f"1.{t}"
            app = [l.layer(rng, (1 + (r + t) % 3) * MiB), l.layer(rng, 64 * 1024)]
            img = l.image(base + app, "amd64", f"{repo}:{tag}")
            if r < 4 and t == 2:
                arm = l.image(arm_bases[r % 2] + [l.layer(rng, MiB)], "arm64", f"{repo}:{tag}-arm64")
                img = l.index_of([(img, "amd64"), (arm, "arm64")])
            ref = f"i{n}"
            l.tag(img, ref)
            print(f"{ref} {repo}:{tag}")
            n += 1
    l.write_index()


LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3})')


def cmd_requests(log, offset):
    counts = dict.fromkeys(
        ["total", "manifest_get", "manifest_head", "manifest_put", "blob_get", "blob_head", "upload", "mount", "mount_self", "ping", "tags", "catalog"], 0
    )
    with open(log, "rb") as f:
        f.seek(int(offset))
        text = f.read().decode("utf-8", "replace")
    for m in LINE.finditer(text):
        method, path, _status = m.groups()
        counts["total"] += 1
        if path == "/v2/" or path == "/v2":
            counts["ping"] += 1
        elif "/manifests/" in path:
            counts[{"GET": "manifest_get", "HEAD": "manifest_head"}.get(method, "manifest_put")] += 1
        elif "/blobs/uploads" in path:
            counts["upload"] += 1
            if "mount=" in path:
                # A mount from the repository itself asks "is it here?" (and opens an upload if not).
                name = path[len("/v2/"):path.index("/blobs/uploads")]
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
                counts["mount_self" if q.get("from", [""])[0] == name else "mount"] += 1
        elif "/blobs/" in path:
            counts["blob_head" if method == "HEAD" else "blob_get"] += 1
        elif "/tags/list" in path:
            counts["tags"] += 1
        elif "_catalog" in path:
            counts["catalog"] += 1
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    if cmd == "fixture":
        cmd_fixture(sys.argv[2])
    elif cmd == "requests":
        cmd_requests(sys.argv[2], sys.argv[3])
    elif cmd == "size":
        print(os.path.getsize(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
