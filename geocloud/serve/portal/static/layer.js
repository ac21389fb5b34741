// The layer page's preview: the layer in its own style (or a plain one), attributes of a clicked
// feature with the catalog's field titles, the changed area of a version, and copy buttons.
// The page works without this script; it only adds the map and the buttons' copying.
(function () {
  "use strict";
  const el = document.getElementById("preview");
  const panel = document.getElementById("attributes");
  const status = document.getElementById("copy-status");
  const copied = document.documentElement.lang === "en" ? "Copied: " : "已複製：";

  for (const button of document.querySelectorAll(".copy-button")) {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.target);
      input.select();
      try { await navigator.clipboard.writeText(input.value); } catch (e) { document.execCommand("copy"); }
      status.textContent = copied + input.labels[0].textContent;
    });
  }
  if (!el || !window.maplibregl) return;
  const cfg = JSON.parse(el.dataset.config);

  function plainStyle(tilejson) {
    const source = cfg.kind === "raster" ? { type: "raster", url: tilejson, tileSize: 256 } : { type: "vector", url: tilejson };
    const layers = [{ id: "background", type: "background", paint: { "background-color": "#f4f1ea" } }];
    if (cfg.kind === "raster") layers.push({ id: cfg.id, type: "raster", source: cfg.id });
    else if (/Point/.test(cfg.geometry)) layers.push({ id: cfg.id, type: "circle", source: cfg.id, "source-layer": cfg.id,
      paint: { "circle-radius": 5, "circle-color": "#0b5394", "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 } });
    else if (/LineString/.test(cfg.geometry)) layers.push({ id: cfg.id, type: "line", source: cfg.id, "source-layer": cfg.id,
      paint: { "line-color": "#0b5394", "line-width": 2 } });
    else layers.push({ id: cfg.id + "-fill", type: "fill", source: cfg.id, "source-layer": cfg.id,
      paint: { "fill-color": "#0b5394", "fill-opacity": 0.35, "fill-outline-color": "#073763" } });
    return { version: 8, sources: { [cfg.id]: source }, layers };
  }

  async function start() {
    const style = cfg.style ? await (await fetch(cfg.style)).json() : plainStyle(cfg.tilejson);
    const options = { container: el, style, attributionControl: { compact: true } };
    if (cfg.bounds) options.bounds = [[cfg.bounds[0], cfg.bounds[1]], [cfg.bounds[2], cfg.bounds[3]]];
    else { options.center = [120.6473, 24.162]; options.zoom = 12; }
    const map = new maplibregl.Map(options);
    window.geocloudPreview = map;
    if (map.getZoom() < cfg.minzoom) map.jumpTo({ zoom: cfg.minzoom });  // the whole extent may be below the layer's zooms
    map.addControl(new maplibregl.NavigationControl());
    map.getCanvas().setAttribute("aria-label", el.dataset.label);

    map.on("click", (e) => {
      const f = map.queryRenderedFeatures(e.point).find((x) => x.sourceLayer === cfg.id);
      if (!f) return;
      const table = document.createElement("table");
      const caption = table.createCaption();
      caption.textContent = cfg.title;
      for (const [name, value] of Object.entries(f.properties)) {
        const row = table.insertRow();
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = cfg.fields[name] || name;
        row.append(th);
        row.insertCell().textContent = value;
      }
      panel.replaceChildren(table);
    });

    map.on("load", () => {
      map.addSource("changed", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
      map.addLayer({ id: "changed", type: "line", source: "changed", paint: { "line-color": "#d4351c", "line-width": 3, "line-dasharray": [2, 1] } });
      for (const button of document.querySelectorAll(".show-change")) {
        button.addEventListener("click", () => {
          const [w, s, e, n] = button.dataset.bbox.split(",").map(Number);
          map.getSource("changed").setData({ type: "Feature", properties: {},
            geometry: { type: "Polygon", coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] } });
          map.fitBounds([[w, s], [e, n]], { padding: 40, maxZoom: 17 });
          el.scrollIntoView({ block: "center" });
        });
      }
    });
  }
  start();
})();
