"""The coordinator's client API: jobs (JobService), workers and checkpoints.

Owns one gRPC channel per Client. Threading: a Client's methods may be called from
several threads at once (gRPC channels are thread-safe); the generator watch() returns
belongs to the thread that iterates it. Every call carries a deadline; a failed call
raises RpcError with the gRPC status code and the server's message.
"""
import hashlib
import os
import tempfile
import time

import grpc

from llava_client._proto import llava_pb2 as pb
from llava_client._proto import llava_pb2_grpc as pb_grpc

TERMINAL_STATES = frozenset({pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED})


class RpcError(Exception):
    """A call that failed: `code` is its grpc.StatusCode (NOT_FOUND, INVALID_ARGUMENT,
    UNAUTHENTICATED, DATA_LOSS for a checkpoint that arrived damaged, ...), `details` the
    message, `method` the RPC ("GetJob")."""

    def __init__(self, method, code, details):
        super().__init__(f"{method}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details


class Checkpoint:
    """What fetch_checkpoint received: `header` (a CheckpointHeader: checkpoint_id,
    total_bytes, sha256, projector_only), and the file's bytes in `data` or, when it was
    written to a file, the file's `path` (then `data` is None)."""

    def __init__(self, header, data=None, path=None):
        self.header = header
        self.data = data
        self.path = path

    def __repr__(self):
        where = self.path if self.path is not None else f"{len(self.data)} bytes in memory"
        return f"Checkpoint({self.header.checkpoint_id}, sha256 {self.header.sha256}, {where})"


def is_terminal(status):
    """True once a JobStatus is SUCCEEDED, FAILED or CANCELLED."""
    return status.state in TERMINAL_STATES


def _read_text(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{what}: cannot read {path}: {e.strerror}") from None


def _load_token(token, token_file):
    if token is not None and token_file is not None:
        raise ValueError("give token or token_file, not both")
    if token_file is not None:
        # A mounted Secret often ends in a newline, as in common/net/security.cc.
        token = _read_text(token_file, "token_file").decode("utf-8", "replace").strip()
        if not token:
            raise ValueError(f"token_file: {token_file} is empty")
    if token is not None and (not token or any(not (0x21 <= ord(c) <= 0x7E) for c in token)):
        raise ValueError("token: empty, or holds characters a bearer token cannot carry")
    return token


def _channel_credentials(tls, cert_file, key_file):
    if tls is None:
        if cert_file is not None or key_file is not None:
            raise ValueError("cert_file/key_file need tls (a CA file)")
        return None
    if isinstance(tls, grpc.ChannelCredentials):
        if cert_file is not None or key_file is not None:
            raise ValueError("cert_file/key_file go into the grpc.ChannelCredentials given as tls")
        return tls
    if (cert_file is None) != (key_file is None):
        raise ValueError("give both cert_file and key_file (a client certificate), or neither")
    pems = {}
    for what, path in (("tls", tls), ("cert_file", cert_file), ("key_file", key_file)):
        if path is None:
            continue
        pems[what] = _read_text(os.fspath(path), what)
        if b"-----BEGIN " not in pems[what]:
            raise ValueError(f"{what}: {path} is not a PEM file")
    return grpc.ssl_channel_credentials(root_certificates=pems["tls"],
                                        private_key=pems.get("key_file"),
                                        certificate_chain=pems.get("cert_file"))


def _receive_checkpoint(chunks, write, verify, what):
    """Consumes a DownloadCheckpoint stream: passes each chunk's bytes to `write` and
    returns the header; raises RpcError (DATA_LOSS) when the bytes do not match the
    header's size or, with `verify`, its SHA-256."""
    header = None
    size = 0
    digest = hashlib.sha256() if verify else None
    try:
        for chunk in chunks:
            if header is None:
                if not chunk.HasField("header"):
                    raise RpcError(what, grpc.StatusCode.DATA_LOSS, "no header in the first chunk")
                header = chunk.header
            size += len(chunk.data)
            if size > header.total_bytes:
                raise RpcError(what, grpc.StatusCode.DATA_LOSS,
                               f"more bytes than the {header.total_bytes} announced")
            if digest is not None:
                digest.update(chunk.data)
            write(chunk.data)
    except grpc.RpcError as e:
        raise RpcError(what, e.code(), e.details()) from None
    if header is None:
        raise RpcError(what, grpc.StatusCode.DATA_LOSS, "empty stream")
    if size != header.total_bytes:
        raise RpcError(what, grpc.StatusCode.DATA_LOSS, f"got {size} of {header.total_bytes} bytes")
    if digest is not None and digest.hexdigest() != header.sha256:
        raise RpcError(what, grpc.StatusCode.DATA_LOSS,
                       f"SHA-256 {digest.hexdigest()} differs from the announced {header.sha256}")
    return header


class Client:
    """A connection to the coordinator at `target` ("host:port").

    tls: None for plaintext, a CA bundle's path (PEM) to use TLS and verify the
    coordinator with it, or a grpc.ChannelCredentials. cert_file/key_file: a client
    certificate, for a coordinator run with --tls_client_auth. server_name: the name to
    verify in the coordinator's certificate when `target` is not one (a port-forward).
    token or token_file: the bearer token, sent as `authorization: Bearer <token>` on
    every call (the coordinator's --auth_token_file); it needs TLS.
    timeout: the deadline of each call, in seconds (a checkpoint download gets
    download_timeout more). max_message_bytes: the largest message sent or received.
    """

    def __init__(self, target, tls=None, token=None, *, token_file=None, cert_file=None,
                 key_file=None, server_name=None, timeout=10.0, download_timeout=600.0,
                 max_message_bytes=8 << 20):
        if timeout is None or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        credentials = _channel_credentials(tls, cert_file, key_file)
        token = _load_token(token, token_file)
        if token is not None:
            if credentials is None:
                raise ValueError("a bearer token needs TLS (tls=CA file): over plaintext anyone on "
                                 "the path can read it")
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(token))
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        self.target = target
        self.timeout = timeout
        self.download_timeout = download_timeout
        # A stream of watch() that lasts this long is reopened: every call has a deadline,
        # even a watch without a timeout.
        self.watch_stream_timeout = 300.0
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._jobs = pb_grpc.JobServiceStub(self._channel)
        self._workers = pb_grpc.WorkerServiceStub(self._channel)
        self._checkpoints = pb_grpc.CheckpointServiceStub(self._channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, stub_method, request):
        try:
            return stub_method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise RpcError(method, e.code(), e.details()) from None

    # Jobs ------------------------------------------------------------------------------

    def submit(self, request):
        """Submits a SubmitJobRequest; returns the JobStatus (QUEUED, the spec resolved)."""
        return self._call("SubmitJob", self._jobs.SubmitJob, request)

    def submit_train(self, wait_for_workers=False, **spec):
        """Submits a training job whose TrainSpec has the fields given by keyword
        (world_size=2, projector="mlp2x_gelu", questions=[...]; protos/llava.proto has them
        all). Returns the JobStatus: its job_id names the job. wait_for_workers: queue it
        even if fewer matching workers are registered now than it needs. A field TrainSpec
        lacks is a ValueError here; a bad value is RpcError INVALID_ARGUMENT naming it."""
        request = pb.SubmitJobRequest(wait_for_workers=wait_for_workers)
        request.train.CopyFrom(_spec(pb.TrainSpec, spec))
        return self.submit(request)

    def submit_eval(self, checkpoint, wait_for_workers=False, **spec):
        """Submits an eval job of `checkpoint` (a checkpoint id, or a training job id for
        its final checkpoint) with the EvalSpec fields given by keyword (eval_digits=100,
        questions=[...]). Returns the JobStatus, as submit_train. Once SUCCEEDED, the job's
        status has eval_accuracy and eval_report_json."""
        request = pb.SubmitJobRequest(wait_for_workers=wait_for_workers)
        request.eval.CopyFrom(_spec(pb.EvalSpec, dict(spec, checkpoint=checkpoint)))
        return self.submit(request)

    def status(self, job_id, history=False):
        """The job's JobStatus; history=True adds every step's metrics."""
        return self._call("GetJob", self._jobs.GetJob,
                          pb.GetJobRequest(job_id=job_id, include_history=history))

    def list_jobs(self):
        """Every job's JobStatus, oldest first (without history or eval reports)."""
        return list(self._call("ListJobs", self._jobs.ListJobs, pb.ListJobsRequest()).jobs)

    def cancel(self, job_id):
        """Stops a queued or running job; returns its JobStatus. A finished job is
        RpcError FAILED_PRECONDITION."""
        return self._call("CancelJob", self._jobs.CancelJob, pb.CancelJobRequest(job_id=job_id))

    def watch(self, job_id, timeout=None):
        """Yields the job's JobStatus now and after every change, the last one terminal
        (SUCCEEDED, FAILED or CANCELLED). A stream the coordinator closes early (its bound
        on a stream's life, or a restart) is reopened, as the C++ client does. timeout:
        seconds in all (None: no limit), then RpcError DEADLINE_EXCEEDED."""
        end = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                state = pb.JobState.Name(last.state) if last is not None else "unknown"
                raise RpcError("WatchJob", grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"job {job_id} still {state} after {timeout} s")
            stream = self._jobs.WatchJob(
                pb.WatchJobRequest(job_id=job_id),
                timeout=self.watch_stream_timeout if remaining is None
                else min(remaining, self.watch_stream_timeout))
            try:
                for status in stream:
                    if status != last:  # a reopened stream repeats the current status
                        yield status
                    last = status
                    if is_terminal(status):
                        return
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                    raise RpcError("WatchJob", e.code(), e.details()) from None
            finally:
                stream.cancel()  # the caller may stop iterating early
            time.sleep(0.2)

    def wait(self, job_id, timeout=None):
        """The job's terminal JobStatus (watch() to the end)."""
        last = None
        for last in self.watch(job_id, timeout=timeout):
            pass
        return last

    # Workers and checkpoints -----------------------------------------------------------

    def workers(self):
        """The coordinator's workers: WorkerStatus (info, alive, running) each."""
        return list(self._call("ListWorkers", self._workers.ListWorkers,
                               pb.ListWorkersRequest()).workers)

    def checkpoints(self, job_id=""):
        """The stored checkpoints (CheckpointInfo), of one job or (empty) of all."""
        return list(self._call("ListCheckpoints", self._checkpoints.ListCheckpoints,
                               pb.ListCheckpointsRequest(job_id=job_id)).checkpoints)

    def fetch_checkpoint(self, checkpoint, path=None, projector_only=False, verify=True):
        """Downloads a checkpoint (an id, or a training job id for its latest checkpoint)
        as a stream of chunks and checks its size and, with verify, its SHA-256 against
        the header (RpcError DATA_LOSS on a mismatch). path: write the file there
        (replaced only once complete and verified), else keep the bytes in memory.
        projector_only: without the optimizer state. Returns a Checkpoint."""
        what = f"DownloadCheckpoint {checkpoint}"
        stream = self._checkpoints.DownloadCheckpoint(
            pb.DownloadCheckpointRequest(checkpoint=checkpoint, projector_only=projector_only),
            timeout=self.timeout + self.download_timeout)
        try:
            if path is None:
                parts = []
                header = _receive_checkpoint(stream, parts.append, verify, what)
                return Checkpoint(header, data=b"".join(parts))
            path = os.fspath(path)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                       prefix=os.path.basename(path) + ".", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    header = _receive_checkpoint(stream, f.write, verify, what)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
            return Checkpoint(header, path=path)
        finally:
            stream.cancel()


def _spec(message_type, fields):
    try:
        return message_type(**fields)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{message_type.DESCRIPTOR.name}: {e}") from None
