"""The `glmix` command line: data generation and inspection, GAME training, flows, the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from glmix.data.synthetic import GenerationSummary, SyntheticSpec, generate, load_spec
from glmix.errors import GlmixError
from glmix.flow.runner import DEFAULT_PARALLEL
from glmix.game.config import GameConfig
from glmix.game.training import train_flow
from glmix.io.examples import ColumnNames, ExampleReader, ReadStats
from glmix.io.libsvm import import_libsvm
from glmix.registry import commands as models_commands

if TYPE_CHECKING:
    from glmix.serving.parity import ParityReport

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
    spec = load_spec(args.preset, **overrides)
    if args.nonlinear_std:
        spec = spec.model_copy(update={"nonlinear_std": args.nonlinear_std})
    run_generate(spec, args.output, args.processes)


def cmd_import_libsvm(args: argparse.Namespace) -> None:
    started = time.monotonic()
    rows = import_libsvm(args.input, args.output, binary_labels=not args.keep_labels)
    console.print(f"wrote {rows:,} rows to {args.output} in {time.monotonic() - started:.1f}s")


def cmd_import_photon_model(args: argparse.Namespace) -> None:
    from glmix.game.config import GameConfig
    from glmix.model.photon_model import import_photon_model

    config = GameConfig.from_yaml(args.config)
    models = import_photon_model(args.source, args.target, config.feature_shards)
    for model in models:
        console.print(f"{model.type} effect {model.name}" + (f" by {model.entity_field}" if model.entity_field else ""))
    console.print(f"wrote glmix model {args.target} (score it with jobs/score.py --model, warm-start from it)")


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


def print_summary(summary: dict[str, Any], title: str) -> None:
    """The validation metrics after every coordinate update; the chosen step marked."""
    names = list(summary["steps"][0]["metrics"])
    table = Table(title=title)
    for column in ("run", "pass", "after updating", *names):
        table.add_column(column, justify="left" if column == "after updating" else "right")
    for i, step in enumerate(summary["steps"]):
        values = ["-" if step["metrics"][n] is None else f"{step['metrics'][n]:.4f}" for n in names]
        marker = " (best)" if i == summary["best"] else ""
        table.add_row(str(step["run"]), str(step["pass"]), step["coordinate"] + marker, *values)
    console.print(table)


def _overrides(values: list[str] | None, run_date: str | None = None) -> dict[str, str]:
    """``--set`` pairs, and ``--date`` as the run date a scheduled flow's dated inputs count back from."""
    pairs = {"glmix.run.date": run_date} if run_date else {}
    for value in values or []:
        key, sep, item = value.partition("=")
        if not sep:
            raise GlmixError(f"--set {value!r}: expected key=value")
        pairs[key] = item
    return pairs


def cmd_train(args: argparse.Namespace) -> None:
    config = GameConfig.from_yaml(args.config).resolved(Path.cwd())
    project = Path(args.project or Path(".glmix") / "flows" / config.name)
    summary = train_flow(config, project, console, _overrides(args.set, args.date), args.restart, args.parallel,
                         args.wait)
    print_summary(summary, f"{config.name}: validation metrics after each coordinate update")
    console.print(f"best model: {summary['best_model']}; report: {config.output}/report/index.html")


def cmd_flow_build(args: argparse.Namespace) -> None:
    from glmix.flow.azkaban import zip_project
    from glmix.game.flow_builder import build_project

    config = GameConfig.from_yaml(args.config).resolved(Path.cwd())
    shipment = None
    if args.ship:
        from glmix.deploy import ship

        shipment = ship(config.needs_tensorflow, lambda message: console.print(message, highlight=False, markup=False))
        console.print(f"shipped: {shipment.spark_environment}, {shipment.launcher_environment}, {shipment.code}",
                      highlight=False, markup=False)
    project = build_project(config, Path(args.project), shipment)
    console.print(f"wrote Azkaban project {project}")
    if args.zip:
        console.print(f"wrote {zip_project(project, Path(args.zip))}")


def cmd_flow_validate(args: argparse.Namespace) -> None:
    from glmix.flow.azkaban import validate_project

    flows = validate_project(Path(args.project))
    console.print(f"{args.project}: valid; flows {', '.join(flows)}")


def cmd_flow_run(args: argparse.Namespace) -> None:
    from glmix.flow.runner import LocalRunner, print_timings
    from glmix.game.training import project_starts_quick

    project = Path(args.project)
    quick_start = project_starts_quick(project) if args.jvm == "auto" else args.jvm == "quick"
    results = LocalRunner(project, _overrides(args.set, args.date), console, args.parallel, quick_start=quick_start,
                          literal=args.literal, lease_wait=args.wait).run(restart=args.restart)
    print_timings(results, console)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise GlmixError(f"stage {failed[0].name} failed: {failed[0].error} (log: {failed[0].log})")


def cmd_flow_upload(args: argparse.Namespace) -> None:
    from glmix.flow.azkaban import zip_project
    from glmix.flow.azkaban_client import AzkabanClient

    client = AzkabanClient(args.url)
    client.login(args.user, os.environ.get("AZKABAN_PASSWORD", ""))
    if args.create:
        client.create_project(args.project_name, args.description or args.project_name)
    archive = zip_project(Path(args.project), Path(args.project).with_suffix(".zip"))
    console.print(f"uploaded {archive}: {client.upload(args.project_name, archive)}")
    if args.execute:
        flow = args.execute
        execution = client.execute_flow(args.project_name, flow)
        console.print(f"started execution {execution} of {flow}")


def cmd_demo(args: argparse.Namespace) -> None:
    """Generate MovieLens-shaped data and train the GLMix model on it with the local flow runner."""
    from glmix.game.demo import demo_config, true_margins
    from glmix.glm.metrics import auc

    output = Path(args.output).resolve()
    # parts written by worker processes: faster, and (measured, cause unknown) the flow that follows
    # in this process ran 3-6 s faster than after generating here
    run_generate(load_spec("movielens", rows=args.rows, seed=args.seed), str(output / "data"),
                 processes=os.cpu_count() or 1)
    config = demo_config(output, args.passes)
    summary = train_flow(config, output / "flow", console, restart=True)
    print_summary(summary, "validation metrics after each coordinate update (embedded: Spark local[2], "
                           "launcher local backend, local disk)")
    labels, margins = true_margins(str(output / "data"))
    best = summary["steps"][summary["best"]]["metrics"]["AUC"]
    console.print(f"validation AUC: best GLMix model {best:.4f}; ground-truth model {auc(labels, margins):.4f}")
    console.print(f"report: {config.output}/report/index.html")


def cmd_bundle_export(args: argparse.Namespace) -> None:
    """The export job in this process (local Spark unless --master says otherwise)."""
    from glmix.serving.export import ExportArgs, export_bundle
    from glmix.spark.job import run_main

    argv = args.job_args if "--master" in args.job_args else ["--master", "local[2]", *args.job_args]
    if run_main(ExportArgs, export_bundle, "glmix bundle export: a GAME model as a serving bundle", argv):
        raise SystemExit(1)


def cmd_bundle_parity(args: argparse.Namespace) -> None:
    """Exit 1 when a row's online score differs from the Spark job's by more than the tolerance."""
    from glmix.serving.parity import check_parity

    columns = ColumnNames.model_validate_json(args.columns) if args.columns else ColumnNames()
    report = check_parity(args.bundle, args.data, args.scores, columns, args.tolerance)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _print_parity(report, args.tolerance)
    if not report.passed:
        raise SystemExit(1)


def _print_parity(report: ParityReport, tolerance: float) -> None:
    table = Table("rows compared", "max |online - Spark|", "worst uid", f"over {tolerance:g}",
                  "not in the scores", box=box.SIMPLE)
    table.add_row(str(report.rows), f"{report.max_abs_difference:.3g}", escape(str(report.worst_uid)),
                  str(report.over_tolerance), str(report.not_in_scores))
    console.print(table)
    console.print("parity: [green]passed[/green]" if report.passed else "parity: [red]FAILED[/red]")


def cmd_serve(args: argparse.Namespace) -> None:
    from glmix.serving.scorer import DEFAULT_CACHE
    from glmix.serving.service import serve

    serve(args.bundle, args.host, args.port, Path(args.cache) if args.cache else DEFAULT_CACHE)


def cmd_summary(args: argparse.Namespace) -> None:
    """A GAME model's summary, as lme4's summary(): fixed-effect tables and variance components."""
    from glmix.model.summary import largest_effects, model_summary, shown

    summary = model_summary(args.model)
    if args.json:
        print(summary.to_json())
        return
    console.print(f"model {escape(summary.model)}: task {summary.task}")
    for fixed in summary.fixed_effects:
        leading = largest_effects(fixed, args.top)
        meaning = ("no standard errors: trained with variance: none" if fixed.variance == "none" else
                   f"variances {fixed.variance}: " + ("posterior SD under the L2 prior" if fixed.l2 else
                                                      "maximum-likelihood standard errors"))
        table = Table(title=f"fixed effect {fixed.name}: {shown(fixed.rows, ',')} rows, l2 {shown(fixed.l2)}; "
                            f"{meaning}; the intercept, then by {fixed.order} ({len(leading)} of "
                            f"{len(fixed.coefficients)})",
                      title_justify="left")
        for column in ("feature", "estimate", "std. error", "z", "p", "95% low", "95% high"):
            table.add_column(column, justify="left" if column == "feature" else "right")
        for c in leading:
            table.add_row(escape(c.feature), shown(c.estimate), shown(c.std_error), shown(c.z, ".3f"),
                          shown(c.p_value, ".3g"), shown(c.low), shown(c.high))
        console.print(table)
    if summary.random_effects:
        by = ", ".join(f"{r.name} by {r.entity_field}" for r in summary.random_effects)
        table = Table(title=f"random effects ({by}): variance components — the prior's (1 / l2, or learned), the entities' "
                            "estimates' variance and mean posterior SD", title_justify="left", box=box.SIMPLE_HEAD,
                      padding=(0, 1), collapse_padding=True, pad_edge=False)
        for column in ("coordinate", "entities", "rows", "coef.", "count", "prior var", "var est", "post SD"):
            table.add_column(column, justify="left" if column in ("coordinate", "coef.") else "right")
        for random in summary.random_effects:
            for k, (kind, spread) in enumerate(random.estimates.items()):
                first = k == 0
                table.add_row(random.name if first else "",
                              f"{random.entities:,}" if first else "", shown(random.rows, ",") if first else "",
                              kind, f"{spread.values:,}", random.prior_shown(kind),
                              shown(spread.variance, ".3g"), shown(spread.mean_posterior_sd, ".3g"))
        console.print(table)


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
    gen.add_argument("--nonlinear-std", type=float, default=0.0,
                     help="add a global effect no GLM can fit (products of context projections) of this std")
    gen.set_defaults(func=cmd_generate)

    imp = sub.add_parser("import-libsvm", help="convert a LIBSVM file to TrainingExample Avro")
    imp.add_argument("input")
    imp.add_argument("output")
    imp.add_argument("--keep-labels", action="store_true", help="do not map -1/+1 labels to 0/1")
    imp.set_defaults(func=cmd_import_libsvm)

    photon = sub.add_parser("import-photon-model", help="a Photon ML GAME model directory as a glmix model")
    photon.add_argument("source", help="the Photon ML model directory (model-metadata.json, fixed-effect/, ...)")
    photon.add_argument("target", help="where to publish the glmix model")
    photon.add_argument("--config", required=True, help="a GAME config whose feature_shards name the model's shards")
    photon.set_defaults(func=cmd_import_photon_model)

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
    demo.add_argument("--passes", type=int, default=2)
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="build a GAME config's flow and run it on this machine")
    train.add_argument("config")
    train.add_argument("--project", help="where the flow project goes (default .glmix/flows/NAME)")
    train.add_argument("--set", action="append", metavar="PROPERTY=VALUE", help="override a flow property")
    train.add_argument("--restart", action="store_true", help="run every stage again instead of resuming")
    train.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="stages run at once at most")
    train.add_argument("--date", metavar="YYYY-MM-DD", help="the run date dated inputs count back from")
    train.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="if another run of this flow on the same output is running, wait up to this long")
    train.set_defaults(func=cmd_train)

    flow = sub.add_parser("flow", help="Azkaban flows: build, validate, run locally, upload")
    flow_sub = flow.add_subparsers(dest="flow_command", required=True)
    build = flow_sub.add_parser("build", help="generate the Azkaban Flow 2.0 project of a GAME config")
    build.add_argument("config")
    build.add_argument("project", help="output directory")
    build.add_argument("--zip", help="also write the upload archive here")
    build.add_argument("--ship", action="store_true",
                       help="put glmix's Python environment and code on HDFS (once per content) and make the "
                            "flow use them, so no cluster node needs glmix installed")
    build.set_defaults(func=cmd_flow_build)
    check = flow_sub.add_parser("validate", help="check a project against Azkaban's loader rules")
    check.add_argument("project")
    check.set_defaults(func=cmd_flow_validate)
    run = flow_sub.add_parser("run", help="run a project's flow on this machine (resumes after a failure)")
    run.add_argument("project")
    run.add_argument("--set", action="append", metavar="PROPERTY=VALUE")
    run.add_argument("--restart", action="store_true")
    run.add_argument("--literal", action="store_true",
                     help="run each node's command as its own process, as Azkaban's command job type does")
    run.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="stages run at once at most")
    run.add_argument("--date", metavar="YYYY-MM-DD", help="run one scheduled instance: the day it runs for")
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="if another run of this flow on the same output is running, wait up to this long")
    run.add_argument("--jvm", choices=["auto", "quick", "peak"], default="auto",
                     help="local Spark: start quick or compile for peak speed; auto: quick for small inputs, "
                          "as glmix train chooses")
    run.set_defaults(func=cmd_flow_run)
    upload = flow_sub.add_parser("upload", help="upload to Azkaban (password from $AZKABAN_PASSWORD)")
    upload.add_argument("project")
    upload.add_argument("--url", required=True, help="e.g. http://azkaban:8081")
    upload.add_argument("--user", required=True)
    upload.add_argument("--project-name", required=True)
    upload.add_argument("--description")
    upload.add_argument("--create", action="store_true", help="create the project first")
    upload.add_argument("--execute", metavar="FLOW", help="then start this flow")
    upload.set_defaults(func=cmd_flow_upload)
    summary = sub.add_parser("summary", help="a GAME model's coefficient tables and variance components")
    summary.add_argument("model", help="a published GAME model directory (OUTPUT/best, a registry version)")
    summary.add_argument("--top", type=int, default=20, help="fixed-effect coefficients shown (by |z|)")
    summary.add_argument("--json", action="store_true", help="every coefficient, as JSON")
    summary.set_defaults(func=cmd_summary)
    bundle = sub.add_parser("bundle", help="serving bundles: export a model, check online/offline parity")
    bundle_sub = bundle.add_subparsers(dest="bundle_command", required=True)
    export = bundle_sub.add_parser("export", help="a GAME model or registry version as a serving bundle (Spark)",
                                   add_help=False)
    export.set_defaults(func=cmd_bundle_export, passes_arguments_on=True)   # to the job: jobs/export_bundle.py --help
    parity = bundle_sub.add_parser("parity", help="online scores against the Spark scoring job's, row by row")
    parity.add_argument("--bundle", required=True)
    parity.add_argument("--data", required=True, help="the Avro rows the scoring job scored")
    parity.add_argument("--scores", required=True, help="its ScoringResult output for them (OUT/NAME)")
    parity.add_argument("--columns", help="input column names as JSON, as for the jobs")
    parity.add_argument("--tolerance", type=float, default=1e-9)
    parity.add_argument("--json", action="store_true", help="the report as JSON")
    parity.set_defaults(func=cmd_bundle_parity)
    serve = sub.add_parser("serve", help="the scoring service (HTTP) for a bundle")
    serve.add_argument("bundle")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--cache", help="where a bundle on HDFS is copied (default ~/.cache/glmix/bundles)")
    serve.set_defaults(func=cmd_serve)
    models_commands.add_parser(sub).set_defaults(func=lambda args: models_commands.run(args, console))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, job_args = parser.parse_known_args(argv)
    if job_args and not getattr(args, "passes_arguments_on", False):
        parser.error(f"unrecognized arguments: {' '.join(job_args)}")
    args.job_args = job_args
    try:
        args.func(args)
    except GlmixError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)   # text, not markup
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
