"""One ETL run: read -> validate -> stage -> diff -> publish, recorded from start to end.

The run record is written before anything else, so that a run killed at any moment is visible
(and marked interrupted by the next run). The live layer changes only in ``publish``'s single
transaction; every failure before it leaves the live layer exactly as it was.
"""

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg
from psycopg import sql
from pyproj import CRS

from geocloud import db
from geocloud.catalog import get_catalog
from geocloud.config import get_settings, operator
from geocloud.errors import GuardRefused, InputError
from geocloud.etl import runs, stage
from geocloud.etl.crs import check_proj_database, reprojection
from geocloud.etl.guard import Limits, review
from geocloud.etl.limits import check_source
from geocloud.etl.pipeline import Pipeline, load_pipeline
from geocloud.etl.parallel import Processes, big, in_order
from geocloud.etl.prepare import BatchPreparer, check_geometry_type, drop_duplicate_keys, resolve_fields
from geocloud.etl.publish import Staged, live_version, publish, raster_diff, rollback
from geocloud.etl.quality import Quality
from geocloud.etl.sources import open_source, read_batches, sha256
from geocloud.etl.transforms import TRANSFORMS


PAUSE_ENV = "GEOCLOUD_ETL_PAUSE_AT"


def checkpoint(name: str) -> None:
    """Failure drills: with GEOCLOUD_ETL_PAUSE_AT=read|copy|index|publish a run stops at that point
    (inside its transaction) so that an operator or a test can kill it and check that the live
    layer is untouched and the next run works."""
    if os.environ.get(PAUSE_ENV) == name:
        print(f"geocloud: paused at {name}", file=sys.stderr, flush=True)
        time.sleep(600)


class Progress:
    """What a run reports while it works; the CLI shows it as rich progress bars."""

    def stage(self, name: str, total: int | None = None) -> None: ...

    def advance(self, n: int) -> None: ...


@dataclass
class Report:
    run_id: int
    pipeline: str
    source: str
    dry_run: bool
    status: str = "running"
    sha256: str | None = None
    operator: str = ""
    encoding: str | None = None
    crs: str | None = None
    transformation: str | None = None
    counts: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    diff: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)
    guard: dict = field(default_factory=dict)   # what the shrink guard objected to, and whether forced
    report_path: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return vars(self).copy()


class _Timer:
    def __init__(self, report: Report, progress: Progress):
        self.report, self.progress = report, progress

    @contextmanager
    def __call__(self, name: str, total: int | None = None):
        self.progress.stage(name, total)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.report.timings[name] = round(time.perf_counter() - t0, 3)


def run_pipeline(name: str, path: Path, *, dry_run: bool = False, force: bool = False,
                 progress: Progress | None = None) -> Report:
    progress = progress or Progress()
    settings, catalog = get_settings(), get_catalog().loadable()
    pipeline = load_pipeline(name, settings.etl_dir, catalog, path)
    check_proj_database()
    with db.connect(autocommit=True) as conn:
        run_id = runs.start(conn, pipeline.pipeline, pipeline.layer_ids, path, dry_run)
        progress = runs.Recorder(run_id, progress)
        report = Report(run_id, pipeline.pipeline, str(path), dry_run, operator=operator())
        quality = Quality()
        checked, processes = None, None
        try:
            # a hostile source (a 10 GB GeoJSON, a zip bomb...) is refused before it is hashed or read
            check_source(path, pipeline.source.format)
            checked = path
            if not pipeline.raster_layer and big(path):
                processes = Processes()  # forked while this run opens the source
            stage.lock_layers(conn, pipeline.layer_ids)
            stage.clear_leftovers(conn, pipeline.layer_ids, run_id)
            if pipeline.raster_layer:
                from geocloud.etl import raster  # rasterio takes ~1 s to import: only for raster runs

                raster.clear_leftovers(settings.data_path, pipeline.raster_layer)
                _raster_run(conn, pipeline, path, report, force, _Timer(report, progress))
            else:
                _vector_run(conn, pipeline, path, report, quality, force, _Timer(report, progress), progress,
                            processes)
        except BaseException as exc:  # noqa: BLE001 - record every failure, then let it propagate
            report.status = "refused" if isinstance(exc, GuardRefused) else "failed"
            report.error = str(exc) or type(exc).__name__
            report.quality = quality.as_dict()
            _finish(conn, report, settings.data_path, quality, checked)
            raise
        else:
            report.quality = quality.as_dict()
            _finish(conn, report, settings.data_path, quality, checked)
        finally:  # after the run's record says how it ended, so a next run never sees it 'running'
            if processes is not None:  # a run that failed before its read stage
                processes.close()
            progress.close()
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    stage.unlock_layers(conn, pipeline.layer_ids)
    return report


def _finish(conn: psycopg.Connection, report: Report, data_dir: Path, quality: Quality,
            checked: Path | None) -> None:
    """Record how the run ended, with the checksum of its source (``checked``: None for a source
    refused unread, which is never hashed; one that cannot be read has none either)."""
    if conn.closed:
        return
    if report.sha256 is None and checked is not None:
        with contextlib.suppress(OSError):
            report.sha256 = sha256(checked)
    report.report_path = str(runs.write_report(data_dir, report.run_id, report.as_dict()))
    runs.finish(conn, report.run_id, report.status, sha256=report.sha256, counts=report.counts,
                timings=report.timings, warnings=[vars(i) for i in quality.warnings], diff=report.diff,
                quality=report.quality, error=report.error, guard=report.guard)


def _transform_for(pipeline: Pipeline, output) -> callable:
    if output.transform == "zoning":
        categories = str(get_settings().etl_dir / "zoning-categories.csv")
        return partial(TRANSFORMS["zoning"], categories=categories, code_table=pipeline.zone_codes)
    return TRANSFORMS.get(output.transform) if output.transform else None


def _vector_run(conn, pipeline: Pipeline, path: Path, report: Report, quality: Quality, force: bool,
                timed: _Timer, progress: Progress, processes: Processes | None) -> None:
    catalog = get_catalog().loadable()
    src = open_source(path, pipeline.source)
    pipeline.check_columns(src.columns)
    report.encoding = f"{src.encoding.label} ({src.encoding.evidence})" if src.encoding else None
    report.crs = f"{src.crs.to_string()} ({src.crs_evidence})"
    layers = {o.layer: catalog.layers[o.layer] for o in pipeline.outputs}
    outputs = {o.layer: o for o in pipeline.outputs}
    if not pipeline.split:
        check_geometry_type(src, layers[pipeline.outputs[0].layer], split=False)
    fmaps = {lid: resolve_fields(o, layers[lid], src, quality, _transform_for(pipeline, o)) for lid, o in outputs.items()}
    checkpoint("read")
    targets = {lid: CRS.from_user_input(layer.crs).to_wkt() for lid, layer in layers.items()}
    source_wkt = src.crs.to_wkt()
    report.transformation = "; ".join(sorted({reprojection(source_wkt, wkt).description for wkt in targets.values()}))
    prepared = BatchPreparer(pipeline, src, layers, fmaps, source_wkt, targets)

    seen = {lid: set() for lid in layers}
    tables: dict[str, str] = {}
    with conn.transaction():
        for lid, layer in layers.items():
            tables[lid] = stage.create_staging(conn, layer, report.run_id)
        with timed("read, validate and copy", src.feature_count):
            writer = stage.CopyWriter(conn)
            try:
                for number, (own, parts) in enumerate(in_order(prepared, read_batches(src), processes)):
                    quality.merge(own)
                    for lid, table, rows in parts:
                        table = drop_duplicate_keys(table, rows, layers[lid], pipeline.rules, quality, seen[lid])
                        if table.num_rows:
                            writer.write(stage.copy_statement(layers[lid], tables[lid]), table)
                    progress.advance(own.read)
                    if number == 0 and os.environ.get(PAUSE_ENV) == "copy":  # the drill stops with rows sent
                        writer.drain()
                        checkpoint("copy")
            finally:
                writer.close()
        _check_quality(quality, pipeline, src.path)
    # Committed: the tables are in the staging schema, invisible to readers, and dropped as leftovers
    # by the next run if this one dies; indexes can now be built on two connections at once.
    report.counts = {"read": quality.read, "loaded": dict(quality.loaded), "rejected": quality.rejected,
                     "repaired": quality.repaired, "dropped_empty": quality.dropped_empty,
                     "duplicates": quality.duplicates}

    def diff_with_live(lid: str) -> stage.Diff:
        t0 = time.perf_counter()
        live = live_version(conn, lid)
        change = stage.diff(conn, layers[lid], f"live.{lid}" if live else None, f"staging.{tables[lid]}")
        report.timings["diff"] = round(report.timings.get("diff", 0) + time.perf_counter() - t0, 3)
        return change

    def beside_the_spatial_index(lid: str) -> stage.Diff:
        """The diff, then (once a run) the source's checksum: hashlib releases the GIL, and the core the
        GiST build leaves idle takes it rather than the busy read; recorded now, so that a run killed
        later (indexing, publishing) still says what it was loading."""
        change = diff_with_live(lid)
        if report.sha256 is None:
            report.sha256 = sha256(path)
            runs.set_checksum(conn, report.run_id, report.sha256)
        return change

    def discard():
        for lid in layers:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS staging.{}").format(sql.Identifier(tables[lid])))

    staged = []
    try:
        with timed("index"):
            for lid, layer in layers.items():
                change = stage.build_indexes(conn, layer, tables[lid], partial(beside_the_spatial_index, lid))
                report.diff[lid] = change.as_dict()
                staged.append(Staged(layer, tables[lid], quality.loaded[lid], change))
            checkpoint("index")
    except BaseException:
        with contextlib.suppress(psycopg.Error):  # best effort: the next run drops leftovers anyway
            discard()
        raise

    _go_live(conn, report, staged, pipeline, force, timed, discard)


def _go_live(conn, report: Report, staged: list[Staged], pipeline: Pipeline, force: bool, timed: _Timer,
             discard: Callable[[], None], by_diff: bool = True) -> None:
    """Publish the staged versions, or discard them: for a dry run (with what the guard would say),
    for a source that changes nothing (``by_diff``, unless forced), or when the guard refuses."""
    limits = Limits.of(pipeline.rules)
    if report.dry_run:
        report.status = "planned"
        findings = review(conn, staged, limits)
        report.guard = {"findings": findings, "forced": False} if findings else {}
    elif by_diff and not force and not any(s.diff.any for s in staged):
        report.status = "unchanged"
    else:
        try:
            with timed("publish"):
                report.versions, report.guard = publish(
                    conn, report.run_id, staged, report.operator, get_settings().data_path,
                    before_commit=lambda: checkpoint("publish"), limits=limits, force=force)
        except GuardRefused as exc:
            report.guard = {"findings": exc.findings, "forced": False}
            discard()
            raise
        report.status = "published"
        return
    discard()


def _check_quality(quality: Quality, pipeline: Pipeline, path: Path) -> None:
    if quality.rejected > pipeline.rules.max_rejected_rows:
        lines = [f"{i.message} ({i.count} row(s): {', '.join(map(str, i.rows[:8]))}{' …' if i.count > 8 else ''})"
                 for i in quality.errors]
        raise InputError(
            f"{quality.rejected} row(s) rejected (the pipeline allows {pipeline.rules.max_rejected_rows}):\n  - "
            + "\n  - ".join(lines), where=str(path),
            fix="correct those rows in the source and run again; nothing was published")
    if sum(quality.loaded.values()) == 0:
        raise InputError("no feature could be loaded", where=str(path), fix="see the quality report")


def _raster_run(conn, pipeline: Pipeline, path: Path, report: Report, force: bool, timed: _Timer) -> None:
    from geocloud.etl import raster

    settings, layer = get_settings(), get_catalog().loadable().layers[pipeline.raster_layer]
    with timed("read and validate"):
        info = raster.inspect(raster.source_files(path), pipeline)
    report.crs = info.crs
    report.counts = {"files": len(info.files), "bands": info.bands, "dtype": info.dtype}
    live = live_version(conn, layer.id)
    report.sha256 = sha256(path)
    if live and not force and not report.dry_run:
        live_sha = conn.execute("SELECT r.source_sha256 FROM geocloud.layer_versions v JOIN geocloud.etl_runs r "
                                "ON r.id = v.run_id WHERE v.layer = %s AND v.state = 'live'", (layer.id,)).fetchone()
        if live_sha and live_sha[0] == report.sha256:
            report.status = "unchanged"
            return
    version = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM geocloud.layer_versions WHERE layer = %s",
                           (layer.id,)).fetchone()[0]
    version_dir = f"rasters/{layer.id}/v{version}"
    with timed("convert to COG"):
        report.counts["bytes"] = raster.build_cogs(info, layer, settings.data_path, version_dir, report.run_id)
    change = raster_diff(conn, layer.id, info.bounds_3826, 3826)
    report.diff[layer.id] = change.as_dict()
    staged = [Staged(layer, version_dir, 1, change)]
    _go_live(conn, report, staged, pipeline, force, timed,
             lambda: shutil.rmtree(settings.data_path / version_dir, ignore_errors=True), by_diff=False)



def rollback_layer(layer_id: str, to_version: int | None = None) -> dict:
    """Make a kept version of a layer live again (the newest kept one by default)."""
    layer = get_catalog().layer(layer_id)
    with db.connect(autocommit=True) as conn:
        stage.lock_layers(conn, [layer_id])
        try:
            old, new, change = rollback(conn, layer, to_version, operator())
        finally:
            stage.unlock_layers(conn, [layer_id])
    return {"layer": layer_id, "from_version": old, "to_version": new, "diff": change.as_dict()}
