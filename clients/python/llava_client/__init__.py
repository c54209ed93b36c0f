"""Python client of the llava-mnist coordinator (protos/llava.proto): submit, watch,
inspect and cancel jobs, list workers, fetch checkpoints.

    from llava_client import Client
    with Client("127.0.0.1:50051") as c:
        job = c.submit_train(world_size=2, projector="linear", batch_size=8)
        final = c.wait(job.job_id)

The message classes are in llava_client.pb (JobStatus, TrainSpec, JOB_STATE_SUCCEEDED,
...), generated from the proto by clients/python/generate.sh.
"""
try:
    from llava_client._proto import llava_pb2 as pb
except ImportError as e:  # pragma: no cover - what a fresh checkout sees
    raise ImportError("llava_client: the gRPC stubs are not generated; run "
                      "clients/python/generate.sh (needs protobuf-compiler, "
                      f"protobuf-compiler-grpc): {e}") from None

from llava_client.client import (TERMINAL_STATES, Checkpoint, Client, RpcError,  # noqa: E402
                                 is_terminal)

__all__ = ["Checkpoint", "Client", "RpcError", "TERMINAL_STATES", "is_terminal", "pb"]
