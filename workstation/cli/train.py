"""``iad-workstation train --product NAME``: one training round from the inspectors' feedback.

Made for cron / systemd timers: ``--if-new-labels N`` exits quietly (code 0) unless at
least N new decisive reviews arrived since the last successful round of that kind.
Progress goes to stderr; the outcome is one JSON line on stdout. Ctrl+C cancels the round
(the child process is killed and no model version is registered).
"""

from __future__ import annotations

import argparse
import json
import sys

from workstation.cli.families import add_families_option, parse_families
from workstation.cli.storeargs import add_db_option, store_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="run a training round (adapter, self-taught network or VLM LoRA)",
        description="Train on the product's images and reviews and register the new model "
        "version: active when it passes the gate, else a candidate (see `models promote`). "
        "selftaught: a network learns the product's normal look from its normal images and "
        "synthetic defects (no feedback needed); adapter and vlm learn from reviews; "
        "types learns the plant's defect types and words from reviewed defects.",
    )
    parser.add_argument("--product", required=True, help="product name")
    kinds = ("adapter", "selftaught", "vlm", "types")  # kind: types (issue 22)
    parser.add_argument("--kind", choices=kinds, default="adapter")
    parser.add_argument(
        "--if-new-labels",
        type=int,
        default=0,
        metavar="N",
        help="only train when at least N new reviews arrived since the last round",
    )
    parser.add_argument("--steps", type=int, help="training steps (default: the kind's own)")
    parser.add_argument("--budget-minutes", type=float, metavar="M",
                        help="selftaught: stop training after M minutes (default 8)")
    parser.add_argument("--encoder", metavar="E",
                        help="selftaught: the encoder's initial weights, scratch (default) or "
                        "efficientnet-lite0 (ImageNet, from the pip package)")
    parser.add_argument("--resume", action="store_true",
                        help="selftaught: continue the last interrupted round from its checkpoint")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda (default: settings)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="train with N processes under torchrun (DistributedDataParallel): one per GPU "
        "(nccl), or N CPU processes (gloo); the global batch is split across them",
    )
    add_families_option(parser)
    add_db_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workstation.config import load_settings
    from workstation.core.errors import UserError
    from workstation.services.rounds import (
        RoundHandle,
        RoundOptions,
        new_labels_since_last_round,
        run_round,
    )
    from workstation.store.repository import Store

    db = store_path(args)
    if not db.is_file():
        raise UserError(f"no store at {db}; import images first or pass --db")
    settings = load_settings()
    store = Store.open(db)
    try:
        product = store.get_product(args.product)
        if args.if_new_labels:
            fresh = new_labels_since_last_round(store, product, args.kind)
            if fresh < args.if_new_labels:
                print(json.dumps({"status": "skipped", "new_labels": fresh}))
                return 0
        hyperparameters: dict[str, object] = {}
        if args.steps is not None:
            hyperparameters["steps"] = args.steps
        if args.budget_minutes is not None:
            hyperparameters["budget_minutes"] = args.budget_minutes
        families = parse_families(args.families)
        if families:
            if args.kind != "selftaught":
                raise UserError("--families applies to --kind selftaught only")
            from workstation.experts.synthetic.synthesizer import SynthesisMix

            # Refused here, in one line, rather than in the round's child process.
            hyperparameters["families"] = dict(SynthesisMix.of(families).weights)
        if args.encoder is not None:
            from workstation.experts.selftaught import ENCODERS

            if args.kind != "selftaught" or args.encoder not in ENCODERS:
                raise UserError(f"--encoder goes with --kind selftaught: {', '.join(ENCODERS)}")
            hyperparameters["encoder"] = args.encoder
        options = RoundOptions.from_settings(
            settings,
            args.kind,
            hyperparameters=hyperparameters,
            device=args.device,
            processes=args.processes,
        )
        handle = RoundHandle()

        def show(event: object) -> None:
            step = getattr(event, "step", None)
            if step is not None:
                print(
                    f"\rstep {step}/{event.total} loss {event.loss:.4f}",  # type: ignore[attr-defined]
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            elif getattr(event, "message", ""):
                print(f"\n{event.message}", file=sys.stderr, flush=True)  # type: ignore[attr-defined]

        try:
            outcome = run_round(
                store, product.name, options, on_event=show, handle=handle, resume=args.resume
            )
        except KeyboardInterrupt:
            handle.cancel()
            raise
        print(file=sys.stderr)
        print(
            json.dumps(
                {
                    "status": outcome.status,
                    "round": outcome.round.id,
                    "version": outcome.version.name if outcome.version else None,
                    "state": outcome.version.state if outcome.version else None,
                    "message": outcome.message,
                }
            )
        )
        return 0 if outcome.status == "succeeded" else 1
    finally:
        store.close()
