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
from dataclasses import fields

from workstation.cli.families import add_families_option, parse_families
from workstation.cli.storeargs import add_db_option, store_path
from workstation.core import kinds
from workstation.core.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="run a training round (adapter, self-taught network or VLM LoRA)",
        description="Train on the product's images and reviews and register the new model "
        "version: active when it passes the gate, else a candidate (see `models promote`). "
        "selftaught: a network learns the product's normal look from its normal images and "
        "synthetic defects (no feedback needed); adapter and vlm learn from reviews.",
    )
    parser.add_argument("--product", required=True, help="product name")
    kind_help = "; ".join(f"{k.name}: {k.help.rstrip('.')}" for k in kinds.all_kinds())
    parser.add_argument("--kind", choices=kinds.names(), default="adapter", help=kind_help)
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
                        help="selftaught: the encoder's initial weights, scratch (default), "
                        "efficientnet-lite0/1/2 or mobilenet-v2 (ImageNet, from pip packages)")
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


HYPERPARAMETER_OPTIONS = ("steps", "budget_minutes", "families", "encoder")
"""Options that set the hyperparameter of the same name."""


def flag_hyperparameters(args: argparse.Namespace) -> dict[str, object]:
    """The hyperparameters the options set, refused in one line when ``--kind`` has no such
    setting (its dataclass is the judge, ``core.kinds``) rather than in the child process.
    The values themselves are checked when the options are built."""
    accepted = _fields(kinds.get(args.kind))
    values: dict[str, object] = {}
    for key in HYPERPARAMETER_OPTIONS:
        value = getattr(args, key)
        if key == "families":
            value = parse_families(value) or None
            if value is not None:
                from workstation.experts.synthetic.synthesizer import SynthesisMix

                value = dict(SynthesisMix.of(value).weights)
        if value is None:
            continue
        if key not in accepted:
            takers = [k.name for k in kinds.all_kinds() if key in _fields(k)]
            raise UserError(
                f"--{key.replace('_', '-')} applies to --kind {' or '.join(takers)} only"
            )
        values[key] = value
    return values


def _fields(kind: kinds.TrainedKind) -> set[str]:
    return {f.name for f in fields(kind.implementation().Hyperparameters)}


def run(args: argparse.Namespace) -> int:
    from workstation.config import load_settings
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
        hyperparameters = flag_hyperparameters(args)
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
