"""Latency of event-driven copies: PutObject into a moto bucket whose notifications go to a moto
SQS queue, which a dth hub polls; the time until the destination (s3s-fs) holds the object, for
each of N uploads made at a steady rate. Prints p50/p90/p99/max and a RESULT line; exits 1 when an
object is missing or differs, or when the hub's items are not all done and verified.

Usage: eventshelper.py MOTO_URL DST_URL HUB_URL API_TOKEN AK SK COUNT RATE
"""

import json
import sys
import threading
import time
import urllib.request

import boto3
from botocore.config import Config

moto_url, dst_url, hub, token, ak, sk = sys.argv[1:7]
count, rate = int(sys.argv[7]), float(sys.argv[8])


def client(service, url, key, secret):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 3},
                                      max_pool_connections=16))


def api(method, path, body=None):
    req = urllib.request.Request(hub + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


src = client("s3", moto_url, "test", "test")
sqs = client("sqs", moto_url, "test", "test")
dst = client("s3", dst_url, ak, sk)
src.create_bucket(Bucket="src")
dst.create_bucket(Bucket="dst")
queue = sqs.create_queue(QueueName="uploads")["QueueUrl"]
src.put_bucket_notification_configuration(Bucket="src", NotificationConfiguration={
    "QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:123456789012:uploads",
                             "Events": ["s3:ObjectCreated:*"]}]})


def side(url, bucket, key, secret):
    return {"provider": "other", "endpoint_url": url, "region": "us-east-1", "bucket": bucket,
            "prefix": "", "credentials": {"kind": "static", "access_key_id": key,
                                          "secret_access_key": secret}}


source = side(moto_url, "src", "test", "test")
source["events"] = {"kind": "sqs", "queue_url": queue}
task = api("POST", "/api/v1/tasks", {"name": "events-bench", "kind": "s3", "source": source,
                                      "destination": side(dst_url, "dst", ak, sk),
                                      "schedule": "once"})
tid = task["id"]
deadline = time.time() + 60
while not all(r.get("ended_at") for r in api("GET", f"/api/v1/tasks/{tid}/runs") or [{}]):
    if time.time() > deadline:
        sys.exit("the task's first run did not end")
    time.sleep(0.1)

put_at, seen_at, etags = {}, {}, {}
keys = [f"in/{i:05d}.bin" for i in range(count)]
done = threading.Event()


def upload():
    start = time.monotonic()
    for i, k in enumerate(keys):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        out = src.put_object(Bucket="src", Key=k, Body=(k * 64).encode()[:1024])
        put_at[k] = time.monotonic()
        etags[k] = out["ETag"]


def watch():
    pager = dst.get_paginator("list_objects_v2")
    while len(seen_at) < count and not done.is_set():
        now = time.monotonic()
        for page in pager.paginate(Bucket="dst", Prefix="in/"):
            for o in page.get("Contents", []):
                seen_at.setdefault(o["Key"], now)
        time.sleep(0.02)


threads = [threading.Thread(target=upload), threading.Thread(target=watch)]
for t in threads:
    t.start()
threads[0].join()
threads[1].join(timeout=120)
done.set()
threads[1].join()

lat = sorted(max(0.0, seen_at[k] - put_at[k]) * 1000 for k in keys if k in seen_at and k in put_at)
missing = [k for k in keys if k not in seen_at]
bad = [k for k in keys if k in seen_at
       and dst.head_object(Bucket="dst", Key=k)["ETag"] != etags[k]]
items = []
for run in api("GET", f"/api/v1/tasks/{tid}/runs"):
    if run["trigger"] == "event":
        page = api("GET", f"/api/v1/runs/{run['id']}/items?limit=1000")
        items += [i for i in page["items"] if i["key"] in put_at]
unverified = [i["key"] for i in items if i["state"] != "done" or not i.get("verification")]


def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] if lat else float("nan")


print(f"uploads\t{count} at {rate:g}/s (1 KiB each)")
print(f"copied\t{len(lat)}  missing {len(missing)}  differing {len(bad)}  "
      f"items not done+verified {len(unverified)} of {len(items)}")
print(f"latency ms\tp50 {pct(50):.0f}  p90 {pct(90):.0f}  p99 {pct(99):.0f}  max {pct(100):.0f}")
print(f"RESULT events_p50_ms={pct(50):.0f} events_p99_ms={pct(99):.0f} "
      f"copied={len(lat)} missing={len(missing)} differing={len(bad)}")
sys.exit(1 if missing or bad or unverified or len(items) < count else 0)
