"""``python -m workstation.datasets.devsuite build --sources DIR --out DIR [--only NAME ...]``.

``DIR`` holds your clones of the source repositories (``git clone URL`` inside it; URLs and
the commits read are in ``sources.py`` and each set's README). A wrong folder is a one-line
error and exit code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workstation.core.errors import UserError
from workstation.datasets.devsuite import SOURCES, SplitCaps, build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workstation.datasets.devsuite")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="convert local clones into MVTec-layout categories")
    b.add_argument("--sources", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--only", nargs="*", default=[], choices=[s.name for s in SOURCES])
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--max-side", type=int, default=SplitCaps.max_side,
                   help="long side of the written images, pixels (at least 32)")
    args = parser.parse_args(argv)
    try:
        if not args.sources.is_dir():
            raise UserError(f"--sources {args.sources} is not a folder")
        caps = SplitCaps(seed=args.seed, max_side=args.max_side)
        for w in build(args.sources, args.out, tuple(args.only), caps):
            print(
                f"{w.category}: train/good {w.train}, test/good {w.test_good}, "
                f"defects {w.test_defect}"
            )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
