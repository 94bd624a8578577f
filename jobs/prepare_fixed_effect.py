"""Fixed-effect data preparation: examples -> indexed sparse rows for one shard, in N balanced files.

    spark-submit jobs/prepare_fixed_effect.py --input DATA --index INDEX_DIR --output OUT --files 4

Output (published atomically): OUT/part-*.parquet with ``uid, label, weight, offset,
indices: array<int>, values: array<double>`` (the intercept, when the shard has one, is index 0
with value 1 in every row), OUT/_shard.json (copied from the index) and OUT/_report.json.

Why Parquet: a list column is stored as one offsets array plus one flat child array, which is
exactly CSR; the TensorFlow trainer turns a file into a scipy/TF sparse matrix with pyarrow in a
few vectorized calls, no per-row Python. Rows are spread round-robin over the N files, so the
files are balanced by row count; trainers split rows (not files) across workers, so N need not be
a multiple of, or at least, the number of workers.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from glmix.data.feature_index import FeatureIndex, write_shard_meta
from glmix.io.dated import DatedDays
from glmix.io.examples import ColumnNames
from glmix.io.storage import publish_atomically, qualified
from glmix.settings import BadRecordPolicy, Task
from glmix.spark.indexing import index_rows, indexing_counts
from glmix.spark.input import InputSpec, dropped_by_reason, load_examples
from glmix.spark.job import JobReport, run_main
from glmix.spark.job_args import PrepareArgs

ROW_COLUMNS = ["uid", "label", "weight", "offset"]


def prepare_fixed_effect(spark: SparkSession, data: str, index_dir: str, output: str, files: int,
                         columns: ColumnNames = ColumnNames(), task: Task | None = None,
                         policy: BadRecordPolicy = "fail", dates: DatedDays | None = None) -> dict[str, Any]:
    if files < 1:
        raise ValueError("files must be >= 1")
    index_meta = FeatureIndex.load(index_dir)
    shard = index_meta.shard
    data, index_dir, output = (qualified(data), qualified(index_dir), qualified(output))
    report = JobReport("prepare_fixed_effect", {"input": data, "index": index_dir, "output": output,
                                                "files": files, "task": task, "policy": policy})
    loaded = load_examples(spark, InputSpec(uri=data, bags=shard.bags, columns=columns, task=task, policy=policy,
                                            merge_repeats=False, dates=dates))
    rows, indexing = index_rows(spark, loaded.good_rows(), index_meta, ROW_COLUMNS)
    with publish_atomically(output) as tmp:
        rows.repartition(files).write.parquet(tmp, mode="overwrite")
        counts = loaded.check()
        written = spark.read.parquet(tmp)
        per_file = [r["count"] for r in written.groupBy(F.col("_metadata.file_path")).count().collect()]
        write_shard_meta(tmp, shard, index_meta.size)
        report.counters.update({
            "rows_in": counts["rows_in"], "rows_out": sum(per_file),
            "dropped": dropped_by_reason(counts),
            **indexing_counts(indexing),
            "num_features": index_meta.size, "files": len(per_file),
            "rows_per_file": {"min": min(per_file, default=0), "max": max(per_file, default=0)}})
        report.write_into(tmp)
    return report.to_dict()


ARGS = PrepareArgs  # this job's command line (glmix.spark.job_args)


def run(spark: SparkSession, args: PrepareArgs) -> dict[str, Any]:
    return prepare_fixed_effect(spark, args.input, args.index, args.output, args.files,
                                args.columns, args.task, args.bad_records, args.dated())


if __name__ == "__main__":
    raise SystemExit(run_main(ARGS, run, __doc__))
