"""Coordinate reference systems: identify the source CRS, transform safely, check the extent.

The TWD67 trap: PROJ's only accurate TWD67 transformation is EPSG:15487 (TWD67 / TM2 121 ->
TWD97 / TM2 121, about 850 m of datum shift). Every other route from TWD67 is a "Ballpark"
transformation that applies no shift at all. So TWD67 is always routed through EPSG:3826, and any
Ballpark or unknown-accuracy operation is refused rather than silently applied.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError
from pyproj.transformer import TransformerGroup

from geocloud.errors import ConfigError, InputError

TWD97_TM2 = CRS.from_epsg(3826)
TWD67_TM2 = CRS.from_epsg(3828)
EPSG_15487 = "urn:ogc:def:coordinateOperation:EPSG::15487"
# Extents in EPSG:3826 metres: Taiwan (main island and nearby islets in zone 121) and Taichung City.
TAIWAN = (110_000.0, 2_400_000.0, 380_000.0, 2_820_000.0)
CITY = (180_000.0, 2_630_000.0, 300_000.0, 2_730_000.0)
# Offset EPSG:15487 applies in Taichung: TWD97 = TWD67 + (828.589, -206.915) metres.
TWD67_SHIFT = (828.589, -206.915)


def check_proj_database() -> None:
    """Refuse to run on a PROJ database that lacks EPSG:15487 (older PROJ, e.g. Debian's 9.1)."""
    try:
        Transformer.from_pipeline(EPSG_15487)
    except ProjError:
        raise ConfigError(
            "the installed PROJ database lacks EPSG:15487 (TWD67 -> TWD97); TWD67 data would be ~850 m off",
            fix="install pyproj >= 3.7 (it bundles PROJ 9.5 with EPSG:15487): pip install -U 'pyproj>=3.7'",
        ) from None


def _datum_guess(crs: CRS) -> int | None:
    """EPSG code for Taiwanese CRSs whose .prj names PROJ cannot match (e.g. GCS_TWD97[2020])."""
    datum = (crs.datum.name if crs.datum else "").upper().replace("_", "")
    name = crs.name.upper()
    twd97 = "1997" in datum or "TWD97" in name
    twd67 = "1967" in datum or "TWD67" in name
    if not (twd97 or twd67):
        return None
    if crs.is_geographic:
        return 3824 if twd97 else 3821
    params = {p.name.lower(): p.value for p in (crs.coordinate_operation.params if crs.coordinate_operation else [])}
    meridian = next((v for k, v in params.items() if "longitude" in k and "origin" in k or "central" in k), None)
    if meridian is None:
        return None
    if abs(meridian - 121) < 1e-6:
        return 3826 if twd97 else 3828
    if abs(meridian - 119) < 1e-6:
        return 3825 if twd97 else 3827
    return None


def identify(user_input, where: str) -> CRS:
    """A pyproj CRS with an EPSG code where one can be found."""
    try:
        crs = CRS.from_user_input(user_input)
    except CRSError as exc:
        raise InputError(f"unknown or unreadable CRS ({exc})", where=where,
                         fix="fix the .prj / crs member, or set source.crs (e.g. EPSG:3826) in the pipeline") from None
    code = crs.to_epsg(min_confidence=70) or _datum_guess(crs)
    return CRS.from_epsg(code) if code else crs


def _is_twd67(crs: CRS) -> bool:
    return crs.datum is not None and "1967" in crs.datum.name


def _checked(src: CRS, dst: CRS) -> Transformer:
    group = TransformerGroup(src, dst, always_xy=True)
    for t in group.transformers:
        if "ballpark" in t.description.lower():
            continue
        if t.accuracy is None or t.accuracy < 0:
            same_datum = src.datum is not None and dst.datum is not None and src.datum == dst.datum
            if not same_datum and not src.is_exact_same(dst):
                continue
        return t
    raise InputError(
        f"no accurate transformation from {src.name} to {dst.name} is available (only Ballpark ones)",
        fix="declare the source's real CRS; TWD67 data must be EPSG:3828 (TWD67 / TM2 zone 121)",
    )


@dataclass(frozen=True)
class Reprojection:
    """A safe chain of transformations; for TWD67 it goes through EPSG:3826 with EPSG:15487."""

    steps: tuple[Transformer, ...]

    @property
    def description(self) -> str:
        return " -> ".join(t.description for t in self.steps) or "none (same CRS)"

    def xy(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for t in self.steps:
            x, y = t.transform(x, y)
        return np.asarray(x), np.asarray(y)

    def geometries(self, geoms: np.ndarray) -> np.ndarray:
        if not self.steps:
            return geoms
        return shapely.transform(geoms, lambda c: np.column_stack(self.xy(c[:, 0], c[:, 1])))


@lru_cache(maxsize=64)
def reprojection(src_wkt: str, dst_wkt: str) -> Reprojection:
    src, dst = CRS.from_wkt(src_wkt), CRS.from_wkt(dst_wkt)
    if src.equals(dst, ignore_axis_order=False):
        return Reprojection(())
    if _is_twd67(src):
        check_proj_database()
        steps = []
        if not src.equals(TWD67_TM2):
            steps.append(_checked(src, TWD67_TM2))
        steps.append(Transformer.from_pipeline(EPSG_15487))
        if not dst.equals(TWD97_TM2):
            steps.append(_checked(TWD97_TM2, dst))
        return Reprojection(tuple(steps))
    return Reprojection((_checked(src, dst),))


def extent_problem(raw_x: np.ndarray, raw_y: np.ndarray, x: np.ndarray, y: np.ndarray, src: CRS,
                   rule: str) -> tuple[np.ndarray, str] | None:
    """Rows outside Taiwan (or the city) and the likely cause, judged from the raw and the EPSG:3826
    coordinates; None when every point is inside."""
    box = CITY if rule == "city" else TAIWAN
    inside = (x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])
    if inside.all():
        return None
    bad = ~inside
    bx, by = raw_x[bad], raw_y[bad]
    area = "Taichung City" if rule == "city" else "Taiwan"
    if src.is_projected and np.all((np.abs(bx) <= 180) & (np.abs(by) <= 90)):
        why = (f"the coordinates look like longitude/latitude degrees but the declared CRS is {src.name}; "
               "declare EPSG:4326 (WGS84) or EPSG:3824 (TWD97 geographic)")
    elif src.is_geographic and np.all((np.abs(bx) > 180) | (np.abs(by) > 90)):
        why = (f"the coordinates look like metres but the declared CRS is geographic ({src.name}); "
               "the data is probably EPSG:3826 (TWD97 / TM2 zone 121)")
    elif np.all((by >= box[0]) & (by <= box[2]) & (bx >= box[1]) & (bx <= box[3])):
        why = "X and Y look swapped (northing in the X column); swap the columns or fix the axis order"
    elif src.is_geographic and np.all((bx >= 21) & (bx <= 27) & (by >= 118) & (by <= 123)):
        why = "latitude and longitude look swapped (EPSG:4326 and 3824 are lat/lon in EPSG order)"
    elif np.all((x[bad] + TWD67_SHIFT[0] >= box[0]) & (x[bad] + TWD67_SHIFT[0] <= box[2])):
        why = ("if the data is TWD67 (older sheets), it is declared as TWD97: declare EPSG:3828 so that "
               "EPSG:15487 shifts it by ~850 m; otherwise check the CRS")
    else:
        why = f"check the declared CRS ({src.name}) and the coordinate columns"
    return bad, f"{int(bad.sum())} feature(s) lie outside {area}; {why}"
