#!/usr/bin/env python3
"""Load on the coordinator beside a training job (issue 15): N concurrent clients call
GetJob, ListJobs, ListWorkers, WatchJob (bounded) and DownloadCheckpoint for S seconds
while two CPU workers train; prints requests, errors by code, latency p50/p99, the
coordinator's peak RSS and the training step rate before and during the load.

  bench/control_plane_load.py --binary build/bin/llava-mnist [--clients 100] [--seconds 30]

Needs the demo LM (scripts/setup.sh) and the Python stubs (clients/python/generate.sh).
Everything runs on loopback and stops by itself.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import grpc  # noqa: E402
from llava_client._proto import llava_pb2, llava_pb2_grpc  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join(ROOT, "build/bin/llava-mnist"))
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--baseline_seconds", type=float, default=20)
    p.add_argument("--json", help="write the summary here too")
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="llava-load-")
    demo = os.path.join(ROOT, "data/models/demo-lm")
    procs = []

    def spawn(args, log):
        procs.append(subprocess.Popen([a.binary] + args, stdout=open(os.path.join(work, log), "w"),
                                      stderr=subprocess.STDOUT))
        return procs[-1]

    try:
        coord = spawn(["coordinator", "--listen=127.0.0.1:0", f"--state_dir={work}/state",
                       f"--port_file={work}/port", "--heartbeat_interval_ms=200"], "coordinator.log")
        for _ in range(300):
            if os.path.exists(f"{work}/port"):
                break
            time.sleep(0.1)
        target = "127.0.0.1:" + open(f"{work}/port").read().strip()
        for w in ("w0", "w1"):
            spawn(["worker", f"--coordinator={target}", f"--worker_id={w}", f"--model={demo}",
                   f"--tokenizer={demo}/tokenizer.json", f"--data_dir={ROOT}/data/mnist", "--device=cpu",
                   "--threads=1"], f"{w}.log")
        channel = grpc.insecure_channel(target)
        jobs = llava_pb2_grpc.JobServiceStub(channel)
        workers = llava_pb2_grpc.WorkerServiceStub(channel)
        ckpts = llava_pb2_grpc.CheckpointServiceStub(channel)
        for _ in range(600):
            live = [w for w in workers.ListWorkers(llava_pb2.ListWorkersRequest(), timeout=5).workers if w.alive]
            if len(live) >= 2:
                break
            time.sleep(0.2)
        # Long enough to outlast the measurement; cancelled at the end.
        spec = llava_pb2.TrainSpec(world_size=2, batch_size=2, train_digits=2000, epochs=1000,
                                   max_steps=1000000, checkpoint_every_steps=20)
        job = jobs.SubmitJob(llava_pb2.SubmitJobRequest(train=spec), timeout=10).job_id

        def step_rate(seconds):
            s0 = jobs.GetJob(llava_pb2.GetJobRequest(job_id=job), timeout=10)
            t0 = time.time()
            time.sleep(seconds)
            s1 = jobs.GetJob(llava_pb2.GetJobRequest(job_id=job), timeout=10)
            return (s1.step - s0.step) / (time.time() - t0)

        while jobs.GetJob(llava_pb2.GetJobRequest(job_id=job), timeout=10).latest_checkpoint_step < 20:
            time.sleep(0.5)
        base_rate = step_rate(a.baseline_seconds)
        rss_before = rss_kib(coord.pid)

        latencies, codes, lock = [], {}, threading.Lock()
        stop = time.time() + a.seconds
        rss_peak = [rss_before]

        def client(i):
            rng = random.Random(i)
            ch = grpc.insecure_channel(target)
            j = llava_pb2_grpc.JobServiceStub(ch)
            w = llava_pb2_grpc.WorkerServiceStub(ch)
            c = llava_pb2_grpc.CheckpointServiceStub(ch)
            calls = [
                lambda: j.GetJob(llava_pb2.GetJobRequest(job_id=job), timeout=5),
                lambda: j.ListJobs(llava_pb2.ListJobsRequest(), timeout=5),
                lambda: w.ListWorkers(llava_pb2.ListWorkersRequest(), timeout=5),
                lambda: c.ListCheckpoints(llava_pb2.ListCheckpointsRequest(job_id=job), timeout=5),
                lambda: j.GetJob(llava_pb2.GetJobRequest(job_id="train-999999"), timeout=5),
                lambda: [x for x in j.WatchJob(llava_pb2.WatchJobRequest(job_id=job), timeout=1.0)],
            ]
            while time.time() < stop:
                k = rng.randrange(len(calls))
                t0 = time.time()
                try:
                    calls[k]()
                    code = "OK"
                except grpc.RpcError as e:
                    code = e.code().name
                    if k == 5 and code == "DEADLINE_EXCEEDED":
                        code = "OK"  # a watch ends at its own deadline
                    if k == 4 and code == "NOT_FOUND":
                        code = "OK"  # asked for on purpose
                dt = time.time() - t0
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                    if k != 5:
                        latencies.append(dt)
            ch.close()

        def sample_rss():
            while time.time() < stop:
                rss_peak[0] = max(rss_peak[0], rss_kib(coord.pid))
                time.sleep(0.5)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
        threads.append(threading.Thread(target=sample_rss))
        t0 = time.time()
        rate_during = [0.0]
        rate_thread = threading.Thread(target=lambda: rate_during.__setitem__(0, step_rate(a.seconds - 2)))
        for t in threads + [rate_thread]:
            t.start()
        for t in threads + [rate_thread]:
            t.join()
        elapsed = time.time() - t0
        latencies.sort()
        total = sum(codes.values())
        summary = {
            "clients": a.clients, "seconds": round(elapsed, 1), "requests": total,
            "requests_per_s": round(total / elapsed, 1), "codes": codes,
            "errors": total - codes.get("OK", 0),
            "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
            "latency_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
            "coordinator_rss_mib_before": round(rss_before / 1024, 1),
            "coordinator_rss_mib_peak": round(rss_peak[0] / 1024, 1),
            "train_steps_per_s_before": round(base_rate, 2),
            "train_steps_per_s_during": round(rate_during[0], 2),
        }
        state = jobs.GetJob(llava_pb2.GetJobRequest(job_id=job), timeout=10).state
        summary["train_job_state_after"] = llava_pb2.JobState.Name(state)
        print(json.dumps(summary, indent=1))
        jobs.CancelJob(llava_pb2.CancelJobRequest(job_id=job), timeout=10)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(summary, f, indent=1)
    finally:
        for pr in procs:
            pr.send_signal(signal.SIGTERM)
        for pr in procs:
            try:
                pr.wait(10)
            except subprocess.TimeoutExpired:
                pr.kill()


if __name__ == "__main__":
    main()
