#!/usr/bin/python3
"""grpc.health.v1.Health/Check against HOST:PORT, as a Kubernetes gRPC probe makes it
(plaintext, service "" unless --service): exits 0 if the answer is SERVING, 1 otherwise.
Uses Debian's python3-grpcio only: the request and the answer are encoded by hand
(HealthCheckRequest{string service = 1}, HealthCheckResponse{ServingStatus status = 1}).
  /usr/bin/python3 tests/k8s/grpc_health.py 127.0.0.1:51052 [--service NAME] [--timeout S]
"""
import argparse
import sys

import grpc

STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def encode_request(service: str) -> bytes:
    data = service.encode()
    if not data:
        return b""
    assert len(data) < 128
    return bytes([0x0A, len(data)]) + data


def decode_status(answer: bytes) -> int:
    if not answer:
        return 0  # proto3 default: UNKNOWN
    if answer[0] != 0x08 or len(answer) < 2:
        raise ValueError(f"unexpected HealthCheckResponse bytes {answer!r}")
    return answer[1]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--service", default="")
    p.add_argument("--timeout", type=float, default=3.0)
    a = p.parse_args()
    with grpc.insecure_channel(a.target) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        try:
            status = decode_status(check(encode_request(a.service), timeout=a.timeout))
        except grpc.RpcError as e:
            print(f"{a.target}: {e.code().name} {e.details()}")
            return 1
    print(f"{a.target}: {STATUS.get(status, status)}")
    return 0 if status == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
