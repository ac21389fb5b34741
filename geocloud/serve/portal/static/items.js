// The features pages' map: the page's own features (a GeoJSON source from the page), fitted to
// them. The pages work without this script; the table holds every attribute.
(function () {
  "use strict";
  const el = document.getElementById("items-map");
  if (!el || !window.maplibregl) return;
  const cfg = JSON.parse(el.dataset.config);
  const bounds = new maplibregl.LngLatBounds();
  const extend = (c) => (typeof c[0] === "number" ? bounds.extend(c) : c.forEach(extend));
  for (const f of cfg.data.features) if (f.geometry) extend(f.geometry.coordinates);
  const map = new maplibregl.Map({ container: el, attributionControl: { compact: true },
    style: { version: 8, sources: { features: { type: "geojson", data: cfg.data } }, layers: [
      { id: "background", type: "background", paint: { "background-color": "#f4f1ea" } },
      { id: "fill", type: "fill", source: "features", filter: ["==", ["geometry-type"], "Polygon"],
        paint: { "fill-color": "#0b5394", "fill-opacity": 0.35, "fill-outline-color": "#073763" } },
      { id: "line", type: "line", source: "features", filter: ["in", ["geometry-type"], ["literal", ["LineString", "Polygon"]]],
        paint: { "line-color": "#0b5394", "line-width": 2 } },
      { id: "point", type: "circle", source: "features", filter: ["==", ["geometry-type"], "Point"],
        paint: { "circle-radius": 5, "circle-color": "#0b5394", "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 } }] },
    ...(bounds.isEmpty() ? { center: [120.6473, 24.162], zoom: 12 } : { bounds, fitBoundsOptions: { padding: 30, maxZoom: 17 } }) });
  window.geocloudPreview = map;
  map.addControl(new maplibregl.NavigationControl());
  map.getCanvas().setAttribute("aria-label", el.dataset.label);
})();
