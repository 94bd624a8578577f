"""A dataset as a notebook explores it: its size and label rate, each bag's features, each entity
field's rows per entity, a sample of rows — read by the jobs' own reader (glmix.spark.input), so
what a notebook sees is what the flow's stages will read."""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StructType

from glmix.api.plots import Plot, histogram
from glmix.errors import ConfigError
from glmix.io.examples import ColumnNames
from glmix.io.storage import qualified
from glmix.spark.input import InputSpec, data_files, kept_bag_column, load_examples
from glmix.spark.session import session

KNOWN_COLUMNS = {"uid", "label", "response", "weight", "offset", "metadataMap"}


def _is_bag(field_type: Any) -> bool:
    """A name-term-value bag: an array of records with (at least) name and value."""
    element = field_type.elementType if isinstance(field_type, ArrayType) else None
    return isinstance(element, StructType) and {"name", "value"} <= set(element.fieldNames())


@dataclass(frozen=True)
class DatasetSummary:
    path: str
    rows: int
    label_mean: float
    weight_sum: float
    features_per_row: dict[str, float]      # bag -> mean number of features a row has in it
    entities: dict[str, int]                # entity field -> distinct ids

    def _repr_html_(self) -> str:
        bags = "".join(f"<tr><td>{html.escape(b)}</td><td>{n:.2f}</td></tr>" for b, n in self.features_per_row.items())
        ids = "".join(f"<tr><td>{html.escape(f)}</td><td>{n:,}</td></tr>" for f, n in self.entities.items())
        return (f"<p><b>{html.escape(self.path)}</b>: {self.rows:,} rows, mean label {self.label_mean:.4f}, "
                f"total weight {self.weight_sum:,.1f}</p><table><tr><th>bag</th><th>features per row</th></tr>{bags}"
                f"</table><table><tr><th>entity field</th><th>distinct ids</th></tr>{ids}</table>")


class Dataset:
    """Rows of TrainingExample-shaped data (Avro or Parquet, local or HDFS), cached in Spark once read."""

    def __init__(self, path: str, bags: tuple[str, ...], entity_fields: tuple[str, ...], columns: ColumnNames,
                 spark: SparkSession) -> None:
        self.path, self.bags, self.entity_fields, self.columns, self.spark = path, bags, entity_fields, columns, spark
        loaded = load_examples(spark, InputSpec(uri=path, bags=bags, columns=columns, entity_fields=entity_fields,
                                                keep_bags=True))
        self.frame: DataFrame = loaded.good_rows().cache()
        self._loaded = loaded

    @cached_property
    def _summary(self) -> DatasetSummary:
        sizes = [F.avg(F.size(kept_bag_column(b))).alias(b) for b in self.bags]
        row = self.frame.agg(F.count(F.lit(1)).alias("_rows"), F.avg("label").alias("_label"),
                             F.sum("weight").alias("_weight"), *sizes,
                             *[F.countDistinct(f).alias(f"_ids_{f}") for f in self.entity_fields]).first()
        assert row is not None, "an aggregate has one row"
        self._loaded.check()     # a bad row is an error naming its file, record and field
        return DatasetSummary(self.path, int(row["_rows"]), float(row["_label"] or 0.0), float(row["_weight"] or 0.0),
                              {b: float(row[b] or 0.0) for b in self.bags},
                              {f: int(row[f"_ids_{f}"]) for f in self.entity_fields})

    def summary(self) -> DatasetSummary:
        return self._summary

    def features(self, bag: str) -> pd.DataFrame:
        """Each (name, term) of ``bag``: rows it appears in (count), its value's mean, std, min and max
        over those rows, and how many of them are non-zero (nnz); most frequent first."""
        if bag not in self.bags:
            raise ConfigError(f"no bag {bag!r}; this dataset's bags: {', '.join(self.bags)}")
        value = F.col("f.value")
        return (self.frame.select(F.explode(kept_bag_column(bag)).alias("f"))
                .groupBy(F.col("f.name").alias("name"), F.coalesce(F.col("f.term"), F.lit("")).alias("term"))
                .agg(F.count(F.lit(1)).alias("count"), F.avg(value).alias("mean"), F.stddev(value).alias("std"),
                     F.min(value).alias("min"), F.max(value).alias("max"),
                     F.sum((value != 0).cast("long")).alias("nnz"))
                .orderBy(F.desc("count"), "name", "term").toPandas())

    def entities(self, field: str) -> pd.DataFrame:
        """Rows per entity of ``field``, most rows first."""
        if field not in self.entity_fields:
            raise ConfigError(f"no entity field {field!r}; this dataset's: {', '.join(self.entity_fields) or 'none'}"
                              " (read_dataset(..., entity_fields=...))")
        return (self.frame.groupBy(F.col(field).alias("entity")).agg(F.count(F.lit(1)).alias("rows"))
                .orderBy(F.desc("rows"), "entity").toPandas())

    def plot_rows_per_entity(self, field: str) -> Plot:
        rows = self.entities(field)["rows"].to_numpy()
        return histogram(rows, f"{field}: rows per entity ({len(rows):,} entities)", "rows", log_y=True)

    def sample(self, n: int = 5) -> pd.DataFrame:
        """The first ``n`` rows: uid, label, weight, offset, the ids, each bag as (name, term, value) lists."""
        bags = [F.transform(kept_bag_column(b), lambda f: F.struct(f["name"], f["term"], f["value"])).alias(b)
                for b in self.bags]
        return self.frame.select("uid", "label", "weight", "offset", *self.entity_fields, *bags).limit(n).toPandas()

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


def read_dataset(path: str, bags: tuple[str, ...] | None = None, entity_fields: tuple[str, ...] | None = None,
                 columns: ColumnNames | None = None, spark: SparkSession | None = None,
                 master: str = "local[2]") -> Dataset:
    """Open a dataset. ``bags`` default to every name-term-value array of its schema and
    ``entity_fields`` to its other top-level id-like fields (strings and integers); ``spark`` to a
    session on ``master`` (``yarn`` with HADOOP_CONF_DIR set runs it on the cluster)."""
    spark = spark or session(master, "glmix-notebook")
    uri = qualified(path)
    fmt, files, _ = data_files(uri)
    schema = spark.read.format(fmt).load(files[:1]).schema
    columns = columns or ColumnNames()
    named = {columns.response, columns.uid, columns.weight, columns.offset, columns.metadata_map} | KNOWN_COLUMNS
    if bags is None:
        bags = tuple(f.name for f in schema.fields if _is_bag(f.dataType))
    if entity_fields is None:
        entity_fields = tuple(f.name for f in schema.fields if f.name not in named and f.name not in bags
                              and f.dataType.typeName() in ("string", "integer", "long"))
    return Dataset(path, tuple(bags), tuple(entity_fields), columns, spark)
