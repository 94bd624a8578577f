"""The Spark data jobs on small hand-checkable data: indexing, preparation, partitioning, bad records."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from glmix.data.feature_index import FeatureIndex
from glmix.errors import DataError
from glmix.io.avro import read_avro_records
from glmix.io.schemas import raw_schema, training_example_schema
from glmix.io.storage import join
from glmix.settings import FeatureShard
from glmix.spark.job import read_report
from glmix.spark.job_args import PartitionArgs, PrepareArgs, TogetherArgs
from glmix.spark.session import QUICK_START_MAX_BYTES, spark_conf, suits_quick_start
from jobs import together
from jobs.index_features import index_features, index_shards
from jobs.partition_random_effect import (
    _group_by_entity,
    _heavy_entities,
    _thinned,
    partition_random_effect,
    snake_partition,
)
from jobs.prepare_fixed_effect import prepare_fixed_effect

SCHEMA = training_example_schema(("userFeatures",), ("userId",))


def f(name: str, term: str = "", value: float = 1.0) -> dict:
    return {"name": name, "term": term, "value": value}


def example(uid: str, label: float, features: list[dict], user: str | None = "u1", user_features=(),
            weight=None, offset=None) -> dict:
    return {"uid": uid, "label": label, "features": features, "userFeatures": list(user_features),
            "userId": user, "metadataMap": None, "weight": weight, "offset": offset}


SMALL = [
    example("1", 1.0, [f("a", "", 2.0), f("b", "x", 1.0)], "u1", [f("age", "25")]),
    example("2", 0.0, [f("a", "", -1.0), f("a", "", 0.5)], "u1", [f("age", "35")]),   # repeated (a, '')
    example("3", 1.0, [f("c", "", 3.0)], "u2", [f("age", "25")], weight=2.0, offset=0.5),
    example("4", 0.0, [], "u3"),
]


def write(path: Path, records: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        fastavro.writer(out, SCHEMA, records)
    return str(path.parent)


def test_local_jvm_starts_quick_only_for_small_inputs(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir(), large.mkdir()
    (small / "part-0.avro").write_bytes(b"0" * 1000)
    with open(large / "part-0.avro", "wb") as sparse_file:
        sparse_file.truncate(QUICK_START_MAX_BYTES)
    assert suits_quick_start([str(small)])
    assert not suits_quick_start([str(small), str(large)])
    quick = spark_conf("local[2]", "t", quick_start=True)["spark.driver.extraJavaOptions"]
    peak = spark_conf("local[2]", "t")["spark.driver.extraJavaOptions"]
    assert "-XX:TieredStopAtLevel=1" in quick and "-XX:TieredStopAtLevel" not in peak
    for options in (quick, peak):   # this JDK accepts every flag
        result = subprocess.run([shutil.which("java") or "java", *options.split(), "-version"],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_index_map_and_statistics_by_hand(spark, tmp_path: Path) -> None:
    data = write(tmp_path / "data" / "part-0.avro", SMALL)
    report = index_features(spark, data, str(tmp_path / "idx"), FeatureShard(name="g", bags=("features",)))
    index = FeatureIndex.load(str(tmp_path / "idx"))
    assert index.keys() == [("(INTERCEPT)", ""), ("a", ""), ("b", "x"), ("c", "")]
    assert report["rows_used"] == 4 and report["repeated_features_merged"] == 1 and report["num_features"] == 4
    summary = {(r["name"], r["term"]): r for r in read_avro_records(str(tmp_path / "idx" / "summary"))}
    # a: per-row values 2, -0.5 (=-1+0.5), 0, 0 -> mean 0.375, var E[x^2]-mean^2 = (4+0.25)/4 - 0.140625
    a = summary[("a", "")]
    assert (a["count"], a["nnz"], a["min"], a["max"]) == (4, 2, -0.5, 2.0)
    assert a["mean"] == pytest.approx(0.375) and a["variance"] == pytest.approx(4.25 / 4 - 0.375 ** 2)
    c = summary[("c", "")]
    assert (c["min"], c["max"], c["nnz"]) == (0.0, 3.0, 1) and c["mean"] == pytest.approx(0.75)


def test_several_shards_in_one_pass_match_one_job_per_shard(spark, tmp_path: Path) -> None:
    data = write(tmp_path / "data" / "part-0.avro", SMALL)
    shards = [FeatureShard(name="g", bags=("features", "userFeatures")),
              FeatureShard(name="u", bags=("userFeatures",), min_count=2, intercept=False)]
    together = index_shards(spark, data, {s.name: str(tmp_path / "one-pass" / s.name) for s in shards}, shards)
    for shard in shards:
        alone = index_features(spark, data, str(tmp_path / "alone" / shard.name), shard)
        for key in ("rows_used", "repeated_features_merged", "distinct_features", "num_features"):
            assert together[shard.name][key] == alone[key]
        one_pass, separate = (str(tmp_path / where / shard.name) for where in ("one-pass", "alone"))
        assert FeatureIndex.load(one_pass).keys() == FeatureIndex.load(separate).keys()
        assert sorted(read_avro_records(join(one_pass, "summary")), key=str) == \
            sorted(read_avro_records(join(separate, "summary")), key=str)


def test_min_count_whitelist_and_no_intercept(spark, tmp_path: Path) -> None:
    data = write(tmp_path / "data" / "part-0.avro", SMALL)
    (tmp_path / "white.txt").write_text("a\nb\tx\nage\t25\n")
    shard = FeatureShard(name="s", bags=("features", "userFeatures"), intercept=False, min_count=2,
                         whitelist=str(tmp_path / "white.txt"))
    index_features(spark, data, str(tmp_path / "idx"), shard)
    assert FeatureIndex.load(str(tmp_path / "idx")).keys() == [("a", ""), ("age", "25")]


def test_prepared_rows_are_indexed_sparse_rows(spark, tmp_path: Path) -> None:
    data = write(tmp_path / "data" / "part-0.avro", SMALL)
    index_features(spark, data, str(tmp_path / "idx"), FeatureShard(name="g", bags=("features",)))
    report = prepare_fixed_effect(spark, data, str(tmp_path / "idx"), str(tmp_path / "fe"), files=3)
    rows = {r["uid"]: r for r in pq.read_table(str(tmp_path / "fe")).to_pylist()}
    assert rows["1"]["indices"] == [0, 1, 2] and rows["1"]["values"] == [1.0, 2.0, 1.0]
    assert rows["2"]["indices"] == [0, 1] and rows["2"]["values"] == [1.0, -0.5]
    assert rows["3"]["weight"] == 2.0 and rows["3"]["offset"] == 0.5 and rows["3"]["indices"] == [0, 3]
    assert rows["4"]["indices"] == [0]
    assert report["rows_out"] == 4 and report["files"] <= 3 and report["repeated_features_merged"] == 1
    assert len(list((tmp_path / "fe").glob("part-*.parquet"))) == 3


def test_features_outside_the_index_are_left_out_and_counted(spark, tmp_path: Path) -> None:
    data = write(tmp_path / "data" / "part-0.avro", SMALL)
    index_features(spark, data, str(tmp_path / "idx"), FeatureShard(name="g", bags=("features",), min_count=2))
    kept = set(FeatureIndex.load(str(tmp_path / "idx")).keys())
    report = prepare_fixed_effect(spark, data, str(tmp_path / "idx"), str(tmp_path / "fe"), files=1)
    values = [(name, term) for r in SMALL for name, term, v in
              ((x["name"], x["term"] or "", x["value"]) for x in r["features"])]
    assert report["feature_values_not_indexed"] == sum(key not in kept for key in values) > 0
    for row in pq.read_table(str(tmp_path / "fe")).to_pylist():
        assert row["indices"] == sorted(row["indices"]) and row["indices"][0] == 0


def test_other_bag_shapes_are_normalized(spark, tmp_path: Path) -> None:
    """Float values (not Photon's shape) take the normalizing path: same output."""
    schema = raw_schema("TrainingExample")
    entry = next(f for f in schema["fields"] if f["name"] == "features")["type"]["items"]
    entry["fields"] = [{"name": "name", "type": "string"}, {"name": "term", "type": "string"},
                       {"name": "value", "type": "float"}]
    schema["fields"] += [{"name": "userFeatures", "type": {"type": "array", "items": "FeatureAvro"}},
                         {"name": "userId", "type": ["null", "string"]}]
    (tmp_path / "other").mkdir()
    with open(tmp_path / "other" / "part-0.avro", "wb") as out:
        fastavro.writer(out, fastavro.parse_schema(schema), SMALL)
    data = write(tmp_path / "data" / "part-0.avro", SMALL)
    outputs = []
    for name, source in (("photon", data), ("other", str(tmp_path / "other"))):
        index_features(spark, source, str(tmp_path / f"idx-{name}"), FeatureShard(name="g", bags=("features",)))
        prepare_fixed_effect(spark, source, str(tmp_path / f"idx-{name}"), str(tmp_path / f"fe-{name}"), files=1)
        outputs.append((FeatureIndex.load(str(tmp_path / f"idx-{name}")).keys(),
                        sorted(pq.read_table(str(tmp_path / f"fe-{name}")).to_pylist(), key=lambda r: r["uid"])))
    assert outputs[0] == outputs[1]


def test_files_are_balanced(spark, tmp_path: Path) -> None:
    many = [example(str(i), float(i % 2), [f("a", "", 1.0)]) for i in range(1000)]
    data = write(tmp_path / "data" / "part-0.avro", many)
    index_features(spark, data, str(tmp_path / "idx"), FeatureShard(name="g", bags=("features",)))
    report = prepare_fixed_effect(spark, data, str(tmp_path / "idx"), str(tmp_path / "fe"), files=4)
    assert report["files"] == 4 and report["rows_per_file"]["max"] - report["rows_per_file"]["min"] <= 1


def skewed_records(n_users: int = 6) -> list[dict]:
    """User k has 2**k rows; features per user differ so projections differ."""
    records = []
    for user in range(n_users):
        for j in range(2 ** user):
            records.append(example(f"{user}-{j}", float(j % 2), [f("g", "", 1.0)], f"u{user}",
                                   [f("age", str(user)), f("x", str(j % 3), 0.5 + j)]))
    return records


def partitioned(spark, tmp_path: Path, name: str, **kwargs) -> tuple[dict, dict]:
    data = str(tmp_path / "data")
    if not Path(data).exists():
        write(tmp_path / "data" / "part-0.avro", skewed_records())
        index_features(spark, data, str(tmp_path / "idx"), FeatureShard(name="u", bags=("userFeatures",)))
    report = partition_random_effect(spark, data, "userId", str(tmp_path / "idx"), str(tmp_path / name), **kwargs)
    entities = {r["entity_id"]: r for r in pq.read_table(str(tmp_path / name / "active")).to_pylist()}
    return report, entities


def test_bounds_down_sampling_and_projection(spark, tmp_path: Path) -> None:
    report, entities = partitioned(spark, tmp_path, "re", lower_bound=4, upper_bound=10, partitions=2, seed=1)
    assert sorted(entities) == ["u2", "u3", "u4", "u5"]  # u0 (1 row), u1 (2 rows) are passive
    assert report["entities_active"] == 4 and report["entities_passive"] == 2 and report["rows_passive"] == 3
    assert [entities[u]["n_rows"] for u in ("u2", "u3", "u4", "u5")] == [4, 8, 10, 10]
    assert entities["u5"]["sampled"] and entities["u5"]["weights"] == [pytest.approx(32 / 10)] * 10
    assert entities["u3"]["weights"] == [1.0] * 8
    assert report["entities_down_sampled"] == 2 and report["rows_removed_by_down_sampling"] == (16 - 10) + (32 - 10)
    index = FeatureIndex.load(str(tmp_path / "idx")).keys()
    for entity in entities.values():  # projection: local columns map back to exactly the row's features
        features = entity["features"]
        assert features == sorted(set(features))
        indices, vals, start = entity["indices"], entity["vals"], 0
        assert set(indices) == set(features)
        for uid, nnz in zip(entity["uids"], entity["row_nnz"], strict=True):
            user, j = (int(p) for p in uid.split("-"))
            expected = {("(INTERCEPT)", ""): 1.0, ("age", str(user)): 1.0, ("x", str(j % 3)): 0.5 + j}
            got = {index[i]: v for i, v in zip(indices[start:start + nnz], vals[start:start + nnz], strict=True)}
            assert got == expected
            start += nnz
    passive = pq.read_table(str(tmp_path / "re" / "passive")).to_pylist()
    # the small entities' rows, and the rows down-sampling left out (unweighted), each row once
    assert sorted(r["entity_id"] for r in passive) == ["u0", "u1", "u1"] + ["u4"] * 6 + ["u5"] * 22
    left_out = {r["uid"] for r in passive if r["entity_id"] == "u5"}
    assert not left_out & set(entities["u5"]["uids"]) and len(left_out | set(entities["u5"]["uids"])) == 32
    assert all(r["weight"] == 1.0 for r in passive)


def test_a_heavy_entity_is_thinned_before_grouping_and_keeps_the_exact_sample(spark, tmp_path: Path) -> None:
    """u11 has 2048 rows and the bound is 3: about 3 + 8 sqrt(3) + 16 = 33 of its rows reach the
    grouping, yet it keeps exactly the 3 rows of smallest hash over all 2048, as without thinning."""
    write(tmp_path / "data" / "part-0.avro", skewed_records(12))
    index_features(spark, str(tmp_path / "data"), str(tmp_path / "idx"), FeatureShard(name="u", bags=("userFeatures",)))
    report = partition_random_effect(spark, str(tmp_path / "data"), "userId", str(tmp_path / "idx"),
                                     str(tmp_path / "re"), upper_bound=3, seed=7, partitions=2)
    entities = {r["entity_id"]: r for r in pq.read_table(str(tmp_path / "re" / "active")).to_pylist()}
    uids = spark.createDataFrame([(f"11-{j}",) for j in range(2048)], ["uid"])
    smallest = uids.orderBy(F.xxhash64("uid", F.lit(7)), "uid").limit(3).collect()
    assert entities["u11"]["uids"] == sorted(r["uid"] for r in smallest)
    assert entities["u11"]["weights"] == [pytest.approx(2048 / 3)] * 3 and entities["u11"]["sampled"]
    passive = pq.read_table(str(tmp_path / "re" / "passive")).to_pylist()
    heavy_passive = {r["uid"] for r in passive if r["entity_id"] == "u11"}
    assert len(heavy_passive) == 2045 and not heavy_passive & set(entities["u11"]["uids"])
    assert len(passive) == sum(2 ** u - 3 for u in range(2, 12))   # every left-out row once
    assert report["rows_removed_by_down_sampling"] == len(passive) and report["rows_active"] == 1 + 2 + 3 * 10


def test_a_heavy_entity_s_left_out_rows_are_grouped_in_chunks_of_about_the_bound(spark) -> None:
    """The rows a heavy entity leaves out are grouped in the same shuffle as its kept rows, but as
    about n / bound chunks of about the bound each: no group holds the heavy entity's rows whole."""
    rows = [(f"b-{j}", "big", 1.0, 1.0, 0.0, [0], [1.0]) for j in range(2048)] + \
        [(f"s-{j}", "small", 0.0, 1.0, 0.0, [0], [1.0]) for j in range(2)]
    indexed = spark.createDataFrame(rows, "uid string, entity_id string, label double, weight double, offset double, "
                                          "indices array<int>, values array<double>")
    heavy = _heavy_entities(indexed.select("entity_id"), 3)
    grouped = _group_by_entity(_thinned(indexed, heavy, 3, seed=7), heavy) \
        .select("entity_id", "_left_out", "n_rows_before", F.size("_rows").alias("n")).collect()
    chunks = [r["n"] for r in grouped if r["_left_out"]]
    entities = {r["entity_id"]: r for r in grouped if not r["_left_out"]}
    assert entities["big"]["n_rows_before"] == 2048 and 3 <= entities["big"]["n"] < 3 + 8 * 3 ** 0.5 + 16 + 20
    assert entities["small"]["n"] == 2 and sum(chunks) + entities["big"]["n"] == 2048
    assert 500 < len(chunks) <= math.ceil(2048 / 3) and max(chunks) <= 20


def test_a_heavy_entity_s_dropped_rows_do_not_count_toward_its_weight(spark, tmp_path: Path) -> None:
    """Under fail the heavy entities are counted unchecked (a bad row fails the job); under drop only
    the kept rows count: u5's 32 rows, 2 of them with an invalid label, down-sampled to 10 weigh 30 / 10."""
    records = skewed_records()
    for record in records[-2:]:
        record["label"] = 3.0
    data = write(tmp_path / "data" / "part-0.avro", records)
    index_features(spark, data, str(tmp_path / "idx"), FeatureShard(name="u", bags=("userFeatures",)), policy="drop")
    with pytest.raises(DataError, match=r"part-0.avro: record 61: field 'label': invalid label"):
        partition_random_effect(spark, data, "userId", str(tmp_path / "idx"), str(tmp_path / "fail"), upper_bound=10,
                                task="logistic")
    assert not (tmp_path / "fail").exists()
    report = partition_random_effect(spark, data, "userId", str(tmp_path / "idx"), str(tmp_path / "drop"),
                                     upper_bound=10, task="logistic", policy="drop")
    entities = {r["entity_id"]: r for r in pq.read_table(str(tmp_path / "drop" / "active")).to_pylist()}
    assert report["dropped"] == {"invalid_label": 2}
    assert entities["u5"]["weights"] == [pytest.approx(30 / 10)] * 10


def test_down_sampling_is_reproducible_and_seeded(spark, tmp_path: Path) -> None:
    _, first = partitioned(spark, tmp_path, "a", upper_bound=10, seed=1)
    _, again = partitioned(spark, tmp_path, "b", upper_bound=10, seed=1)
    _, other = partitioned(spark, tmp_path, "c", upper_bound=10, seed=2)
    assert first["u5"]["uids"] == again["u5"]["uids"]
    assert first["u5"]["uids"] != other["u5"]["uids"]


def test_partitions_are_balanced_and_listed(spark, tmp_path: Path) -> None:
    report, entities = partitioned(spark, tmp_path, "p", partitions=2)
    listing = json.loads((tmp_path / "p" / "_partitions.json").read_text())
    assert sum(p["entities"] for p in listing) == 6 and sum(p["rows"] for p in listing) == 63
    # sizes 32,16,8,4,2,1 dealt snake-wise over 2 partitions: {32,4,2} and {16,8,1}
    assert sorted(p["rows"] for p in listing) == [25, 38]
    ranks = spark.range(7).select(snake_partition(F.col("id"), 3).alias("p"))
    assert [r["p"] for r in ranks.collect()] == [0, 1, 2, 2, 1, 0, 0]


def test_offsets_are_joined_by_uid(spark, tmp_path: Path) -> None:
    import pyarrow as pa

    records = skewed_records(3)
    scores = tmp_path / "scores"
    scores.mkdir()
    pq.write_table(pa.table({"uid": [r["uid"] for r in records], "score": [0.25] * len(records)}),
                   scores / "part-0.parquet")
    write(tmp_path / "data" / "part-0.avro", records)
    index_features(spark, str(tmp_path / "data"), str(tmp_path / "idx"), FeatureShard(name="u", bags=("userFeatures",)))
    partition_random_effect(spark, str(tmp_path / "data"), "userId", str(tmp_path / "idx"), str(tmp_path / "re"),
                            offsets=str(scores))
    entities = pq.read_table(str(tmp_path / "re" / "active")).to_pylist()
    assert all(o == 0.25 for e in entities for o in e["offsets"])
    pq.write_table(pa.table({"uid": ["0-0"], "score": [1.0]}), scores / "part-0.parquet")
    with pytest.raises(DataError, match=r"have no score in the offsets"):
        partition_random_effect(spark, str(tmp_path / "data"), "userId", str(tmp_path / "idx"),
                                str(tmp_path / "re2"), offsets=str(scores))
    assert not (tmp_path / "re2").exists()
    report = partition_random_effect(spark, str(tmp_path / "data"), "userId", str(tmp_path / "idx"),
                                     str(tmp_path / "re3"), offsets=str(scores), policy="drop")
    assert report["dropped"] == {"missing_offset": len(records) - 1}


BAD_CASES = {
    "invalid_label": (lambda r: r.update(label=2.0), "label"),
    "non_finite_feature": (lambda r: r.update(features=[f("a", "", math.nan)]), "features"),
    "missing_entity_id": (lambda r: r.update(userId=None), "userId"),
}


@pytest.mark.parametrize("reason", sorted(BAD_CASES))
def test_bad_records_fail_naming_file_record_field(spark, tmp_path: Path, reason: str) -> None:
    records = [dict(r) for r in SMALL]
    mutate, field = BAD_CASES[reason]
    mutate(records[2])
    data = write(tmp_path / "data" / "part-7.avro", records)
    index_features(spark, data, str(tmp_path / "idx"), FeatureShard(name="g", bags=("features",)),
                   policy="drop")
    with pytest.raises(DataError, match=rf"part-7.avro: record 2: field '{field}': {reason.replace('_', ' ')}"):
        partition_random_effect(spark, data, "userId", str(tmp_path / "idx"), str(tmp_path / "out"),
                                task="logistic")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("reason", sorted(BAD_CASES))
def test_bad_records_dropped_and_counted(spark, tmp_path: Path, reason: str) -> None:
    records = [dict(r) for r in SMALL]
    BAD_CASES[reason][0](records[2])
    data = write(tmp_path / "data" / "part-0.avro", records)
    index_features(spark, data, str(tmp_path / "idx"), FeatureShard(name="g", bags=("features",)), policy="drop")
    report = partition_random_effect(spark, data, "userId", str(tmp_path / "idx"), str(tmp_path / "out"),
                                     task="logistic", policy="drop")
    assert report["dropped"] == {reason: 1}
    assert report["rows_active"] + report["rows_passive"] == 3
    assert read_report(str(tmp_path / "out"))["dropped"] == {reason: 1}


def test_schema_mismatch_names_file_and_field(spark, tmp_path: Path) -> None:
    write(tmp_path / "data" / "part-0.avro", SMALL)
    other = {"type": "record", "name": "Other", "fields": [{"name": "label", "type": "double"}]}
    with open(tmp_path / "data" / "part-1.avro", "wb") as out:
        fastavro.writer(out, other, [{"label": 1.0}])
    with pytest.raises(DataError, match=r"part-1.avro: field 'features': schema mismatch"):
        index_features(spark, str(tmp_path / "data"), str(tmp_path / "idx"), FeatureShard(name="g", bags=("features",)))
    assert not (tmp_path / "idx").exists()


def test_labels_valid_per_task(spark, tmp_path: Path) -> None:
    records = [example(str(i), float(v), [f("a")]) for i, v in enumerate([0, 3, 7])]
    data = write(tmp_path / "data" / "part-0.avro", records)
    index_features(spark, data, str(tmp_path / "idx"), FeatureShard(name="g", bags=("features",)))
    ok = prepare_fixed_effect(spark, data, str(tmp_path / "idx"), str(tmp_path / "pois"), 1, task="poisson")
    assert ok["rows_out"] == 3
    dropped = prepare_fixed_effect(spark, data, str(tmp_path / "idx"), str(tmp_path / "log"), 1, task="logistic",
                                   policy="drop")
    assert dropped["rows_out"] == 1 and dropped["dropped"] == {"invalid_label": 2}
    assert np.isclose(pq.read_table(str(tmp_path / "log")).column("label").to_pylist(), [0.0]).all()


def test_jobs_together_side_by_side_then_in_order_and_a_failure_loses_nothing(spark, tmp_path: Path) -> None:
    """jobs/together: one Spark application for a flow node's jobs (glmix.game.flow_builder)."""
    data = write(tmp_path / "data" / "part-0.avro", skewed_records())
    index_features(spark, data, str(tmp_path / "idx"), FeatureShard(name="u", bags=("userFeatures",)))
    prepare = [PrepareArgs(input=data, index=str(tmp_path / "idx"), output=str(tmp_path / f"fe-{n}"), files=n)
               for n in (1, 2)]
    partition = PartitionArgs(input=data, entity_field="userId", index=str(tmp_path / "idx"),
                              output=str(tmp_path / "re"), partitions=2)
    args = TogetherArgs(groups=[prepare, [partition]])
    assert TogetherArgs.from_argv(args.to_argv()) == args
    assert args.to_argv()[0] == "prepare_fixed_effect" and args.to_argv().count("--and") == 1
    report = together.run(spark, args)
    assert [(r["job"], r["params"]["output"]) for r in report["jobs"]] == [
        ("prepare_fixed_effect", f"file://{tmp_path}/fe-1"), ("prepare_fixed_effect", f"file://{tmp_path}/fe-2"),
        ("partition_random_effect", f"file://{tmp_path}/re")]
    assert report["jobs"][1] == {**read_report(str(tmp_path / "fe-2")), "wall_seconds": report["jobs"][1]["wall_seconds"]}

    # a job that fails (labels not 0/1 for a logistic task) fails the node, after the job beside it published
    bad = PrepareArgs(input=data, index=str(tmp_path / "idx"), output=str(tmp_path / "bad"), task="poisson")
    bad = bad.model_copy(update={"input": write(tmp_path / "labels" / "part-0.avro",
                                                [example("1", -1.0, [f("a")])])})
    good = PrepareArgs(input=data, index=str(tmp_path / "idx"), output=str(tmp_path / "good"))
    with pytest.raises(DataError, match="label"):
        together.run(spark, TogetherArgs(groups=[[bad, good]]))
    assert (tmp_path / "good" / "_SUCCESS").exists() and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("argv, message", [
    (["prepare_fixed_effect", "--input", "i", "--index", "x", "--output", "o", "--and"], "a job is missing"),
    (["shuffle", "--input", "i"], "unknown job 'shuffle'; the jobs: data_gate, evaluate"),
    (["prepare_fixed_effect", "--input", "i", "--index", "x", "--output", "o", "--master", "local[1]"],
     "prepare_fixed_effect: --master is the application's"),
])
def test_a_bad_together_command_is_one_line_naming_the_job(argv: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "jobs/together.py", *argv], cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and message in done.stderr and len(done.stderr.splitlines()) == 1
