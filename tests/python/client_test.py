#!/usr/bin/python3
"""The Python client (clients/python/llava_client) and the CLI's --json output against
real processes on loopback: a coordinator and two CPU workers (Gloo) with the demo LM
that setup builds, then a coordinator with TLS and a bearer token (scripts/dev_certs.sh).

Checks that a training job submitted from Python runs to SUCCEEDED through watch(), that
fetch_checkpoint's file is byte-identical to `llava-mnist fetch-checkpoint`'s and a
checkpoint damaged in transit is refused, that an eval job's accuracy is the one its
report's samples give (labels from the MNIST files), that a queued job cancels, that
errors carry their gRPC codes, that the CLI's --json lines are the messages the Python
client gets, and that a wrong or missing token is UNAUTHENTICATED. The coordinator and
the CLI are llava-ctl's (the control plane without libtorch), the workers llava-mnist's;
llava-mnist's client commands answer as llava-ctl's do.

Run by ctest (python_client_test) from the source directory, after
clients/python/generate.sh, with Debian's python3 (python3-grpcio, python3-protobuf);
LLAVA_BINARY names llava-mnist, LLAVA_CTL llava-ctl. Every process started here is
stopped at the end and dies with this one (PR_SET_PDEATHSIG).
"""
import ctypes
import gzip
import hashlib
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import json_format

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import llava_client  # noqa: E402
from llava_client import Client, RpcError, pb  # noqa: E402

BINARY = os.environ.get("LLAVA_BINARY", os.path.join(ROOT, "build", "bin", "llava-mnist"))
CTL = os.environ.get("LLAVA_CTL", os.path.join(ROOT, "build", "bin", "llava-ctl"))
DEMO_LM = os.path.join(ROOT, "data", "models", "demo-lm")
MNIST = os.path.join(ROOT, "data", "mnist")
CODE = grpc.StatusCode


def _die_with_parent():
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Processes:
    """The processes a test class started; stop_all() ends them (SIGTERM, then SIGKILL)."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.procs = {}

    def spawn(self, name, argv):
        log = open(os.path.join(self.log_dir, name + ".log"), "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            preexec_fn=_die_with_parent, cwd=ROOT)
        log.close()
        return self.procs[name]

    def check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError(f"{name} exited with status {p.returncode}; its log ends:\n{self.log_tail(name)}")

    def log_tail(self, name, size=3000):
        # The directory goes at the end of the test class: the message carries the log.
        with open(os.path.join(self.log_dir, name + ".log"), "rb") as f:
            return f.read()[-size:].decode("utf-8", "replace")

    def stop_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_coordinator(procs, state_dir, extra=()):
    """Starts a coordinator on a free loopback port; returns "127.0.0.1:PORT"."""
    port_file = os.path.join(state_dir, "port")
    procs.spawn("coordinator", [CTL, "coordinator", "--listen=127.0.0.1:0", f"--state_dir={state_dir}/state",
                                f"--port_file={port_file}", "--heartbeat_interval_ms=100", "--tick_ms=20",
                                "--worker_timeout_ms=3000", "--collective_timeout_ms=15000", *extra])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        procs.check_alive()
        if os.path.exists(port_file):
            with open(port_file) as f:
                return "127.0.0.1:" + f.read().strip()
        time.sleep(0.05)
    raise AssertionError("the coordinator wrote no port file in 30 s; its log ends:\n" + procs.log_tail("coordinator"))


def run_cli(*args, timeout=300, binary=CTL):
    """Runs a client command of llava-ctl (or `binary`); returns the CompletedProcess (text)."""
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


def json_lines(stdout, message_type):
    """Each line of stdout as JSON (json.loads) and as the message (strict protobuf JSON)."""
    out = []
    for line in stdout.splitlines():
        out.append((json.loads(line), json_format.Parse(line, message_type())))
    return out


def mnist_test_labels():
    with gzip.open(os.path.join(MNIST, "test-labels-idx1-ubyte.gz"), "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    assert magic == 2049, magic
    return data[8:8 + count]


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class ClusterTest(unittest.TestCase):
    """A coordinator and two workers, shared by the tests of this class."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="python_client_test.")
        cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)
        cls.procs = Processes(cls.dir)
        cls.addClassCleanup(cls.procs.stop_all)
        cls.address = start_coordinator(cls.procs, cls.dir)
        for i in range(2):
            cls.procs.spawn(f"worker-{i}", [
                BINARY, "worker", f"--coordinator={cls.address}", f"--worker_id=worker-{i}", f"--model={DEMO_LM}",
                f"--tokenizer={DEMO_LM}/tokenizer.json", f"--data_dir={MNIST}", "--device=cpu", "--threads=1",
                "--collective_host=127.0.0.1", "--rpc_timeout_ms=5000"])
        cls.client = Client(cls.address, timeout=10)
        cls.addClassCleanup(cls.client.close)
        deadline = time.monotonic() + 120
        while True:
            cls.procs.check_alive()
            idle = [w for w in cls.client.workers() if w.alive and not w.running.job_id]
            if len(idle) == 2:
                break
            if time.monotonic() > deadline:
                raise AssertionError("fewer than 2 idle workers after 120 s; the coordinator's log ends:\n"
                                     + cls.procs.log_tail("coordinator"))
            time.sleep(0.1)

    def cli(self, *args):
        return run_cli(*args, f"--coordinator={self.address}")

    def test_llava_mnist_client_commands_answer_as_llava_ctl(self):
        job = self.client.submit_train(world_size=3, train_digits=8, wait_for_workers=True)
        self.addCleanup(self.client.cancel, job.job_id)
        for args in (["status", job.job_id, "--json"], ["status", job.job_id], ["list", "--json"], ["list"],
                     ["health"], ["status", "train-999999"]):
            ctl = self.cli(*args)
            mnist = run_cli(*args, f"--coordinator={self.address}", binary=BINARY)
            self.assertEqual((mnist.returncode, mnist.stdout), (ctl.returncode, ctl.stdout), args)
            self.assertEqual(mnist.stderr.replace("llava-mnist ", "llava-ctl "), ctl.stderr, args)
        self.assertEqual(self.cli("health").stdout, f"{self.address} (liveness) SERVING\n")
        r = self.cli("submit", "train", "--world_size=3", "--wait_for_workers", "--train_digits=8",
                     "--projector=mlp2x_gelu", "--projector_hidden=32", "--questions=A?|B?", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        [(obj, msg)] = json_lines(r.stdout, pb.JobStatus)
        self.addCleanup(self.client.cancel, msg.job_id)
        self.assertEqual((msg.train.projector, msg.train.projector_hidden, list(msg.train.questions)),
                         ("mlp2x_gelu", 32, ["A?", "B?"]))
        # The coordinator checks a job by the workers' rules (common/job_spec.h).
        r = self.cli("submit", "train", "--world_size=1", "--projector=linear", "--projector_hidden=8")
        self.assertEqual(r.returncode, 2)
        self.assertIn("projector_hidden applies to mlp2x_gelu", r.stderr)
        # llava-ctl has the control plane's commands only.
        r = subprocess.run([CTL, "train"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'train'", r.stderr)

    def test_reflection_lists_the_services(self):
        # grpc.reflection.v1alpha, encoded by hand (Debian ships no reflection stubs):
        # ServerReflectionRequest{list_services: ""} (field 7), and in the answer
        # ServerReflectionResponse.list_services_response (6) -> service (1) -> name (1).
        def fields(data):
            i = 0
            while i < len(data):
                key, i = varint(data, i)
                if key & 7 == 2:
                    n, i = varint(data, i)
                    yield key >> 3, data[i:i + n]
                    i += n
                elif key & 7 == 0:
                    _, i = varint(data, i)
                else:
                    raise AssertionError(f"unexpected wire type {key & 7}")

        def varint(data, i):
            v, shift = 0, 0
            while True:
                b = data[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    return v, i

        channel = grpc.insecure_channel(self.address)
        call = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                     request_serializer=lambda b: b, response_deserializer=lambda b: b)
        answers = list(call(iter([b"\x3a\x00"]), timeout=10))
        channel.close()
        self.assertEqual(len(answers), 1)
        names = {name.decode() for f, listing in fields(answers[0]) if f == 6
                 for g, service in fields(listing) if g == 1
                 for h, name in fields(service) if h == 1}
        for service in ("llava.v1.JobService", "llava.v1.WorkerService", "llava.v1.RendezvousService",
                        "llava.v1.CheckpointService", "grpc.health.v1.Health"):
            self.assertIn(service, names)

    def test_errors_carry_the_grpc_code(self):
        with self.assertRaises(RpcError) as e:
            self.client.status("train-999999")
        self.assertEqual(e.exception.code, CODE.NOT_FOUND)
        self.assertEqual(e.exception.method, "GetJob")
        self.assertIn("train-999999", e.exception.details)
        with self.assertRaises(RpcError) as e:
            self.client.cancel("train-999999")
        self.assertEqual(e.exception.code, CODE.NOT_FOUND)
        with self.assertRaises(RpcError) as e:
            list(self.client.watch("train-999999", timeout=10))
        self.assertEqual(e.exception.code, CODE.NOT_FOUND)
        with self.assertRaises(RpcError) as e:
            self.client.fetch_checkpoint("train-999999")
        self.assertEqual(e.exception.code, CODE.NOT_FOUND)

        with self.assertRaises(RpcError) as e:
            self.client.submit_train(world_size=1, batch_size=0)
        self.assertEqual(e.exception.code, CODE.INVALID_ARGUMENT)
        self.assertIn("batch_size", e.exception.details)
        self.assertIn("INVALID_ARGUMENT", str(e.exception))
        with self.assertRaises(RpcError) as e:
            self.client.submit_train(world_size=3)  # 2 workers, not waiting for more
        self.assertEqual(e.exception.code, CODE.FAILED_PRECONDITION)
        # A field TrainSpec does not have never leaves the client.
        with self.assertRaisesRegex(ValueError, "bach_size"):
            self.client.submit_train(world_size=1, bach_size=2)
        self.assertEqual([j.job_id for j in self.client.list_jobs() if j.train.batch_size in (0, 2)], [])

        r = self.cli("status", "train-999999", "--json")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertIn("train-999999", r.stderr)

    def test_a_queued_job_is_cancelled(self):
        # Three ranks on two workers: it waits in the queue.
        r = self.cli("submit", "train", "--world_size=3", "--wait_for_workers", "--train_digits=16", "--quiet")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^train-\d{6}\n$")
        job_id = r.stdout.strip()
        self.assertEqual(self.client.status(job_id).state, pb.JOB_STATE_QUEUED)
        r = self.cli("cancel", job_id, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        [(obj, msg)] = json_lines(r.stdout, pb.JobStatus)
        self.assertEqual(obj["jobId"], job_id)
        self.assertEqual(obj["state"], "JOB_STATE_CANCELLED")
        self.assertEqual(msg.train.world_size, 3)

        queued = self.client.submit_train(world_size=3, train_digits=16, wait_for_workers=True)
        self.assertEqual(queued.state, pb.JOB_STATE_QUEUED)
        self.assertEqual(queued.train.world_size, 3)
        # Streams that end every 0.3 s are reopened; the status they repeat is yielded once.
        watcher = Client(self.address, timeout=10)
        self.addCleanup(watcher.close)
        watcher.watch_stream_timeout = 0.3
        seen = []
        start = time.monotonic()
        with self.assertRaises(RpcError) as e:
            for s in watcher.watch(queued.job_id, timeout=2):
                seen.append(s)
        self.assertEqual(e.exception.code, CODE.DEADLINE_EXCEEDED)
        self.assertIn("still JOB_STATE_QUEUED after 2 s", e.exception.details)
        self.assertGreaterEqual(time.monotonic() - start, 2)
        self.assertEqual(seen, [self.client.status(queued.job_id)])
        # Cancelled while watched through reopened streams: the watch ends with it.
        canceller = threading.Timer(1.0, self.client.cancel, [queued.job_id])
        canceller.start()
        try:
            seen = list(watcher.watch(queued.job_id, timeout=30))
        finally:
            canceller.join()
        self.assertEqual([s.state for s in seen], [pb.JOB_STATE_QUEUED, pb.JOB_STATE_CANCELLED])
        self.assertEqual(list(self.client.watch(queued.job_id, timeout=30)), seen[-1:])
        with self.assertRaises(RpcError) as e:
            self.client.cancel(queued.job_id)
        self.assertEqual(e.exception.code, CODE.FAILED_PRECONDITION)

    def test_train_fetch_and_eval_from_python_and_the_cli_json(self):
        questions = ["What digit is this?", "What is this number?"]
        job = self.client.submit_train(world_size=2, projector="linear", train_digits=64, batch_size=8, lr=2e-3,
                                       seed=3, checkpoint_every_steps=2, questions=questions)
        self.assertRegex(job.job_id, r"^train-\d{6}$")
        self.assertEqual(job.kind, pb.JOB_KIND_TRAIN)
        self.assertEqual(list(job.train.questions), questions)

        seen = list(self.client.watch(job.job_id, timeout=300))
        final = seen[-1]
        self.assertEqual(final.state, pb.JOB_STATE_SUCCEEDED, final)
        self.assertTrue(all(not llava_client.is_terminal(s) for s in seen[:-1]))
        steps = [s.step for s in seen]
        self.assertEqual(steps, sorted(steps))
        self.assertEqual(final.total_steps, 4)  # 64 digits / (8 x 2)
        self.assertEqual(final.step, 4)
        self.assertEqual(final.latest_checkpoint_id, f"{job.job_id}/step-000004")
        self.assertEqual(sorted(final.worker_ids), ["worker-0", "worker-1"])
        with_history = self.client.status(job.job_id, history=True)
        self.assertEqual([m.step for m in with_history.history], [1, 2, 3, 4])
        self.assertTrue(all(math.isfinite(m.loss) and m.loss > 0 for m in with_history.history))
        self.assertEqual([c.checkpoint_id for c in self.client.checkpoints(job.job_id)],
                         [f"{job.job_id}/step-000002", f"{job.job_id}/step-000004"])

        # The checkpoint: the Python client's file is the CLI's, byte for byte.
        py_path = os.path.join(self.dir, "py.safetensors")
        fetched = self.client.fetch_checkpoint(job.job_id, path=py_path)
        self.assertEqual(fetched.header.checkpoint_id, final.latest_checkpoint_id)
        self.assertEqual(fetched.path, py_path)
        self.assertEqual(os.path.getsize(py_path), fetched.header.total_bytes)
        self.assertEqual(sha256_file(py_path), fetched.header.sha256)
        cli_path = os.path.join(self.dir, "cli.safetensors")
        r = self.cli("fetch-checkpoint", job.job_id, f"--out={cli_path}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(fetched.header.sha256, r.stdout)
        self.assertEqual(sha256_file(cli_path), sha256_file(py_path))
        in_memory = self.client.fetch_checkpoint(final.latest_checkpoint_id)
        with open(py_path, "rb") as f:
            self.assertEqual(in_memory.data, f.read())
        slim = self.client.fetch_checkpoint(job.job_id, projector_only=True)
        self.assertTrue(slim.header.projector_only)
        self.assertLess(len(slim.data), len(in_memory.data))
        self.assertEqual(hashlib.sha256(slim.data).hexdigest(), slim.header.sha256)

        # The real stream damaged in transit: one byte changed, or the last one missing.
        def damaged(how):
            stream = self.client._checkpoints.DownloadCheckpoint(
                pb.DownloadCheckpointRequest(checkpoint=job.job_id), timeout=60)
            chunks = list(stream)
            last = chunks[-1]
            data = bytearray(last.data)
            if how == "flip":
                data[len(data) // 2] ^= 0x01
            else:
                data = data[:-1]
            last.data = bytes(data)
            return chunks

        with self.assertRaises(RpcError) as e:
            llava_client.client._receive_checkpoint(damaged("flip"), lambda b: None, True, "test")
        self.assertEqual(e.exception.code, CODE.DATA_LOSS)
        self.assertIn("SHA-256", e.exception.details)
        # Without verify the changed byte passes: the SHA-256 is what caught it.
        llava_client.client._receive_checkpoint(damaged("flip"), lambda b: None, False, "test")
        with self.assertRaises(RpcError) as e:
            llava_client.client._receive_checkpoint(damaged("cut"), lambda b: None, False, "test")
        self.assertEqual(e.exception.code, CODE.DATA_LOSS)
        self.assertIn(f"got {fetched.header.total_bytes - 1} of {fetched.header.total_bytes} bytes",
                      e.exception.details)

        # The CLI's JSON is the messages the Python client gets.
        r = self.cli("status", job.job_id, "--history", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        [(obj, msg)] = json_lines(r.stdout, pb.JobStatus)
        self.assertEqual(msg, self.client.status(job.job_id, history=True))
        self.assertEqual(obj["state"], "JOB_STATE_SUCCEEDED")
        self.assertEqual(obj["totalSteps"], "4")  # int64: a string in protobuf's JSON
        self.assertEqual(obj["latestCheckpointId"], final.latest_checkpoint_id)
        self.assertEqual(len(obj["history"]), 4)
        self.assertEqual(obj["resumedFromStep"], "0")  # zeros are printed too
        r = self.cli("list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([m.job_id for _, m in json_lines(r.stdout, pb.JobStatus)],
                         [j.job_id for j in self.client.list_jobs()])
        r = self.cli("workers", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        workers = json_lines(r.stdout, pb.WorkerStatus)
        self.assertEqual(sorted(o["info"]["workerId"] for o, _ in workers), ["worker-0", "worker-1"])
        self.assertTrue(all(o["alive"] is True and o["info"]["device"] == "cpu" for o, _ in workers))
        self.assertEqual(sorted(m.info.worker_id for _, m in workers),
                         sorted(w.info.worker_id for w in self.client.workers()))

        # An eval job from Python, watched by the CLI at the same time.
        eval_job = self.client.submit_eval(job.job_id, eval_digits=40, batch_size=20, questions=questions[:1])
        self.assertEqual(eval_job.eval.checkpoint, final.latest_checkpoint_id)  # resolved
        cli_watch = subprocess.Popen([CTL, "watch", eval_job.job_id, "--json", f"--coordinator={self.address}",
                                      "--watch_timeout_ms=300000"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                     preexec_fn=_die_with_parent)
        try:
            done = self.client.wait(eval_job.job_id, timeout=300)
            out, err = cli_watch.communicate(timeout=60)
        finally:
            if cli_watch.poll() is None:
                cli_watch.kill()
                cli_watch.wait()
        self.assertEqual(done.state, pb.JOB_STATE_SUCCEEDED, done)
        self.assertEqual(cli_watch.returncode, 0, err)
        lines = json_lines(out, pb.JobStatus)
        self.assertEqual(lines[-1][1], done)
        self.assertEqual(lines[-1][0]["evalImagesDone"], "40")
        self.assertTrue(all(o["state"] != "JOB_STATE_SUCCEEDED" for o, _ in lines[:-1]))

        report = json.loads(done.eval_report_json)
        samples = report["samples"]
        self.assertEqual(len(samples), 40)
        labels = mnist_test_labels()
        self.assertEqual(sorted(s["index"] for s in samples), list(range(40)))
        self.assertTrue(all(s["label"] == labels[s["index"]] for s in samples))
        correct = sum(1 for s in samples if s["predicted"] == s["label"])
        self.assertAlmostEqual(done.eval_accuracy, correct / 40, places=12)
        self.assertEqual(report["totals"]["correct"], correct)
        print(f"eval of {job.job_id}: accuracy {done.eval_accuracy:.3f} on 40 digits after 4 steps")


class TlsTokenTest(unittest.TestCase):
    """A coordinator with TLS and a bearer token (no workers: jobs wait in the queue)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="python_client_tls_test.")
        cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)
        certs, other = os.path.join(cls.dir, "certs"), os.path.join(cls.dir, "other-certs")
        for d in (certs, other):
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "dev_certs.sh"), d], check=True,
                           capture_output=True, timeout=60)
        cls.ca = os.path.join(certs, "ca.crt")
        cls.other_ca = os.path.join(other, "ca.crt")
        cls.server_cert = os.path.join(certs, "server-tls", "tls.crt")
        cls.token_file = os.path.join(certs, "auth", "token")
        cls.procs = Processes(cls.dir)
        cls.addClassCleanup(cls.procs.stop_all)
        cls.address = start_coordinator(cls.procs, cls.dir, [
            f"--tls_cert={cls.server_cert}", f"--tls_key={certs}/server-tls/tls.key",
            f"--auth_token_file={cls.token_file}"])

    def client(self, **kwargs):
        c = Client(self.address, timeout=10, **kwargs)
        self.addCleanup(c.close)
        return c

    def test_the_right_token_over_tls_works(self):
        c = self.client(tls=self.ca, token_file=self.token_file)
        job = c.submit_train(world_size=1, train_digits=8, wait_for_workers=True)
        self.assertEqual(job.state, pb.JOB_STATE_QUEUED)
        with open(self.token_file) as f:
            by_string = self.client(tls=self.ca, token=f.read().strip())
        self.assertIn(job.job_id, [j.job_id for j in by_string.list_jobs()])
        self.assertEqual(by_string.status(job.job_id).state, pb.JOB_STATE_QUEUED)
        self.assertEqual(c.workers(), [])
        # The CLI over TLS with the token, in JSON.
        r = run_cli("list", "--json", f"--coordinator={self.address}", f"--tls_ca={self.ca}",
                    f"--auth_token_file={self.token_file}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([m.job_id for _, m in json_lines(r.stdout, pb.JobStatus)],
                         [j.job_id for j in c.list_jobs()])
        self.assertEqual(c.cancel(job.job_id).state, pb.JOB_STATE_CANCELLED)

    def test_a_wrong_or_missing_token_is_unauthenticated_and_changes_nothing(self):
        good = self.client(tls=self.ca, token_file=self.token_file)
        before = [j.job_id for j in good.list_jobs()]
        for kwargs in ({"token": "0" * 64}, {}):
            c = self.client(tls=self.ca, **kwargs)
            for call in (c.list_jobs, lambda: c.status("train-000001"),
                         lambda: c.submit_train(world_size=1, wait_for_workers=True),
                         lambda: list(c.watch("train-000001", timeout=10)),
                         lambda: c.fetch_checkpoint("train-000001")):
                with self.assertRaises(RpcError) as e:
                    call()
                self.assertEqual(e.exception.code, CODE.UNAUTHENTICATED, (kwargs, e.exception))
        self.assertEqual([j.job_id for j in good.list_jobs()], before)
        r = run_cli("list", "--json", f"--coordinator={self.address}", f"--tls_ca={self.ca}")
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing bearer token", r.stderr)

    def test_plaintext_or_an_unknown_ca_cannot_connect(self):
        with self.assertRaises(RpcError) as e:
            self.client().list_jobs()
        self.assertEqual(e.exception.code, CODE.UNAVAILABLE)
        # Another CA's: the coordinator's certificate does not verify.
        with self.assertRaises(RpcError) as e:
            self.client(tls=self.other_ca, token_file=self.token_file).list_jobs()
        self.assertEqual(e.exception.code, CODE.UNAVAILABLE)

    def test_bad_client_settings_are_refused_before_any_call(self):
        with self.assertRaisesRegex(ValueError, "needs TLS"):
            Client(self.address, token="abc")
        with self.assertRaisesRegex(ValueError, "no-such-ca.pem"):
            Client(self.address, tls=os.path.join(self.dir, "no-such-ca.pem"))
        with self.assertRaisesRegex(ValueError, "not a PEM file"):
            Client(self.address, tls=self.token_file)
        with self.assertRaisesRegex(ValueError, "not both"):
            Client(self.address, tls=self.ca, token="abc", token_file=self.token_file)
        with self.assertRaisesRegex(ValueError, "cannot carry"):
            Client(self.address, tls=self.ca, token="a b")


if __name__ == "__main__":
    unittest.main(verbosity=2)
