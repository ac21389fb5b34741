"""門牌 addresses: normalization shared by the ETL and the geocoder."""

from geocloud.address.normalize import (
    clean, county_district, full_address, lane_alley, number_floor, number_value, road_section,
    village_neighborhood,
)

__all__ = ["clean", "county_district", "full_address", "lane_alley", "number_floor", "number_value", "road_section",
           "village_neighborhood"]
