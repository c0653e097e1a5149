"""A real S3-compatible server (moto) on an ephemeral loopback port, for tests.

Prints `endpoint http://127.0.0.1:PORT` once the server answers, creates the
buckets named on the command line, then serves until stdin closes (so it
dies with the test process that started it).
"""

import sys

import boto3
from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
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
for bucket in sys.argv[1:]:
    s3.create_bucket(Bucket=bucket)
print(f"endpoint {endpoint}", flush=True)
sys.stdin.read()
server.stop()
