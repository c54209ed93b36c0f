#!/usr/bin/python3
"""scripts/accuracy_phrasings.py against runs made here: every phrasing of every run side by
side in the table (a phrasing missing from one run left blank), and each seed's largest drop
and gain from the baseline format over the phrasings both runs have.

Run by ctest (accuracy_phrasings_test) from the source directory.
"""
import contextlib
import importlib.util
import io
import json
import os
import tempfile
import unittest

SPEC = importlib.util.spec_from_file_location("accuracy_phrasings", "scripts/accuracy_phrasings.py")
ap = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ap)


class AccuracyPhrasingsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def run_dir(self, fmt, seed, per_question):
        d = os.path.join(self.dir.name, fmt, "runs", f"conv_aug_e3-s{seed}")
        os.makedirs(d)
        with open(os.path.join(d, "summary.json"), "w") as f:
            json.dump({"seed": seed, "per_question": per_question}, f)
        return os.path.join(self.dir.name, fmt)

    def test_table_and_drops(self):
        dense = self.run_dir("dense", 0, {"What digit is this?": 0.970, "Which digit?": 0.980})
        self.run_dir("dense", 1, {"What digit is this?": 0.975, "Which digit?": 0.975})
        fp8 = self.run_dir("fp8", 0, {"What digit is this?": 0.964, "Which digit?": 0.983})
        self.run_dir("fp8", 1, {"What digit is this?": 0.976})
        out = os.path.join(self.dir.name, "phrasings.tsv")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            rc = ap.main(["accuracy_phrasings.py", out, f"dense={dense}", f"fp8={fp8}"])
        self.assertEqual(rc, 0)
        with open(out) as f:
            rows = [line.rstrip("\n").split("\t") for line in f]
        self.assertEqual(rows[0], ["phrasing", "dense seed 0", "dense seed 1", "fp8 seed 0", "fp8 seed 1"])
        self.assertEqual(rows[1], ["What digit is this?", "0.9700", "0.9750", "0.9640", "0.9760"])
        self.assertEqual(rows[2], ["Which digit?", "0.9800", "0.9750", "0.9830", ""])
        lines = printed.getvalue().splitlines()
        # Seed 0: 0.6 points lower on the first phrasing, 0.3 higher on the second.
        self.assertIn("seed 0: 2 phrasings, largest drop +0.6 points ('What digit is this?'), "
                      "largest gain +0.3", lines[0])
        # Seed 1: only the phrasing both runs have counts.
        self.assertIn("seed 1: 1 phrasings, largest drop -0.1 points", lines[1])

    def test_usage(self):
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(ap.main(["accuracy_phrasings.py", "out.tsv", "no-equals-sign"]), 2)


if __name__ == "__main__":
    unittest.main()
