#!/usr/bin/python3
"""Trains a projector on the coordinator's workers, fetches the checkpoint and evaluates
it: the Python form of `llava-mnist submit train --wait` + `fetch-checkpoint` +
`submit eval --wait`.

    clients/python/generate.sh
    PYTHONPATH=clients/python python3 clients/python/examples/train_and_eval.py \\
        --coordinator 127.0.0.1:50051 --world_size 2
    # TLS and a token: --tls_ca certs/ca.crt --token_file certs/auth/token
"""
import argparse
import json
import sys

from llava_client import Client, RpcError, pb


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coordinator", default="127.0.0.1:50051")
    p.add_argument("--tls_ca", help="CA bundle (PEM): use TLS and verify the coordinator with it")
    p.add_argument("--token_file", help="bearer token file (the coordinator's --auth_token_file)")
    p.add_argument("--world_size", type=int, default=2)
    p.add_argument("--projector", default="linear")
    p.add_argument("--train_digits", type=int, default=1000)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--eval_digits", type=int, default=200)
    p.add_argument("--out", default="projector.safetensors", help="where the checkpoint goes")
    a = p.parse_args()

    with Client(a.coordinator, tls=a.tls_ca, token_file=a.token_file) as client:
        for w in client.workers():
            print(f"worker {w.info.worker_id}: {'alive' if w.alive else 'lost'} on {w.info.device}")
        job = client.submit_train(world_size=a.world_size, projector=a.projector, train_digits=a.train_digits,
                                  batch_size=a.batch_size, lr=2e-3,
                                  questions=["What digit is this?", "Which digit is shown?"],
                                  wait_for_workers=True)  # workers may still be loading the model
        print(f"training job {job.job_id}")
        shown = None
        for s in client.watch(job.job_id):
            loss = f" loss {s.last_step.loss:.4f}" if s.HasField("last_step") else ""
            line = f"  {pb.JobState.Name(s.state)} step {s.step}/{s.total_steps}{loss}"
            if line != shown:  # a status also changes for what this line leaves out
                print(line)
            shown = line
        if s.state != pb.JOB_STATE_SUCCEEDED:
            print(f"training ended {pb.JobState.Name(s.state)}: {s.reason}", file=sys.stderr)
            return 1
        ckpt = client.fetch_checkpoint(job.job_id, path=a.out, projector_only=True)
        print(f"checkpoint {ckpt.header.checkpoint_id} -> {ckpt.path} (sha256 {ckpt.header.sha256})")

        eval_job = client.submit_eval(job.job_id, eval_digits=a.eval_digits,
                                      questions=["What digit is this?", "What is this number?"])
        done = client.wait(eval_job.job_id)
        if done.state != pb.JOB_STATE_SUCCEEDED:
            print(f"eval ended {pb.JobState.Name(done.state)}: {done.reason}", file=sys.stderr)
            return 1
        report = json.loads(done.eval_report_json)
        print(f"eval {eval_job.job_id}: accuracy {done.eval_accuracy:.3f}")
        for q in report["per_question"]:
            print(f"  {q['question']!r}: {q['correct']}/{q['samples']} ({q['accuracy']:.3f})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RpcError as e:
        print(f"train_and_eval: {e}", file=sys.stderr)
        sys.exit(1)
