#!/usr/bin/python3
"""Calls one unary gRPC method with an empty request and prints the status code name
(OK, UNAUTHENTICATED, UNAVAILABLE, ...): how the smoke test sees what the coordinator
answers a call without the right token, or a plaintext call to its TLS port.
Uses Debian's python3-grpcio only (the empty request needs no message classes).
  /usr/bin/python3 tests/k8s/grpc_status.py HOST:PORT /llava.v1.JobService/ListJobs \
      [--ca CA --cert CRT --key KEY --server-name NAME] [--token-file F | --token T]
Without --ca the channel is plaintext.
"""
import argparse
import sys

import grpc


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("method")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--server-name")
    p.add_argument("--token-file")
    p.add_argument("--token")
    p.add_argument("--timeout", type=float, default=5.0)
    a = p.parse_args()
    read = lambda f: open(f, "rb").read() if f else None
    if a.ca:
        creds = grpc.ssl_channel_credentials(read(a.ca), read(a.key), read(a.cert))
        options = [("grpc.ssl_target_name_override", a.server_name)] if a.server_name else []
        channel = grpc.secure_channel(a.target, creds, options=options)
    else:
        channel = grpc.insecure_channel(a.target)
    token = a.token if a.token is not None else (read(a.token_file).decode().strip() if a.token_file else None)
    metadata = [("authorization", f"Bearer {token}")] if token is not None else None
    call = channel.unary_unary(a.method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        call(b"", timeout=a.timeout, metadata=metadata)
        print("OK")
    except grpc.RpcError as e:
        print(e.code().name, e.details())
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
