"""CUDA-path check of the stream engine and every continual learner (no Ray needed).

Runs each learner for a short Si-Blurry stream on the given device (digits for the CNN
baselines, the small ViT demo configs for the prompt learners) and prints A_auc / A_last and
the wall time, one line per learner; a failure prints its error and the check goes on.

    PYTHONPATH=. python scripts/gpu_stream_check.py --device cuda
"""

from __future__ import annotations

import argparse
import tempfile
import time
import traceback
from pathlib import Path

CONFIGS = {
    "finetune": "simulations/continual/finetune_digits.yaml",
    "er": "simulations/continual/er_digits.yaml",
    "ewcpp": "simulations/continual/ewcpp_digits.yaml",
    "lwf": "simulations/continual/lwf_digits.yaml",
    "mvp": "simulations/continual/mvp_digits_demo.yaml",
    "mvp_r": "simulations/continual/mvp_r_digits_demo.yaml",
    "l2p": "simulations/continual/l2p_digits_demo.yaml",
    "dualprompt": "simulations/continual/dualprompt_digits_demo.yaml",
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None)
    parser.add_argument("--learners", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    import torch

    from fedlt.config import load_config
    from fedlt.runner import run_experiment
    from fedlt.runs import RunDirectory

    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}", flush=True)
    out = Path(args.out or tempfile.mkdtemp(prefix="fedlt-gpu-stream-"))
    failures = 0
    for name in args.learners:
        path = CONFIGS[name]
        t0 = time.perf_counter()
        try:
            cfg = load_config(
                path,
                [
                    f"resources.device={args.device}",
                    f"output_dir={out}",
                    "logging.progress=false",
                ],
            )
            run = run_experiment(cfg, progress=False)
            final = (RunDirectory.at(run).read_summary() or {})["final"]
            print(
                f"{name:10s} {args.device}: A_auc {100 * final['A_auc']:.2f}  "
                f"A_last {100 * final['A_last']:.2f}  F_last {100 * final['F_last']:.2f}  "
                f"({time.perf_counter() - t0:.1f} s)",
                flush=True,
            )
        except Exception:
            failures += 1
            print(f"{name:10s} FAILED:\n{traceback.format_exc()[-1500:]}", flush=True)
    if torch.cuda.is_available():
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
