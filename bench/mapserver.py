"""MapServer 8 (Debian's ``mapserver-bin`` and ``cgi-mapserver``) as an OGC API - Features peer:
``spawn-fcgi`` runs ``/usr/lib/cgi-bin/mapserv`` behind nginx. The mapfile and configs are written
into a temporary directory at bench time from the catalog's fields; no peer code is committed.

What it takes (MapServer 8.0): a ``mapserver.conf`` naming the mapfile under a ``MAPS`` alias,
found through ``MAPSERVER_CONFIG_FILE`` in the FastCGI environment (``MS_MAPFILE`` alone is
refused); URLs ``/mapserv/<alias>/ogcapi/...``; ``oga_enable_request "*"``; ``gml_include_items``
listing the fields (``all`` would also emit ``geom_3857``) and ``gml_featureid``; and no FastCGI
keep-alive, since each mapserv process serves one request at a time. Tuned as a performance-minded
city would: the layer's ``EXTENT`` given (else MapServer computes it from the table on every request:
a street page took 163 ms instead of 63) and ``CLOSE_CONNECTION=DEFER`` (the mapserv process keeps its
PostGIS connection between requests: 63 ms -> 6 ms).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psycopg

from common import _wait_for_port, free_port, nginx

MAPSERV = "/usr/lib/cgi-bin/mapserv"
ALIAS = "bench"
GEOMETRY = {"Polygon": "POLYGON", "MultiPolygon": "POLYGON", "LineString": "LINE", "MultiLineString": "LINE",
            "Point": "POINT", "MultiPoint": "POINT"}


def mapfile(url: str, layer, port: int) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    with psycopg.connect(url) as db:  # without a layer EXTENT MapServer scans the table for it on every request
        extent = db.execute(f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                            f"(SELECT ST_Extent(geom) AS e FROM live.{layer.id}) s").fetchone()
    conn = " ".join(f"{k}={info[k]}" for k in ("host", "port", "dbname", "user", "password") if info.get(k))
    fields = ",".join(f.name for f in layer.fields)
    return f"""MAP
  NAME "{ALIAS}"
  EXTENT 119.9 23.4 121.9 24.9
  PROJECTION "init=epsg:4326" END
  WEB
    METADATA
      "oga_enable_request" "*"
      "oga_onlineresource" "http://127.0.0.1:{port}/mapserv/{ALIAS}/ogcapi"
      "oga_html_template_directory" "/usr/share/mapserver/ogcapi/templates/html-plain/"
      "oga_max_limit" "10000"
      "ows_title" "{ALIAS}"
      "ows_srs" "EPSG:4326 EPSG:3826"
    END
  END
  LAYER
    NAME "{layer.id}"
    TYPE {GEOMETRY.get(layer.geometry, "POLYGON")}
    STATUS ON
    CONNECTIONTYPE POSTGIS
    CONNECTION "{conn}"
    DATA "geom FROM live.{layer.id} USING UNIQUE {layer.key} USING SRID={layer.srid}"
    PROJECTION "init=epsg:{layer.srid}" END
    TEMPLATE "void"
    EXTENT {" ".join(f"{v:.1f}" for v in extent)}
    PROCESSING "CLOSE_CONNECTION=DEFER"
    METADATA
      "ows_title" "{layer.id}"
      "gml_include_items" "{fields}"
      "gml_featureid" "{layer.key}"
      "gml_types" "auto"
    END
  END
END
"""


@contextmanager
def mapserver(url: str, layer, env: dict | None = None):
    """MapServer's OGC API for ``layer`` behind nginx, one mapserv process (as geocloud serves with one);
    yields (base URL, items path, the process ids of mapserv and nginx)."""
    for exe in (MAPSERV, shutil.which("spawn-fcgi")):
        if not exe or not Path(exe).exists():
            sys.exit("MapServer peer needs: apt-get install mapserver-bin cgi-mapserver spawn-fcgi nginx")
    port, fcgi = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mapserver-") as tmp:
        (Path(tmp) / f"{ALIAS}.map").write_text(mapfile(url, layer, port))
        (Path(tmp) / "mapserver.conf").write_text(
            f'CONFIG\n  ENV\n    "MS_ERRORFILE" "{tmp}/error.log"\n  END\n'
            f'  MAPS\n    "{ALIAS}" "{tmp}/{ALIAS}.map"\n  END\nEND\n')
        proc = subprocess.Popen(["spawn-fcgi", "-n", "-a", "127.0.0.1", "-p", str(fcgi), "-F", "1", "--",
                                 MAPSERV], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "MAPSERVER_CONFIG_FILE": f"{tmp}/mapserver.conf", **(env or {})})
        try:
            _wait_for_port(fcgi, proc, "spawn-fcgi mapserv")
            block = f"""location /mapserv/ {{
      fastcgi_split_path_info ^(/mapserv)(/.*)$;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_NAME $fastcgi_script_name;
      fastcgi_param PATH_INFO $fastcgi_path_info;
      fastcgi_keep_conn off;
      fastcgi_pass 127.0.0.1:{fcgi};
    }}"""
            with nginx(block, port) as base:
                yield base, f"/mapserv/{ALIAS}/ogcapi/collections/{layer.id}/items", [proc.pid, base.pid]
        finally:
            proc.kill()  # mapserv (spawn-fcgi -n execs it) ignores SIGTERM while it waits for a request
            proc.wait(timeout=30)
