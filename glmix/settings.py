"""Typed settings shared by stages: feature shards, bad-record policy, tasks. Errors name the key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from glmix.errors import ConfigError

Task = Literal["logistic", "linear", "poisson"]
BadRecordPolicy = Literal["fail", "drop"]


class Settings(BaseModel):
    """Base for every config object: unknown keys are errors, values are validated early."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str = "") -> Self:
        """Validate, turning pydantic's report into one ConfigError naming each bad key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                key = ".".join(str(p) for p in cls._location(error["loc"])) or "(root)"
                problems.append(f"{where + '.' if where else ''}{key}: {error['msg']}")
            raise ConfigError("; ".join(problems)) from None

    @classmethod
    def _location(cls, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
        """The key path of an error as the user wrote it (a config with unions drops their labels)."""
        return loc


SHARD_META = "_shard.json"   # every output derived from a shard carries it: the shard and its feature count


NormalizationKind = Literal["none", "standardization", "scale_with_standard_deviation", "scale_with_max_magnitude"]


class FeatureShard(Settings):
    """A set of feature bags (plus an optional intercept) indexed together, as Photon ML's feature shards."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    bags: tuple[str, ...] = Field(min_length=1)
    intercept: bool = True
    min_count: int = Field(1, ge=1, description="features seen in fewer rows are left out of the index")
    whitelist: str | None = Field(None, description="file of allowed features, one 'name<TAB>term' (or 'name') a line")
    normalization: NormalizationKind = Field(
        "none", description="Photon ML's feature normalization: the fixed effect's solver works on the features "
                            "scaled (and shifted) by the index's statistics; its model is saved unscaled")

    @field_validator("bags")
    @classmethod
    def _distinct(cls, bags: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(bags)) != len(bags):
            raise ValueError("bags must be distinct")
        return bags


class DataGateSettings(Settings):
    """The data gate: the new training window's statistics against those of the production
    version's training window (glmix.registry.data_gate), each check with its threshold."""

    features: int = Field(50, ge=1, description="the reference's most frequent features compared one by one")
    bins: int = Field(10, ge=2, description="quantile bins of a feature's values (from the reference window)")
    psi: float = Field(0.25, gt=0, description="the highest population stability index a feature may reach")
    ks: float | None = Field(None, gt=0, le=1, description="the highest Kolmogorov-Smirnov statistic (binned)")
    unseen_share: float = Field(0.1, ge=0, le=1,
                                description="the highest share of rows with a feature the production model never saw")
    label_rate: float = Field(0.1, ge=0, description="the largest change of the mean label (absolute)")
    missing_ids: float = Field(0.01, ge=0, le=1, description="the highest share of rows without an entity id")
    row_change: float = Field(0.5, ge=0, description="the largest relative change of the row count")
    action: Literal["fail", "warn"] = Field("fail", description="what a violation does to the flow")
