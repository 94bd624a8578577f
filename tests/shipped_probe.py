"""Run by spark-submit with a shipped project's options: where the driver and the executors found
Python and glmix, written as JSON to the HDFS path given (the driver runs in a YARN container)."""

import json
import sys

from pyspark.sql import SparkSession


def where(_: object) -> list[list[str]]:
    import glmix

    return [[sys.executable, glmix.__file__]]


def main() -> None:
    import glmix
    from glmix.io.storage import storage_for

    spark = SparkSession.builder.getOrCreate()
    executors = spark.sparkContext.parallelize(range(2), 2).mapPartitions(where).collect()
    found = {"driver": [sys.executable, glmix.__file__], "executors": executors}
    storage_for(sys.argv[1]).write_bytes(sys.argv[1], json.dumps(found).encode())
    spark.stop()


if __name__ == "__main__":
    main()
