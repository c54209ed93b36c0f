#!/usr/bin/python3
"""bench/profile_summary.py against a Chrome trace made here whose sums are known: kernel
time per kind and per launching thread, the GPU's busy time as the union of overlapping
kernels, the span, the top kernels, the idle gaps split short from long, and a trace
without kernels reported as such.

Run by ctest (profile_summary_test) from the source directory.
"""
import importlib.util
import json
import os
import tempfile
import unittest

SPEC = importlib.util.spec_from_file_location("profile_summary", "bench/profile_summary.py")
ps = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ps)


def kernel(name, ts, dur, corr):
    return {"ph": "X", "cat": "kernel", "name": name, "ts": ts, "dur": dur,
            "args": {"correlation": corr}}


def launch(tid, corr):
    return {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 0, "dur": 1,
            "tid": tid, "args": {"correlation": corr}}


class ProfileSummaryTest(unittest.TestCase):
    def write(self, events):
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"traceEvents": events}, f)
        self.addCleanup(os.remove, path)
        return path

    def test_sums_kinds_threads_and_busy_time(self):
        fp8 = "nvjet_sm90_qqtst_128x128_128x6_1x1_h_bz_coopA_algo2_ovscale_TNT"
        bf16 = "nvjet_sm90_tst_256x144_64x4_2x1_v_bz_coopA_TNT"
        events = [
            # Forward thread 1: two FP8 GEMMs, RoPE overlapping the second.
            kernel(fp8, 100, 50, 1), launch(1, 1),
            kernel(fp8, 200, 50, 2), launch(1, 2),
            kernel("void llava::cuda::RopeKernel<float, float>", 240, 20, 3), launch(1, 3),
            # Backward thread 2: a bf16 GEMM and the quantization kernel.
            kernel(bf16, 300, 40, 4), launch(2, 4),
            kernel("void llava::cuda::QuantizeRowsKernel<float>", 400, 10, 5), launch(2, 5),
            # A memset launched by nobody the trace names.
            {"ph": "X", "cat": "gpu_memset", "name": "Memset (Device)", "ts": 500, "dur": 5},
        ]
        s = ps.summarize(self.write(events), top=3)
        self.assertAlmostEqual(s["span_ms"], (505 - 100) / 1e3)
        # 50 + [200, 260) + 40 + 10 + 5: the RoPE kernel overlaps the GEMM by 10 us.
        self.assertAlmostEqual(s["gpu_busy_ms"], (50 + 60 + 40 + 10 + 5) / 1e3)
        self.assertAlmostEqual(s["kernel_ms"], 175 / 1e3)
        self.assertEqual(s["kernels"], 6)
        self.assertAlmostEqual(s["by_kind_ms"]["fp8 gemm"], 0.100)
        self.assertAlmostEqual(s["by_kind_ms"]["gemm"], 0.040)
        self.assertAlmostEqual(s["by_kind_ms"]["rope"], 0.020)
        self.assertAlmostEqual(s["by_kind_ms"]["fp8 quantize"], 0.010)
        self.assertAlmostEqual(s["by_kind_ms"]["copy"], 0.005)
        self.assertAlmostEqual(s["by_thread_ms"]["1"], 0.120)
        self.assertAlmostEqual(s["by_thread_ms"]["2"], 0.050)
        self.assertAlmostEqual(s["by_thread_ms"]["?"], 0.005)
        self.assertEqual([t["name"] for t in s["top"]], [fp8, bf16, "void llava::cuda::RopeKernel<float, float>"])
        self.assertEqual(s["top"][0]["count"], 2)
        # Gaps: [150, 200) 50 us (short, at the limit), [260, 300) 40 us (short),
        # [340, 400) 60 us and [410, 500) 90 us (long); the overlap at 240 is no gap.
        self.assertAlmostEqual(s["idle_short_ms"], 0.090)
        self.assertEqual(s["idle_short_gaps"], 2)
        self.assertAlmostEqual(s["idle_long_ms"], 0.150)
        self.assertEqual(s["idle_long_gaps"], 2)
        self.assertEqual([(g["at_ms"], g["ms"]) for g in s["longest_gaps"]],
                         [(0.310, 0.090), (0.240, 0.060), (0.050, 0.050), (0.160, 0.040)])

    def test_trace_without_kernels(self):
        s = ps.summarize(self.write([launch(1, 1)]), top=5)
        self.assertIn("no GPU kernels", s["error"])


if __name__ == "__main__":
    unittest.main()
