"""The plan of the generated sample city: extent, districts, villages and the road grid.

Everything is derived from a seed, so the same seed always yields the same city. Coordinates are
TWD97 / TM2 zone 121 (EPSG:3826) metres around the real Taichung City Hall, which keeps its real
address point (臺灣大道三段99號) so that tests can check a known location.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely

EXTENT = (200_000.0, 2_660_000.0, 230_000.0, 2_690_000.0)
CITY_HALL = (214_160.2912, 2_673_008.3139)
GRID = 600.0  # metres between grid roads


VILLAGE_STEMS = (
    "惠來何厝福安大鵬協和龍潭永安上石港尾廣福文化光明中和興仁民生忠孝仁愛信義和平公正長安新生"
    "永興大同復興平安福林西平東興南興北興德安"
)
V_ROADS = ["文心路", "五權路", "忠明路", "河南路", "西屯路", "黎明路", "大墩路", "惠中路", "朝富路", "青海路",
           "福星路", "逢甲路", "永福路", "中清路", "英才路", "精誠路", "向上路", "公益路", "美村路", "健行路",
           "東興路", "南屯路", "環中路", "中興路", "國光路", "建國路", "復興路", "進化路", "崇德路", "太原路",
           "松竹路", "敦化路", "昌平路", "軍功路", "東山路", "瓦磘路", "大連路", "中山路", "三民路", "自由路"]
H_ROADS = ["市政路", "漢口路", "何厝街", "大業路", "惠來路", "府會園道", "文華路", "四川路", "西平南巷", "工業區一路",
           "福科路", "甘肅路", "重慶路", "天津路", "大雅路", "水湳路", "北屯路", "雙十路", "錦南街", "柳川東路",
           "民權路", "林森路", "精武路", "興大路", "國光二路", "建成路", "樂業路", "東光路", "振興路", "旱溪路",
           "太平路", "中投路", "德芳路", "大里路", "成功路", "霧峰路", "環河路", "光復路", "中正路", "育英路"]
SECTIONS = "一二三四五六七八九"
SECTIONED = {"臺灣大道", "文心路", "五權路", "忠明路", "河南路", "西屯路", "黎明路", "惠中路", "中清路", "公益路",
             "環中路", "崇德路", "市政路", "大雅路", "北屯路", "民權路", "林森路", "中投路"}
SECTION_LENGTH = 6_000.0  # metres of road per 段

AVENUE = "臺灣大道"  # the diagonal avenue through City Hall, 一段 at the south-east end
AVENUE_DIR = np.array([-0.8575, 0.5145])  # unit vector pointing north-west


@dataclass(frozen=True)
class Road:
    """A straight road: from ``start`` along unit ``direction`` for ``length`` metres."""

    name: str
    start: tuple[float, float]
    direction: tuple[float, float]
    length: float

    @property
    def sectioned(self) -> bool:
        return self.name in SECTIONED

    def point(self, along: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates ``along`` the road and ``offset`` metres to its left (negative: right)."""
        dx, dy = self.direction
        return self.start[0] + along * dx - offset * dy, self.start[1] + along * dy + offset * dx

    def section(self, along: np.ndarray) -> np.ndarray:
        return np.minimum((along // SECTION_LENGTH).astype(int), len(SECTIONS) - 1)


def _avenue() -> Road:
    # City Hall is 三段99號: start 一段 so that 99號 lands on City Hall in the third section.
    along_city_hall = 2 * SECTION_LENGTH + (99 // 2) * 6.0 + 3.0
    sx = CITY_HALL[0] - along_city_hall * AVENUE_DIR[0] + 12.0 * AVENUE_DIR[1]
    sy = CITY_HALL[1] - along_city_hall * AVENUE_DIR[1] - 12.0 * AVENUE_DIR[0]
    return Road(AVENUE, (sx, sy), tuple(AVENUE_DIR), 30_000.0)


class City:
    def __init__(self, seed: int = 7):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.box = shapely.box(*EXTENT)

    @cached_property
    def roads(self) -> list[Road]:
        x0, y0, x1, y1 = EXTENT
        out = [_avenue()]
        for i, name in enumerate(V_ROADS):
            out.append(Road(name, (x0 + GRID * (i + 5) + 150.0, y0), (0.0, 1.0), y1 - y0))
        for j, name in enumerate(H_ROADS):
            out.append(Road(name, (x0, y0 + GRID * (j + 5) + 150.0), (1.0, 0.0), x1 - x0))
        return out

    @cached_property
    def district_polygons(self) -> list[shapely.Polygon]:
        """29 Voronoi cells; 西屯區's seed is City Hall so the real address falls inside it."""
        rng = np.random.default_rng(self.seed + 1)
        x0, y0, x1, y1 = EXTENT
        gx, gy = np.meshgrid(np.linspace(x0 + 2500, x1 - 2500, 6), np.linspace(y0 + 3000, y1 - 3000, 5))
        seeds = np.column_stack([gx.ravel(), gy.ravel()])[:29] + rng.uniform(-1200, 1200, (29, 2))
        seeds[5] = CITY_HALL
        cells = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=self.box)
        cells = [shapely.intersection(c, self.box) for c in shapely.get_parts(cells)]
        ordered = []
        for sx, sy in seeds:
            ordered.append(next(c for c in cells if shapely.contains_xy(c, sx, sy)))
        return ordered

    @cached_property
    def district_tree(self) -> shapely.STRtree:
        return shapely.STRtree(self.district_polygons)

    def district_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index into DISTRICTS of the district containing each point (nearest for edge cases)."""
        return self.district_tree.query_nearest(shapely.points(x, y), all_matches=False)[1]

    def village_of(self, district: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A village name per point: villages are 1.5 km cells, named uniquely within a district."""
        cell = ((x - EXTENT[0]) // 1500).astype(int) * 31 + ((y - EXTENT[1]) // 1500).astype(int)
        stems = len(VILLAGE_STEMS) // 2
        idx = (cell * 7 + district * 3) % stems
        names = np.array([VILLAGE_STEMS[2 * i: 2 * i + 2] + "里" for i in range(stems)])
        out = names[idx]
        hall = (district == 5) & (np.abs(x - CITY_HALL[0]) < 1) & (np.abs(y - CITY_HALL[1]) < 1)
        out[hall] = "惠來里"
        return out
