"""A real S3-compatible server (moto) on a loopback port, for tests.

`moto_server.py [--port N] BUCKET...`: listens on port N (default 0: an
ephemeral one), creates the buckets named on the command line, prints
`endpoint http://127.0.0.1:PORT` once the server answers, then serves until
stdin closes (so it dies with the test process that started it).
"""

import sys

import boto3
from moto.server import ThreadedMotoServer

args = sys.argv[1:]
listen = 0
if args[:1] == ["--port"]:
    listen, args = int(args[1]), args[2:]
server = ThreadedMotoServer(ip_address="127.0.0.1", port=listen, verbose=False)
server.start()
host, port = server.get_host_and_port()
endpoint = f"http://{host}:{port}"
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id="test",
    aws_secret_access_key="test",
    region_name="us-east-1",
)
for bucket in args:
    s3.create_bucket(Bucket=bucket)
print(f"endpoint {endpoint}", flush=True)
sys.stdin.read()
server.stop()
