"""``--threads`` for CPU-bound benchmarks.

On a shared 2-core machine torch's default of one thread per core can make small training
steps several times slower when another process holds a core (threads spin waiting for
each other); one thread is then faster. Benchmarks let the caller choose and report it.
"""

from __future__ import annotations

import argparse


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, default=0, help="torch/OpenCV threads (0 = library default)"
    )


def apply_threads(count: int) -> int:
    """Set torch's and OpenCV's thread counts when ``count`` > 0; returns torch's count."""
    import cv2
    import torch

    if count:
        torch.set_num_threads(count)
        cv2.setNumThreads(count)
    return torch.get_num_threads()
