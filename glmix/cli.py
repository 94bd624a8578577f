"""The `glmix` command line: data generation, import and inspection (pipeline commands join later)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from glmix.errors import GlmixError
from glmix.examples import ColumnNames, ExampleReader, ReadStats
from glmix.libsvm import import_libsvm
from glmix.synthetic import GenerationSummary, SyntheticSpec, generate, load_spec

console = Console(stderr=False)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


def run_generate(spec: SyntheticSpec, output: str, processes: int = 1) -> GenerationSummary:
    started = time.monotonic()
    with _progress() as progress:
        task = progress.add_task("generating rows", total=spec.rows)
        summary = generate(spec, output, progress=lambda n: progress.advance(task, n), processes=processes)
    print_generation_summary(summary, time.monotonic() - started)
    return summary


def print_generation_summary(summary: GenerationSummary, seconds: float) -> None:
    console.print(f"wrote {summary.output} in {seconds:.1f}s: {summary.train_rows:,} train rows, "
                  f"{summary.validation_rows:,} validation rows, label mean {summary.label_mean:.4f}")
    table = Table(title="rows per entity (train + validation)")
    for column in ("entity", "entities seen", "min", "median", "max", "top 1% share of rows"):
        table.add_column(column, justify="right")
    for name, stats in summary.rows_per_entity.items():
        table.add_row(name, f"{stats['entities_seen']:,}", str(stats["min"]), f"{stats['median']:.0f}",
                      str(stats["max"]), f"{stats['top_1pct_row_share']:.1%}")
    console.print(table)


def cmd_generate(args: argparse.Namespace) -> None:
    overrides = {"rows": args.rows, "seed": args.seed}
    if args.preset == "generic":
        overrides.update(users=args.users, items=args.items, task=args.task,
                         context_dimension=args.context_dimension, context_nnz=args.context_nnz)
    run_generate(load_spec(args.preset, **overrides), args.output, args.processes)


def cmd_import_libsvm(args: argparse.Namespace) -> None:
    started = time.monotonic()
    rows = import_libsvm(args.input, args.output, binary_labels=not args.keep_labels)
    console.print(f"wrote {rows:,} rows to {args.output} in {time.monotonic() - started:.1f}s")


def cmd_inspect(args: argparse.Namespace) -> None:
    columns = ColumnNames(response=args.response)
    reader = ExampleReader(columns, bags=tuple(args.bags), entity_fields=tuple(args.entity_fields))
    stats = ReadStats()
    label_sum = 0.0
    nnz = 0
    for example in reader.read(args.input, stats):
        label_sum += example.label
        nnz += sum(len(b) for b in example.bags.values())
    rows = max(1, stats.rows)
    table = Table(title=args.input)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for name, value in [("files", len(stats.files)), ("rows", f"{stats.rows:,}"),
                        ("label mean", f"{label_sum / rows:.4f}"), ("non-zeros per row", f"{nnz / rows:.1f}"),
                        ("repeated (name, term) pairs summed", f"{stats.duplicate_features:,}")]:
        table.add_row(name, str(value))
    console.print(table)


def cmd_demo(args: argparse.Namespace) -> None:
    """Generate the MovieLens-shaped dataset and run the stages that exist so far on it."""
    from glmix.demo import fixed_effect_validation_auc, run_stages, true_margins

    run_generate(load_spec("movielens", rows=args.rows, seed=args.seed), f"{args.output}/data")
    steps = run_stages(args.output)
    table = Table(title="demo stages (embedded: Spark local[2], one trainer process, local disk)")
    for column in ("stage", "detail", "seconds"):
        table.add_column(column)
    for step, detail, seconds in steps:
        table.add_row(step, detail, f"{seconds:.1f}")
    console.print(table)
    from glmix.metrics import auc

    labels, margins = true_margins(f"{args.output}/data")
    metrics = Table(title="validation AUC")
    metrics.add_column("model")
    metrics.add_column("AUC", justify="right")
    metrics.add_row("fixed effect (global GLM)", f"{fixed_effect_validation_auc(args.output):.4f}")
    metrics.add_row("ground truth (global + per-user + per-movie)", f"{auc(labels, margins):.4f}")
    console.print(metrics)
    console.print("per-user and per-movie random effects join the demo with the GAME pipeline (issue 8)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glmix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write synthetic GLMix data with its true model")
    gen.add_argument("--preset", choices=["movielens", "generic"], default="movielens")
    gen.add_argument("--output", required=True, help="local directory or hdfs:// URI")
    gen.add_argument("--rows", type=int)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="parts written in parallel")
    gen.add_argument("--users", type=int, default=10_000, help="generic preset only")
    gen.add_argument("--items", type=int, default=1_000, help="generic preset only")
    gen.add_argument("--task", choices=["logistic", "linear", "poisson"], default="logistic", help="generic only")
    gen.add_argument("--context-dimension", type=int, default=1000, help="generic preset only")
    gen.add_argument("--context-nnz", type=int, default=20, help="generic preset only")
    gen.set_defaults(func=cmd_generate)

    imp = sub.add_parser("import-libsvm", help="convert a LIBSVM file to TrainingExample Avro")
    imp.add_argument("input")
    imp.add_argument("output")
    imp.add_argument("--keep-labels", action="store_true", help="do not map -1/+1 labels to 0/1")
    imp.set_defaults(func=cmd_import_libsvm)

    ins = sub.add_parser("inspect", help="summarize a TrainingExample Avro dataset")
    ins.add_argument("input")
    ins.add_argument("--response", help="label column (default: label or response)")
    ins.add_argument("--bags", nargs="+", default=["features"])
    ins.add_argument("--entity-fields", nargs="*", default=[])
    ins.set_defaults(func=cmd_inspect)

    demo = sub.add_parser("demo", help="the embedded end-to-end demo")
    demo.add_argument("--output", default=".demo")
    demo.add_argument("--rows", type=int, default=100_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except GlmixError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
