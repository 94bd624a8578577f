"""Serving: bundle build time, entity lookups (LMDB against SQLite), online scoring latency in
process and over HTTP, and the serving process's memory against the bundle's size (its resident pages split into
file-backed ones — the memory-mapped stores, which the kernel can drop and read again — and
anonymous ones: Python, the fixed effect's and the feature indices' dictionaries).

The GAME model is generated (training a million entities is not what is measured): a fixed
effect over 100k features, and per-user and per-item random effects of ENTITIES entities each
(20 coefficients and an intercept per entity, over 1,000 features). A request carries 30
features in three bags (the global model reads all three, per-user the item bag, per-item the
user bag) and a user and an item id drawn from the models' entities.

    make bench BENCH=serving                                  # 1M entities per random effect
    GLMIX_BENCH_ENTITIES=10000000 make bench BENCH=serving    # 10M

The two embedded stores, same entities, same values: py-lmdb (a memory-mapped B-tree, reads
without copying, one file per shard) and SQLite (stdlib; a WITHOUT ROWID table keyed by id,
memory-mapped reads with ``PRAGMA mmap_size``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests
from pyspark.sql import Column
from pyspark.sql import functions as F

from bench.report import print_table
from bench.sizes import size
from glmix.io.schemas import raw_schema
from glmix.io.storage import join
from glmix.model.linear_model import LinearModel, write_models
from glmix.serving import OnlineScorer
from glmix.serving.bundle import coordinate_dir
from glmix.serving.entity_store import EntityStore, shard_name
from glmix.serving.export import ExportArgs, export_bundle
from glmix.settings import SHARD_META, FeatureShard
from glmix.spark.session import session

ENTITIES = size(1_000_000, 5_000, "GLMIX_BENCH_ENTITIES")
GLOBAL_FEATURES = size(100_000, 1_000)
ENTITY_FEATURES = 1_000
PER_ENTITY = 20
LOOKUPS = size(100_000, 1_000)
REQUESTS = size(20_000, 500)
HTTP_SECONDS = size(10, 1)
CONCURRENCY = 8
SHARDS = size(8, 2)
BAGS = ("features", "userFeatures", "itemFeatures")
COORDINATES = {"per-user": ("userId", "u", "itemFeatures", "i"), "per-item": ("itemId", "m", "userFeatures", "f")}


def _coordinate_meta(directory: str, shard: FeatureShard) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    Path(directory, SHARD_META).write_text(json.dumps({"shard": shard.model_dump(mode="json")}))


def _slopes(feature: str) -> Column:
    """PER_ENTITY coefficients of features ``<feature><k>``, k spread over ENTITY_FEATURES by the entity."""
    return F.transform(F.sequence(F.lit(0), F.lit(PER_ENTITY - 1)), lambda j: F.struct(
        F.concat(F.lit(feature), ((F.col("id") * 7 + j * 131) % ENTITY_FEATURES).cast("string")).alias("name"),
        F.lit("").alias("term"), (F.pmod(F.hash(F.col("id"), j), F.lit(1000)) / 1000.0 - 0.5).alias("value")))


def generate_model(root: Path) -> Path:
    """A GAME model directory (glmix's published layout) with generated coefficients."""
    model = root / "model"
    rng = np.random.default_rng(3)
    fixed = model / "fixed-effect" / "global"
    _coordinate_meta(str(fixed), FeatureShard(name="global", bags=BAGS))
    means = {("(INTERCEPT)", ""): -1.0, **{(f"g{k}", "t"): float(v)
                                            for k, v in enumerate(rng.normal(0, 0.1, GLOBAL_FEATURES))}}
    write_models(str(fixed / "coefficients"), [LinearModel("fixed-effect", "logistic", means)])
    spark = session("local[2]", "bench-serving-model", extra={"spark.driver.memory": "4g"})
    schema = json.dumps(raw_schema("Model"))
    for name, (_, prefix, bag, feature) in COORDINATES.items():
        directory = model / "random-effect" / name
        _coordinate_meta(str(directory), FeatureShard(name=name, bags=(bag,)))
        intercept = F.array(F.struct(F.lit("(INTERCEPT)").alias("name"), F.lit("").alias("term"),
                                     (F.col("id") % 13 / 13.0 - 0.5).alias("value")))
        (spark.range(ENTITIES, numPartitions=SHARDS)
         .select(F.concat(F.lit(prefix), F.col("id").cast("string")).alias("modelId"),
                 F.lit("logistic_regression").alias("modelClass"), F.concat(intercept, _slopes(feature)).alias("means"),
                 F.lit(None).cast("array<struct<name:string,term:string,value:double>>").alias("variances"),
                 F.lit("logistic").alias("lossFunction"))
         .write.format("avro").option("avroSchema", schema).save(join(str(directory), "coefficients")))
    coordinates = {"global": {"type": "fixed", "shard": FeatureShard(name="global", bags=BAGS).model_dump(mode="json")},
                   **{name: {"type": "random", "entity_field": field,
                             "shard": FeatureShard(name=name, bags=(bag,)).model_dump(mode="json")}
                      for name, (field, _, bag, _) in COORDINATES.items()}}
    (model / "model-metadata.json").write_text(json.dumps({"task": "logistic", "coordinates": coordinates}))
    return model


def request(rng: np.random.Generator) -> tuple[dict[str, list[tuple[str, str, float]]], dict[str, str]]:
    features = {"features": [(f"g{k}", "t", 1.0) for k in rng.integers(0, GLOBAL_FEATURES, 10)],
                "userFeatures": [(f"f{k}", "", float(v)) for k, v in zip(rng.integers(0, ENTITY_FEATURES, 10),
                                                                          rng.random(10), strict=True)],
                "itemFeatures": [(f"i{k}", "", float(v)) for k, v in zip(rng.integers(0, ENTITY_FEATURES, 10),
                                                                          rng.random(10), strict=True)]}
    return features, {"userId": f"u{rng.integers(ENTITIES)}", "itemId": f"m{rng.integers(ENTITIES)}"}


def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    micros = np.array(seconds) * 1e6
    return float(np.percentile(micros, 50)), float(np.percentile(micros, 99)), float(micros.mean())


def sqlite_copy(store_dir: Path, shards: int, target: Path) -> float:
    """The same entities in one SQLite file; its build time."""
    started = time.perf_counter()
    db = sqlite3.connect(target)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE entity (id BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID")
    import lmdb
    for s in range(shards):
        env = lmdb.open(str(store_dir / shard_name(s)), subdir=False, readonly=True, lock=False)
        with env.begin() as txn:
            db.executemany("INSERT INTO entity VALUES (?, ?)", iter(txn.cursor()))
        env.close()
    db.commit()
    db.close()
    return time.perf_counter() - started


def compare_stores(bundle: Path, root: Path) -> None:
    directory = bundle / coordinate_dir("per-user")
    shards = [directory / shard_name(s) for s in range(SHARDS)]
    sqlite_path = root / "per-user.sqlite"
    sqlite_build = sqlite_copy(directory, SHARDS, sqlite_path)
    rng = np.random.default_rng(5)
    ids = [f"u{k}".encode() for k in rng.integers(0, ENTITIES, LOOKUPS)]
    store = EntityStore(shards)
    db = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True, check_same_thread=False)
    db.execute(f"PRAGMA mmap_size={sqlite_path.stat().st_size * 2}")
    def from_lmdb(key: bytes) -> object:
        return store.get(key.decode())

    def from_sqlite(key: bytes) -> object:
        return db.execute("SELECT value FROM entity WHERE id = ?", (key,)).fetchone()

    rows: list[list[object]] = []
    for name, get in [("LMDB (py-lmdb)", from_lmdb), ("SQLite (WITHOUT ROWID, mmap)", from_sqlite)]:
        for key in ids[:1000]:    # warm the page cache and the mapping
            get(key)
        timings = []
        for key in ids:
            started = time.perf_counter()
            assert get(key) is not None
            timings.append(time.perf_counter() - started)
        p50, p99, mean = percentiles(timings)
        on_disk = sum(p.stat().st_size for p in shards) if name.startswith("LMDB") else sqlite_path.stat().st_size
        rows.append([name, p50, p99, mean, on_disk / 2**20])
    rows[0].insert(1, float("nan"))
    rows[1].insert(1, sqlite_build)
    print_table(f"entity lookup, {ENTITIES:,} entities, {LOOKUPS:,} random ids (in process, one thread)",
                ["store", "build s (from the LMDB shards)", "p50 us", "p99 us", "mean us", "MB on disk"], rows)
    store.close()
    db.close()


def in_process(bundle: Path) -> OnlineScorer:
    scorer = OnlineScorer(str(bundle), verify=False)
    rng = np.random.default_rng(7)
    requests_ = [request(rng) for _ in range(REQUESTS)]
    for features, ids in requests_[:1000]:
        scorer.score(features, ids)
    timings = []
    for features, ids in requests_:
        started = time.perf_counter()
        scorer.score(features, ids)
        timings.append(time.perf_counter() - started)
    p50, p99, mean = percentiles(timings)
    print_table(f"online scoring in process: {REQUESTS:,} single requests, 3 coordinates, {ENTITIES:,} entities "
                "per random effect, 30 features", ["p50 us", "p99 us", "mean us", "goal p99 us"],
                [[p50, p99, mean, 200]])
    return scorer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def over_http(bundle: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "glmix.cli", "serve", str(bundle), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                requests.get(f"{url}/health", timeout=1).raise_for_status()
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() - started < 600, "the service did not start"
                time.sleep(0.2)
        load_seconds = time.monotonic() - started
        rng = np.random.default_rng(9)
        bodies = []
        for _ in range(1000):
            features, ids = request(rng)
            bodies.append(json.dumps({"features": {b: [{"name": n, "term": t, "value": v} for n, t, v in items]
                                                   for b, items in features.items()}, "ids": ids}).encode())
        timings: list[float] = []
        errors = [0]
        deadline = time.monotonic() + HTTP_SECONDS

        def client(k: int) -> None:
            with requests.Session() as http:
                i = k
                while time.monotonic() < deadline:
                    started = time.perf_counter()
                    response = http.post(f"{url}/score", data=bodies[i % len(bodies)],
                                         headers={"content-type": "application/json"}, timeout=30)
                    timings.append(time.perf_counter() - started)
                    errors[0] += response.status_code != 200
                    i += CONCURRENCY

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CONCURRENCY)]
        begun = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - begun
        p50, p99, _ = percentiles(timings)
        memory = psutil.Process(server.pid).memory_info()
        rss, mapped = memory.rss / 2**20, memory.shared / 2**20   # shared: file-backed pages (the mapped stores, libraries)
        bundle_mb = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 2**20
        print_table(f"scoring service over HTTP on loopback (uvicorn, one process; {CONCURRENCY} client threads, "
                    f"{HTTP_SECONDS} s; clients and server share the 2 cores)",
                    ["requests", "errors", "requests/s", "p50 ms", "p99 ms", "start s", "server RSS MB",
                     "of it file-backed MB", "anonymous MB", "bundle MB"],
                    [[len(timings), errors[0], len(timings) / elapsed, p50 / 1e3, p99 / 1e3, load_seconds, rss,
                      mapped, rss - mapped, bundle_mb]])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="glmix-bench-serving-", dir=os.environ.get("GLMIX_BENCH_DIR")) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        model = generate_model(root)
        generated = time.perf_counter() - started
        spark = session("local[2]", "bench-serving", extra={"spark.driver.memory": "4g"})
        started = time.perf_counter()
        report = export_bundle(spark, ExportArgs(model=str(model), output=str(root / "bundle"), shards=SHARDS))
        built = time.perf_counter() - started
        bundle = root / "bundle"
        bundle_mb = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 2**20
        print_table(f"bundle build (export job, local[2]): 2 random effects x {ENTITIES:,} entities, "
                    f"{GLOBAL_FEATURES:,} global features, {SHARDS} shards each",
                    ["model generated s", "export s", "per-user s", "per-item s", "entities / s", "bundle MB"],
                    [[generated, built, report["coordinates"]["per-user"]["seconds"],
                      report["coordinates"]["per-item"]["seconds"], 2 * ENTITIES / built, bundle_mb]])
        compare_stores(bundle, root)
        in_process(bundle).close()
        over_http(bundle)
