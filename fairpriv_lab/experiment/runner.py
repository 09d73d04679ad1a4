"""Run one audit experiment end to end, resumably, with an on-disk cache.

``run(config)`` loads the data, builds the membership game, trains the game's models in
chunks of ``config.chunk_models`` (each chunk seeded from ``(seed, chunk index)`` and cached
as soon as it finishes, so an interrupted run resumes at its first missing chunk and equals
an uninterrupted one), then audits: per-record risk and group risk for every auditor, the
zero-leakage floor, empirical ε per group, outcome fairness and accuracy. Notebook 0 runs
one; every later notebook, the CLI and the widgets go through here.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._core import validate as V
from .._core.exceptions import CacheWriteError, ConfigError, FairPrivError, TrainingDivergedError
from .._core.io import float_from_json, json_float
from .._core.memory import release_free_memory
from .._core.vocabulary import GROUP_METHODS, RECORD_AUDITORS, default_delta
from .cache import Cache, CalibrationMemo
from .config import (
    AUDITORS,
    METHODS,
    MODELS,
    AuditConfig,
    DataConfig,
    ExperimentConfig,
    GameConfig,
    TrainConfig,
    digest,
)
from .loading import load_experiment_data
from .plan import DEFAULT_TIME_LIMIT, plan
from .result import AuditResult, compare, format_comparison

__all__ = [
    "DataConfig",
    "TrainConfig",
    "GameConfig",
    "AuditConfig",
    "ExperimentConfig",
    "AuditResult",
    "run",
    "compare",
    "format_comparison",
    "load_experiment_data",
    "PartialResult",
    "is_cached",
    "MODELS",
    "METHODS",
    "AUDITORS",
]

#: progress(stage, done, total): stage "train" counts models (fractions within a chunk when
#: the engine reports steps), stage "audit" counts auditors.
ProgressCallback = Callable[[str, float, float], None]


@dataclass(frozen=True, eq=False)
class PartialResult:
    """The audit of the models trained so far, handed to ``run(..., on_chunk=...)`` between chunks.

    Only the per-record auditor (PA-ALOOA, or PA-LOOA in a LOO game) is computed, with
    ``PARTIAL_BOOT`` bootstrap resamples: enough to draw GPR with its CI while the run
    continues. Units as in :class:`AuditResult` (GPR in percentage points).

    Attributes
    ----------
    config : ExperimentConfig
    group_names : tuple of str
    models_done, n_models : int
        Models trained so far and in the whole game.
    group_risk : dict of str to GroupRisk
    record_risk : dict of str to RecordRisk
    test_accuracy : ndarray of shape (models_done,)
    epsilon : float
        Accounted ε of the models so far (``inf`` for SGD).
    """

    config: ExperimentConfig
    group_names: tuple[str, ...]
    models_done: int
    n_models: int
    group_risk: dict[str, Any]
    record_risk: dict[str, Any]
    test_accuracy: np.ndarray
    epsilon: float

    @property
    def accuracy(self) -> float:
        """Mean test accuracy of the models trained so far (fraction)."""
        return float(np.mean(self.test_accuracy)) if self.test_accuracy.size else math.nan


#: Bootstrap resamples of a partial result's intervals (the final result uses audit.n_boot).
PARTIAL_BOOT = 200


# ---------------------------------------------------------------------------- seeds
def _seed(cfg: ExperimentConfig, *path: int) -> int:
    """Return a 63-bit seed for one stream: (experiment seed, stream id, index...)."""
    ss = np.random.SeedSequence([cfg.seed, *path])
    return int(ss.generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


_GAME_STREAM, _TRAIN_STREAM, _AUDIT_STREAM = 0, 1, 2


# ---------------------------------------------------------------------------- run
def run(
    config: ExperimentConfig | Mapping[str, Any],
    *,
    cache: bool | Cache | str | os.PathLike = True,
    progress: ProgressCallback | None = None,
    recompute: bool = False,
    on_chunk: Callable[[PartialResult], None] | None = None,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
) -> AuditResult:
    """Run (or load from the cache) one audit experiment.

    Parameters
    ----------
    config : ExperimentConfig or dict
        The experiment; a dict goes through :meth:`ExperimentConfig.from_dict`.
    cache : bool, Cache or path
        True: the default cache folder (``$FAIRPRIV_LAB_CACHE`` or
        ``~/.cache/fairpriv-lab/results``); a path or a :class:`~fairpriv_lab.experiment.Cache`:
        that cache; False: compute everything and store nothing.
    progress : callable, optional
        ``progress(stage, done, total)`` with stage ``"train"`` (models) or ``"audit"``.
    recompute : bool
        Ignore (and overwrite) cached chunks and audits.
    on_chunk : callable, optional
        ``on_chunk(partial)`` after every chunk this call trains, except the last: a
        :class:`PartialResult` auditing the models so far (the interactive panel redraws
        with it). An exception raised by ``on_chunk`` or ``progress`` stops the run; the
        chunks finished before it stay cached and a later call resumes from them.
    time_limit : float or None
        Seconds: refuse (before loading anything) a run that :func:`~fairpriv_lab.experiment.plan`
        estimates to take longer; default ``plan.DEFAULT_TIME_LIMIT`` (12 hours); ``None``: never.

    Returns
    -------
    AuditResult
        Group risk per auditor, empirical ε, accuracy, accounted ε, telemetry and timings.

    Notes
    -----
    The cache key of the trained models is the sha256 of the normalised training part of
    the configuration (:meth:`ExperimentConfig.training_key_payload`), the checksum of the
    loaded records and the cache format; the audit is cached under the same key with the
    hash of the audit settings, so changing only the audit (estimator, bootstrap, auditors)
    reuses the trained models. The device is not part of the key.
    """
    cfg = config if isinstance(config, ExperimentConfig) else ExperimentConfig.from_dict(config)
    if progress is not None and not callable(progress):
        raise V.fail("progress", progress, "to be None or a callable progress(stage, done, total)")
    # Refuses (ConfigError) in milliseconds, before data, game or training, a run that
    # cannot fit the machine; printed before the first chunk trains.
    if time_limit is not None:
        time_limit = V.positive("time_limit", time_limit)
    run_plan = plan(cfg, time_budget=None, time_limit=time_limit)
    store = _as_cache(cache)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    checksum, train, test = load_experiment_data(cfg.data)
    timings["load"] = time.perf_counter() - t_start
    _check_against_data(cfg, train)
    delta = cfg.train.delta if cfg.train.delta is not None else default_delta(train.n_samples)

    key = Cache.key(cfg.training_key_payload(), dataset_checksum=checksum) if store else None
    audit_item = _audit_item(cfg, delta)
    game = _build_game(cfg, train)
    _check_pairs(cfg)
    _check_batch_size(cfg, game)
    manifest: dict[str, str] = {}
    entry_meta = {"label": cfg.label, "config": cfg.to_dict(), "dataset_checksum": checksum}
    if store is not None:
        store.remove_stale_temporaries()  # left by a writer killed mid-write
        manifest = _entry_manifest(store, key)
    writer = _Writer(store) if store is not None else None
    if writer is not None:
        writer.save(key, "entry", None, {**entry_meta, "chunks": manifest}, "the entry")

    t0 = time.perf_counter()
    partial = None if on_chunk is None else functools.partial(_partial, on_chunk, cfg, train, game)
    trained = _train_chunks(cfg, train, test, game, delta, store, key, progress, recompute, manifest,
                            writer, run_plan, partial)
    timings["train"] = time.perf_counter() - t0
    release_free_memory()  # the training's freed buffers, before the audit's temporaries
    chunks = trained["chunk_digests"]
    if store is not None and chunks != manifest and all(chunks.values()):
        writer.save(key, "entry", None, {**entry_meta, "chunks": chunks}, "the entry")

    t0 = time.perf_counter()
    # a chunk trained by this call (e.g. after corruption, maybe on another device) gets a
    # fresh audit: the cached one describes the losses it was computed from; so does an
    # audit that records other chunks than the ones loaded (a chunk swapped or forged)
    fresh = store is None or recompute or trained["chunks_trained"] > 0
    cached_audit = None if fresh else store.load(key, audit_item)
    if cached_audit is not None and cached_audit.meta.get("chunks") != chunks:
        store.reject(key, audit_item, "it was computed from other chunks of trained models than the "
                     "ones in the cache now")
        cached_audit = None
    try:
        audit = _audit(cfg, train, test, game, trained, delta, cached_audit, progress)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        if cached_audit is None or isinstance(err, FairPrivError):
            raise
        store.reject(key, audit_item, f"missing or malformed field {err}")
        cached_audit = None
        audit = _audit(cfg, train, test, game, trained, delta, None, progress)
    if store is not None and cached_audit is None and all(chunks.values()):
        writer.save(key, audit_item, audit["arrays"], {**audit["meta"], "chunks": chunks}, "the audit")
    timings["audit"] = time.perf_counter() - t0
    release_free_memory()  # the audit's freed temporaries (its worker threads' arenas)
    timings["total"] = time.perf_counter() - t_start

    from .._core.version import __version__

    return AuditResult(
        config=cfg, dataset_checksum=checksum, group_names=tuple(train.group_names),
        n_train=train.n_samples, n_test=test.n_samples, game=game,
        losses=trained["losses"], confidences=trained["confidences"],
        record_risk=audit["record_risk"], group_risk=audit["group_risk"],
        empirical_epsilon=audit["empirical"], empirical_record=audit["empirical_record"],
        max_certifiable_epsilon=audit["max_certifiable"], outcome=audit["outcome"],
        test_accuracy=trained["test_accuracy"], group_accuracy=trained["group_accuracy"],
        epsilon=trained["epsilon"], delta=delta, noise_multiplier=trained["noise_multiplier"],
        telemetry=trained["telemetry"], timings=timings, version=__version__,
        sample_rate=trained["sample_rate"], steps=trained["steps"],
        substitution_epsilon=_substitution_budget(cfg, trained, delta),
        device=trained["device"], cache_key=key, chunks_trained=trained["chunks_trained"],
        chunks_loaded=trained["chunks_loaded"],
        from_cache=trained["chunks_trained"] == 0 and cached_audit is not None,
    )


def _as_cache(cache: bool | Cache | str | os.PathLike) -> Cache | None:
    if cache is True:
        return Cache()
    if cache is False or cache is None:
        return None
    if isinstance(cache, Cache):
        return cache
    if isinstance(cache, str | os.PathLike):
        return Cache(Path(cache))
    raise V.fail("cache", cache, "to be True, False, a Cache or a folder path")


def _entry_manifest(store: Cache, key: str) -> dict[str, str]:
    """Return the chunk digests the entry recorded when its chunks were last complete (or {})."""
    prior = store.load(key, "entry")
    chunks = prior.meta.get("chunks") if prior is not None else None
    if chunks is None:
        return {}
    if not isinstance(chunks, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in chunks.items()):
        store.reject(key, "entry", "its chunk list is malformed")
        return {}
    return dict(chunks)


class _Writer:
    """Save items to the cache; on a full disk warn once and write nothing more in this run.

    The warning names the path and the bytes needed; the run goes on with its arrays in
    memory and returns a complete result, only uncached.
    """

    def __init__(self, store: Cache) -> None:
        self.store = store
        self.failed = False

    def save(self, key: str, item: str, arrays, meta, what: str) -> str | None:
        from .cache import CacheWarning

        if self.failed:
            return None
        try:
            self.store.save(key, item, arrays, meta)
        except CacheWriteError as err:
            self.failed = True
            warnings.warn(f"{err} The run goes on with {what} and everything after it in memory; "
                          "nothing more is cached in this run.", CacheWarning, stacklevel=3)
            return None
        return self.store.item_digest(key, item)


def _check_against_data(cfg: ExperimentConfig, train) -> None:
    present = int(np.count_nonzero(train.group_counts))
    if cfg.train.method in GROUP_METHODS and present < 2:
        raise ConfigError(
            f"Expected train.method={cfg.train.method!r} on data with at least two groups; "
            f"{cfg.data.name!r} grouped by {cfg.data.resolved_group!r} has {present} in its "
            "training split. Group-specific clipping needs groups to compare; use 'dpsgd'."
        )
    if cfg.game.kind == "aloo" and cfg.game.m > train.n_samples:
        raise V.fail("game.m", cfg.game.m, f"to be at most the {train.n_samples} training records")
    if cfg.game.kind == "aloo" and cfg.game.m < present:
        raise V.fail("game.m", cfg.game.m, f"to be at least the number of groups ({present})",
                     "ALOOA stratifies the audited records so that every group has some")
    if cfg.game.targets is not None and max(cfg.game.targets) >= train.n_samples:
        raise V.fail("game.targets", cfg.game.targets, f"to index the {train.n_samples} training records")


def _check_pairs(cfg: ExperimentConfig) -> None:
    """Every audited record needs >= 2 model pairs: fail before training, naming game.n_models.

    The empirical ε (always computed) and the cross_fit estimator choose a threshold on one
    fold of a record's pairs and score it on the other.
    """
    g = cfg.game
    per_record = g.n_models // (2 * len(g.targets)) if g.kind == "loo" else g.n_models // 2
    if per_record < 2:
        need = 4 * len(g.targets) if g.kind == "loo" else 4
        raise V.fail("game.n_models", g.n_models,
                     f"to give every audited record at least 2 model pairs (game.n_models >= {need} "
                     f"for kind={g.kind!r})",
                     "The empirical epsilon bound and the cross_fit estimator choose a threshold on "
                     "one fold of pairs and test it on the other")


def _check_batch_size(cfg: ExperimentConfig, game) -> None:
    """Name the config field (and so the CLI option) before any work when a batch cannot fit."""
    smallest = int(game.membership.sum(axis=1).min())
    if cfg.train.batch_size > smallest:
        raise V.fail("train.batch_size", cfg.train.batch_size,
                     f"to be <= the smallest training set of the {game.kind!r} game ({smallest} records)",
                     "Lower train.batch_size or use more data (data.n)")


def _build_game(cfg: ExperimentConfig, train):
    from .. import games

    g = cfg.game
    seed = _seed(cfg, _GAME_STREAM)
    if g.kind == "aloo":
        return games.aloo_game(train.g, n_models=g.n_models, m=g.m, seed=seed)
    if g.kind == "half":
        return games.half_split_game(train.n_samples, n_models=g.n_models, seed=seed)
    n_pairs = g.n_models // (2 * len(g.targets))
    return games.loo_game(train.n_samples, np.asarray(g.targets, dtype=np.int64), n_pairs=n_pairs, seed=seed)


# ---------------------------------------------------------------------------- training
def _method_spec(t: TrainConfig):
    """Return the ``method`` argument of train_ensemble: the section's policy, knobs included."""
    return t.policy


def _membership_sha(rows: np.ndarray) -> str:
    return hashlib.sha256(np.packbits(rows, axis=None).tobytes() + str(rows.shape).encode()).hexdigest()


def is_cached(config: ExperimentConfig | Mapping[str, Any], *, cache: bool | Cache | str | os.PathLike = True) -> bool:
    """Return True when ``run(config, cache=cache)`` would train and audit nothing (all on disk).

    Loads the data (memoised) to know the cache key; trains nothing. The interactive panel
    uses it to open on a cached result at once.
    """
    cfg = config if isinstance(config, ExperimentConfig) else ExperimentConfig.from_dict(config)
    store = _as_cache(cache)
    if store is None:
        return False
    try:
        checksum, train, _ = load_experiment_data(cfg.data)
    except (ConfigError, OSError):
        return False
    delta = cfg.train.delta if cfg.train.delta is not None else min(1e-5, 1.0 / (10 * train.n_samples))
    key = Cache.key(cfg.training_key_payload(), dataset_checksum=checksum)
    audit_item = _audit_item(cfg, delta)
    n_chunks = -(-cfg.game.n_models // cfg.chunk_models)
    items = [f"chunk-{c:05d}" for c in range(n_chunks)] + [audit_item]
    return all(store.has(key, item) for item in items)


#: Version of the audit's randomness and definitions, part of a cached audit's name: a change
#: that moves an audit's numbers for the same models (2: empirical epsilon's folds became one
#: split of the pair positions, issue 15) recomputes cached audits (seconds) and keeps the
#: cached trained models (the cache format would retrain them).
AUDIT_VERSION = 2


def _audit_item(cfg: ExperimentConfig, delta: float) -> str:
    """Cache item name of a configuration's audit: its settings, delta and :data:`AUDIT_VERSION`."""
    payload: dict[str, Any] = {"audit": cfg.audit.to_dict(), "delta": delta}
    if AUDIT_VERSION > 1:  # version 1 audits were named without it
        payload["audit_version"] = AUDIT_VERSION
    return "audit-" + digest(payload)[:20]


def _partial(on_chunk, cfg, train, game, parts) -> None:
    """Audit the models of the chunks so far (per-record auditor only) and hand it to on_chunk."""
    from .._core.exceptions import SmallGroupWarning
    from ..audit.attacks import record_risk
    from ..audit.risk import GroupRisk

    losses = np.concatenate([p["losses"] for p in parts])
    k = losses.shape[0]
    rows = game.membership[:k]
    records = np.asarray(game.audit_idx, dtype=np.int64)
    if game.kind == "loo":  # only the targets whose pairs are all trained
        records = np.unique(np.asarray(game.targets)[: k // 2])
    a = cfg.audit
    seed = _seed(cfg, _AUDIT_STREAM)
    conf = np.concatenate([p["confidences"] for p in parts]) if a.signal == "confidence" else None
    try:
        rr = record_risk(losses, rows, records=records, groups=train.g, estimator=a.estimator,
                         signal=a.signal, confidences=conf, seed=seed)
    except ConfigError:
        return  # too few pairs so far for this estimator: wait for the next chunk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallGroupWarning)  # the final result warns once
        gr = GroupRisk(rr, tuple(train.group_names), n_boot=min(a.n_boot, PARTIAL_BOOT), ci=a.ci,
                       min_group_size=a.min_group_size, seed=seed)
    on_chunk(PartialResult(
        config=cfg, group_names=tuple(train.group_names), models_done=k, n_models=game.n_models,
        group_risk={rr.auditor: gr}, record_risk={rr.auditor: rr},
        test_accuracy=np.concatenate([p["test_accuracy"] for p in parts]),
        epsilon=max(p["epsilon"] for p in parts),
    ))


def _train_chunks(cfg, train, test, game, delta, store, key, progress, recompute,
                  manifest=None, writer=None, run_plan=None, partial=None) -> dict[str, Any]:
    n_models, chunk = game.membership.shape[0], cfg.chunk_models
    starts = list(range(0, n_models, chunk))
    parts, trained_n, loaded_n = [], 0, 0
    whole: dict[str, np.ndarray] = {}
    digests: dict[str, str | None] = {}
    for c, start in enumerate(starts):
        stop = min(start + chunk, n_models)
        rows = game.membership[start:stop]
        name = f"chunk-{c:05d}"
        item, part = None, None
        if store is not None and not recompute:
            item = store.load(key, name)
            if item is not None and (manifest or {}).get(name, item.digest) != item.digest:
                store.reject(key, name, "it is not the chunk its cache entry recorded (swapped or forged)")
                item = None
            if item is not None and (item.meta.get("rows") != [start, stop]
                                     or item.meta.get("membership_sha256") != _membership_sha(rows)):
                warnings.warn(f"Cached {name} of {key[:12]} was made for another game; retraining it.",
                              UserWarning, stacklevel=3)
                item = None
            if item is not None:
                try:
                    part = _chunk_from_cache(item)
                    _check_chunk(part, stop - start)
                except (KeyError, TypeError, ValueError, AttributeError) as err:
                    store.reject(key, name, f"missing or malformed field {err}")
                    item, part = None, None
        if part is None:
            if trained_n == 0 and run_plan is not None:
                print(run_plan, flush=True)  # the one-line plan, before the first chunk trains
            part = _train_one_chunk(cfg, train, test, rows, delta, _seed(cfg, _TRAIN_STREAM, c),
                                    progress, start, n_models)
            part["rows"] = [start, stop]
            part["membership_sha256"] = _membership_sha(rows)
            digests[name] = None
            if store is not None:
                arrays, meta = _chunk_to_cache(part)
                writer = writer or _Writer(store)
                digests[name] = writer.save(key, name, arrays, meta, f"{name} (trained models)")
            trained_n += 1
        else:
            digests[name] = item.digest
            loaded_n += 1
        for field in ("losses", "confidences"):  # into the whole game's arrays: no concatenation later
            if field not in whole:
                whole[field] = np.empty((n_models, part[field].shape[1]), dtype=np.float32)
            whole[field][start:stop] = part[field]
            part[field] = whole[field][start:stop]
        parts.append(part)
        if progress is not None:
            progress("train", float(stop), float(n_models))
        if partial is not None and item is None and stop < n_models:
            partial(parts)
    merged = _merge_chunks(parts, test, trained_n, loaded_n, whole)
    merged["chunk_digests"] = digests
    return merged


def _check_chunk(part: dict[str, Any], n_models: int) -> None:
    """Raise ValueError when a verified chunk's arrays do not have the shapes of its rows."""
    for name in ("losses", "confidences"):
        if part[name].ndim != 2 or part[name].shape[0] != n_models:
            raise ValueError(f"{name!r} of shape {part[name].shape}")
    for name in ("test_accuracy", "sample_rate"):
        if part[name].shape[:1] != (n_models,):
            raise ValueError(f"{name!r} of shape {part[name].shape}")


#: The on-disk memo of noise calibrations, registered with the engine on first training.
_CALIBRATION_MEMO = CalibrationMemo()


def _use_calibration_memo() -> None:
    """Register the disk memo of σ calibrations with the engine, unless the user set another."""
    from ..engine.privacy import set_calibration_store

    previous = set_calibration_store(_CALIBRATION_MEMO)
    if previous is not None and previous is not _CALIBRATION_MEMO:
        set_calibration_store(previous)


def _substitution_budget(cfg: ExperimentConfig, trained: dict[str, Any], delta: float) -> float:
    """Return the budget at delta of a substitution game's empirical bound (NaN: LOO, inf: SGD)."""
    t = cfg.train
    if not t.is_private:
        return math.inf
    if cfg.game.kind == "loo":
        return math.nan
    from ..engine.privacy import substitution_epsilon

    return substitution_epsilon(trained["noise_multiplier"], sample_rate=trained["sample_rate"],
                                steps=trained["steps"], delta=delta, method=_method_spec(t),
                                accountant=t.accountant)


def _train_one_chunk(cfg, train, test, rows, delta, seed, progress, offset, total) -> dict[str, Any]:
    from ..engine.training import train_ensemble

    _use_calibration_memo()

    t = cfg.train
    inner = None
    if progress is not None:
        n_rows = rows.shape[0]

        def inner(done, tot):  # engine reports (done, total) steps of this chunk
            progress("train", offset + n_rows * float(done) / max(float(tot), 1.0), float(total))

    try:
        res = train_ensemble(
            train, rows, model=t.model, method=_method_spec(t), epochs=t.epochs,
            batch_size=t.batch_size, lr=t.lr, optimizer=t.optimizer, clip=t.clip,
            noise_multiplier=t.noise_multiplier, target_epsilon=t.epsilon, delta=delta,
            accountant=t.accountant, hidden=t.hidden, device=cfg.device, seed=seed,
            progress=inner, test=test, diagnostics=t.resolved_diagnostics,
        )
    except TrainingDivergedError as err:
        # the engine counts models within the chunk: name the model of the game instead
        model = offset + err.model
        chunk = offset // cfg.chunk_models
        why = "exploding loss" if "exploding loss" in str(err) else "NaN or infinite loss"
        raise TrainingDivergedError(
            f"Model {model} of the game (chunk {chunk}) diverged ({why}) in epoch "
            f"{err.epoch}; lower train.lr (now {t.lr:g}) or train.clip. Chunks before {chunk} "
            "are cached and a re-run resumes from them; .partial holds this chunk after its "
            "finished epochs.", model=model, epoch=err.epoch, partial=err.partial) from err
    return {
        "losses": np.asarray(res.losses, dtype=np.float32),
        "confidences": np.asarray(res.confidences, dtype=np.float32),
        "test_accuracy": np.asarray(res.test_accuracy, dtype=np.float64),
        "test_group_accuracy": np.asarray(res.test_group_accuracy, dtype=np.float64),
        "test_predictions": np.asarray(res.test_predictions).astype(np.int32),
        "sample_rate": np.asarray(res.sample_rate, dtype=np.float64),
        "telemetry": res.telemetry,
        "epsilon": float(res.epsilon), "delta": float(res.delta),
        "noise_multiplier": None if res.noise_multiplier is None else float(res.noise_multiplier),
        "steps": int(res.steps), "seconds": float(res.seconds), "device": str(res.device),
    }


_CHUNK_ARRAYS = ("losses", "confidences", "test_accuracy", "test_group_accuracy",
                 "test_predictions", "sample_rate")
_CHUNK_META = ("epsilon", "delta", "noise_multiplier", "steps", "seconds", "device", "rows",
               "membership_sha256")


def _frame_to_arrays(df: pd.DataFrame, prefix: str) -> dict[str, np.ndarray]:
    out = {}
    for col in df.columns:
        values = df[col].to_numpy()
        if values.dtype.hasobject or not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            values = values.astype(str)
        out[f"{prefix}{col}"] = values
    return out


def _frame_from_arrays(arrays: Mapping[str, np.ndarray], prefix: str, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: np.array(arrays[f"{prefix}{c}"]) for c in columns})


def _chunk_to_cache(part: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {k: part[k] for k in _CHUNK_ARRAYS}
    arrays.update(_frame_to_arrays(part["telemetry"], "telemetry."))
    meta = {k: part[k] for k in _CHUNK_META}
    meta["epsilon"] = "inf" if math.isinf(part["epsilon"]) else part["epsilon"]
    meta["telemetry_columns"] = list(part["telemetry"].columns)
    return arrays, meta


def _chunk_from_cache(item) -> dict[str, Any]:
    a, m = item.arrays, item.meta
    part = {k: a[k] for k in _CHUNK_ARRAYS}
    part.update({k: m[k] for k in _CHUNK_META})
    part["epsilon"] = math.inf if m["epsilon"] == "inf" else float(m["epsilon"])
    part["telemetry"] = _frame_from_arrays(a, "telemetry.", m["telemetry_columns"])
    return part


def _merge_chunks(parts, test, trained_n, loaded_n, whole=None) -> dict[str, Any]:
    """Merge the chunks' arrays; ``whole`` holds losses and confidences already gathered."""
    whole = whole or {}
    sizes = np.array([p["losses"].shape[0] for p in parts], dtype=float)
    tele = []
    for p, w in zip(parts, sizes):
        df = p["telemetry"].copy()
        df["_w"] = w
        tele.append(df)
    telemetry = _weighted_telemetry(pd.concat(tele, ignore_index=True)) if tele else pd.DataFrame()
    tga = np.concatenate([p["test_group_accuracy"] for p in parts])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column = group absent from test
        per_group = np.nanmean(tga, axis=0) if tga.size else np.array([])
    return {
        "losses": whole["losses"] if "losses" in whole else np.concatenate([p["losses"] for p in parts]),
        "confidences": (whole["confidences"] if "confidences" in whole
                        else np.concatenate([p["confidences"] for p in parts])),
        "test_accuracy": np.concatenate([p["test_accuracy"] for p in parts]),
        "test_predictions": np.concatenate([p["test_predictions"] for p in parts]),
        "group_accuracy": {name: float(v) for name, v in zip(test.group_names, per_group)},
        "epsilon": max(p["epsilon"] for p in parts),
        "noise_multiplier": parts[0]["noise_multiplier"],
        "sample_rate": float(max(np.max(p["sample_rate"]) for p in parts)),
        "steps": int(max(int(p["steps"]) for p in parts)),
        "device": ",".join(sorted({p["device"] for p in parts})),
        "telemetry": telemetry,
        "chunks_trained": trained_n, "chunks_loaded": loaded_n,
    }


def _weighted_telemetry(df: pd.DataFrame) -> pd.DataFrame:
    """Average the per-chunk telemetry (means over a chunk's models) weighted by chunk size.

    Per (step, group) and column: ``sum(x w) / sum(w)`` over the chunks whose value is finite
    (NaN where none is); the rows in sorted key order. One ``bincount`` per column.
    """
    keys = [c for c in ("step", "group") if c in df.columns]
    values = [c for c in df.columns if c not in keys and c != "_w" and pd.api.types.is_numeric_dtype(df[c])]
    if not keys:
        return df.drop(columns="_w")
    grouped = df.groupby(keys, sort=True)
    ids, n = grouped.ngroup().to_numpy(), grouped.ngroups
    out = grouped.size().index.to_frame(index=False)
    w = df["_w"].to_numpy(float)
    for v in values:
        x = df[v].to_numpy(float)
        ok = np.isfinite(x)
        num = np.bincount(ids, weights=np.where(ok, x * w, 0.0), minlength=n)
        den = np.bincount(ids, weights=np.where(ok, w, 0.0), minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[v] = np.where(den > 0, num / den, math.nan)
    return out[keys + values]


# ---------------------------------------------------------------------------- audit
_RR_ARRAYS = ("records", "groups", "accuracy", "ipr", "floor", "n_pairs")
_OUTCOME_SCALARS = ("accuracy_difference", "demographic_parity_difference",
                    "equal_opportunity_difference", "equalized_odds_difference")


def _audit(cfg, train, test, game, trained, delta, cached, progress) -> dict[str, Any]:
    from ..audit.attacks import RecordRisk
    from ..audit.risk import GroupRisk, OutcomeFairness
    from ..audit.whole import whole_audit

    a = cfg.audit
    records = np.asarray(game.audit_idx, dtype=np.int64)
    seed = _seed(cfg, _AUDIT_STREAM)
    names = tuple(train.group_names)
    # the audit takes confidences only for the confidence signal (else it derives nothing)
    signal = {"losses": trained["losses"], "signal": a.signal,
              "confidences": trained["confidences"] if a.signal == "confidence" else None}
    rrs: dict[str, Any] = {}
    if cached is not None:
        arr, meta = cached.arrays, cached.meta
        for auditor in meta["auditors"]:
            rrs[auditor] = RecordRisk(
                **{f: np.array(arr[f"{auditor}.{f}"]) for f in _RR_ARRAYS},
                auditor=auditor, estimator=a.estimator, signal=a.signal,
            )
        emp = _frame_from_arrays(arr, "empirical.", meta["empirical_columns"])
        emp_record = np.array(arr["empirical_record"])
        max_cert = float(meta["max_certifiable"])
        outcome = OutcomeFairness(
            by_group=_frame_from_arrays(arr, "outcome.", meta["outcome_columns"]),
            multiclass=bool(meta["outcome_multiclass"]),
            **{k: float_from_json(meta["outcome"][k]) for k in _OUTCOME_SCALARS},
        )
    else:
        # every auditor and empirical epsilon in one pass over the losses (one gathering of the
        # records' in/out scores for all per-record analyses; each equals its separate call)
        whole = whole_audit(signal["losses"], game.membership, records=records, groups=train.g,
                            auditors=[(auditor, a.estimator) for auditor in a.auditors],
                            delta=delta, alpha=a.alpha, group_names=names, signal=a.signal,
                            confidences=signal["confidences"], seed=seed)
        rrs = {auditor: whole.risk[auditor, a.estimator] for auditor in a.auditors}
        if progress is not None:
            progress("audit", float(len(a.auditors)), float(len(a.auditors) + 1))
        emp, emp_record, max_cert = _empirical_table(whole.empirical)
        outcome = _outcome(test, trained["test_predictions"], names)
    outcome = _count_test_records(outcome, test, len(names))
    replicates = _replicates(a, signal, game, records, train, cached, seed, rrs)
    # Every auditor sees the same audited records, so a small-group warning would repeat once
    # per auditor: collect them and warn once per distinct message.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grs = {name: GroupRisk(rr, names, n_boot=a.n_boot, ci=a.ci, min_group_size=a.min_group_size,
                               seed=seed, replicates=replicates.get(name)) for name, rr in rrs.items()}
    for text, category in dict.fromkeys((str(w.message), w.category) for w in caught):
        warnings.warn(text, category, stacklevel=3)
    if progress is not None:
        progress("audit", float(len(a.auditors) + 1), float(len(a.auditors) + 1))
    arrays: dict[str, np.ndarray] = {}
    for name, rr in rrs.items():
        for f in _RR_ARRAYS:
            arrays[f"{name}.{f}"] = np.asarray(getattr(rr, f))
    for name, rep in replicates.items():
        arrays[f"{name}.replicates"] = rep
    arrays.update(_frame_to_arrays(emp, "empirical."))
    arrays["empirical_record"] = np.asarray(emp_record, dtype=np.float64)
    arrays.update(_frame_to_arrays(outcome.by_group, "outcome."))
    meta = {"auditors": list(rrs), "empirical_columns": list(emp.columns),
            "outcome_columns": list(outcome.by_group.columns), "max_certifiable": json_float(max_cert),
            "outcome": {k: json_float(getattr(outcome, k)) for k in _OUTCOME_SCALARS},
            "outcome_multiclass": bool(outcome.multiclass)}
    return {"record_risk": rrs, "group_risk": grs, "empirical": emp, "empirical_record": emp_record,
            "max_certifiable": max_cert, "outcome": outcome, "arrays": arrays, "meta": meta}


def _replicates(a: AuditConfig, signal, game, records, train, cached, seed, rrs) -> dict[str, np.ndarray]:
    """Two-way (model pairs + records) bootstrap replicates of the per-record auditors' GPRs."""
    if a.bootstrap != "pairs" or a.n_boot == 0:
        return {}
    if cached is not None:
        return {n: np.array(cached.arrays[f"{n}.replicates"]) for n in rrs if f"{n}.replicates" in cached.arrays}
    from ..audit.risk import pair_bootstrap

    out = {}
    for name in rrs:
        if name in RECORD_AUDITORS:
            out[name] = pair_bootstrap(signal["losses"], game.membership, records=records, groups=train.g,
                                       n_groups=train.n_groups, estimator=a.estimator,
                                       signal=a.signal, confidences=signal["confidences"],
                                       n_boot=a.n_boot, seed=seed)
    return out


def _empirical_table(res):
    """Empirical ε per record and per group (group records pooled), as a tidy frame."""
    df = pd.DataFrame(res.per_group).reset_index(drop=True)
    df["group"] = df["group"].astype(str)
    return df, np.asarray(res.per_record, dtype=np.float64), float(res.max_certifiable)


def _count_test_records(outcome, test, n_groups: int):
    """Say ``n`` = the group's test records (the pooled rates count every model's predictions)."""
    import dataclasses

    by = outcome.by_group.copy()
    by["n"] = np.bincount(np.asarray(test.g, dtype=np.int64), minlength=n_groups)[: len(by)]
    return dataclasses.replace(outcome, by_group=by)


def _outcome(test, predictions, names):
    """Outcome fairness of the ensemble: every model's predictions pooled (equal test sets).

    With the same test set for every model, the pooled per-group rates (accuracy, selection
    rate, TPR, FPR) equal the means over models of each model's rates. The pooled rows are
    given as (record, predicted class) with the number of models that predicted it, not
    tiled (400 models x 15,060 Adult test records tiled took about 190 MB).
    """
    from ..audit.kernels import column_counts
    from ..audit.risk import outcome_fairness_counts

    n_test = predictions.shape[1]
    n_classes = int(max(predictions.max(initial=0), np.max(test.y, initial=0))) + 1
    votes = np.stack([column_counts(predictions == c) for c in range(n_classes)])  # (classes, n_test)
    return outcome_fairness_counts(np.tile(test.y, n_classes), np.repeat(np.arange(n_classes), n_test),
                                   np.tile(test.g, n_classes), names, weights=votes.ravel())
