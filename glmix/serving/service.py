"""The scoring service: the online scorer over HTTP (FastAPI on uvicorn), JSON in and out.

    POST /score   one request {"features": {BAG: [{"name", "term", "value"}]}, "ids": {FIELD: ID},
                  "offset": 0, "uid": ...} or a batch {"requests": [...]}
    GET  /health  200 once a bundle is loaded
    GET  /model   the bundle's manifest, when it was loaded, requests served, unknown features seen
    POST /model   {"bundle": URI}: load that bundle and switch to it

A switch loads the new bundle beside the old one and then replaces one reference: a request
holds the scorer it started with, so requests in flight finish on the old bundle, whose stores
close when the last of them lets go. A request that does not validate gets 422 with one line
naming the field (``requests.3.features.userFeatures.0.value: Input should be a valid number``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glmix.errors import GlmixError
from glmix.serving.scorer import DEFAULT_CACHE, OnlineScorer


class FeatureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    term: str | None = ""
    value: float


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uid: str | int | None = None
    features: dict[str, list[FeatureIn]] = Field(default_factory=dict)
    ids: dict[str, str | int | None] = Field(default_factory=dict)
    offset: float = 0.0


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[ScoreRequest]


class SwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle: str


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _parsed(body: bytes, model_for: Callable[[Any], type[BaseModel]]) -> BaseModel | JSONResponse:
    """The request's model (chosen by ``model_for`` from the parsed JSON), or a 422 naming the field."""
    try:
        parsed = json.loads(body)
    except ValueError as error:
        return JSONResponse({"error": f"body: not JSON ({error})"}, status_code=422)
    try:
        return model_for(parsed).model_validate(parsed)
    except ValidationError as error:
        return JSONResponse({"error": _one_line(error)}, status_code=422)


def _scored(scorer: OnlineScorer, request: ScoreRequest) -> dict[str, Any]:
    features = {bag: [(f.name, f.term, f.value) for f in items] for bag, items in request.features.items()}
    ids = {k: v for k, v in request.ids.items() if v is not None}
    return {"uid": request.uid, **scorer.score(features, ids, request.offset).to_dict()}


class _Current:
    """The bundle being served and when it was loaded (replaced as a whole on a switch)."""

    def __init__(self, scorer: OnlineScorer) -> None:
        self.scorer, self.loaded = scorer, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def create_app(bundle: str, cache: Path = DEFAULT_CACHE) -> FastAPI:
    app = FastAPI(title="glmix scoring service")
    state = {"current": _Current(OnlineScorer(bundle, cache))}

    @app.post("/score")
    async def score(request: Request) -> Any:
        given = _parsed(await request.body(), lambda body: BatchRequest if isinstance(body, dict) and "requests" in body
                        else ScoreRequest)
        if isinstance(given, JSONResponse):
            return given
        scorer = state["current"].scorer     # this request's bundle, whatever a switch does meanwhile
        if isinstance(given, BatchRequest):
            return {"version": scorer.manifest.version, "results": [_scored(scorer, r) for r in given.requests]}
        assert isinstance(given, ScoreRequest)
        return {"version": scorer.manifest.version, **_scored(scorer, given)}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": state["current"].scorer.manifest.model}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        current = state["current"]
        return {**current.scorer.manifest.model_dump(mode="json", exclude={"files"}), "bundle": current.scorer.bundle,
                "loaded": current.loaded, "requests": current.scorer.requests,
                "unknown_features": dict(current.scorer.unknown_features)}

    @app.post("/model")
    async def switch(request: Request) -> Any:
        given = _parsed(await request.body(), lambda _: SwitchRequest)
        if isinstance(given, JSONResponse):
            return given
        assert isinstance(given, SwitchRequest)
        try:
            scorer = await run_in_threadpool(OnlineScorer, given.bundle, cache)
        except GlmixError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        state["current"] = _Current(scorer)
        return {"switched": True, "model": scorer.manifest.model, "version": scorer.manifest.version}

    return app


def serve(bundle: str, host: str = "127.0.0.1", port: int = 8080, cache: Path = DEFAULT_CACHE) -> None:
    import uvicorn

    uvicorn.run(create_app(bundle, cache), host=host, port=port, log_level="warning", access_log=False)
