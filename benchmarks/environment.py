"""What a benchmark run's environment was: thread variables and pool sizes, printed beside the figures.

Every headline figure is measured in the default environment (no thread variables set); this
records what that meant on the machine that ran it.
"""

from __future__ import annotations

import os

import cv2


def thread_environment() -> dict:
    """The thread variables (if any were set) and each thread pool's size."""
    from threadpoolctl import threadpool_info

    variables = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                            "NUMBA_NUM_THREADS") if k in os.environ}
    pools = {f"{i['internal_api']}": i["num_threads"] for i in threadpool_info()}
    return {"variables": variables or "none set (default environment)", "pools": pools,
            "opencv": cv2.getNumThreads(), "cpus": os.cpu_count()}
