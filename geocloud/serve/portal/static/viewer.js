// geocloud map viewer: the base map style, a toggle per layer the caller may see, attributes on
// click with the catalog's zh-TW / English field titles, downloads and the QGIS connection URL.
(async function () {
  const base = window.location.href.split("#")[0].replace(/\/map\/?[^/]*$/, "");
  const lang = document.documentElement.lang === "en" ? "en" : "zh";  // the portal's page language
  const collections = (await (await fetch(`${base}/collections?f=json&lang=zh-TW`)).json()).collections;
  const titles = {};
  for (const c of collections) {  // the queryables a collection links (rasters link none) hold its field titles
    const link = (c.links || []).find(l => l.rel.endsWith("/queryables") && l.type !== "text/html");
    titles[c.id] = { zh: c.title, queryables: link && link.href };
  }
  const fieldTitles = {};  // layer id -> its queryables' properties, fetched when a feature of it is first clicked
  function fieldsOf(id) {
    const href = titles[id].queryables;
    if (!href) return Promise.resolve({});
    if (!(id in fieldTitles)) {  // a failed fetch is not kept: the next click asks again
      fieldTitles[id] = fetch(href).then(r => (r.ok ? r.json() : Promise.reject(r.status))).then(q => q.properties || {})
        .catch(() => { delete fieldTitles[id]; return {}; });
    }
    return fieldTitles[id];
  }
  const en = (await (await fetch(`${base}/collections?f=json&lang=en`)).json()).collections;
  for (const c of en) { if (titles[c.id]) titles[c.id].en = c.title; }
  const style = await (await fetch(`${base}/styles/basemap.json`)).json();
  const map = new maplibregl.Map({ container: "map", style, center: [120.6473, 24.162], zoom: 14, hash: true });
  window.geocloudMap = map;
  map.addControl(new maplibregl.NavigationControl());
  document.getElementById("qgis-url").value = base;

  const list = document.getElementById("layers");
  const groups = {};
  for (const l of style.layers) {
    const key = l["source-layer"] || (l.source === "satellite" ? "satellite" : null);
    if (key) (groups[key] = groups[key] || []).push(l.id);
  }
  function label(id) {
    const t = titles[id];
    if (id === "satellite") return lang === "zh" ? "衛星影像" : "Satellite imagery";
    return t ? (lang === "zh" ? t.zh : (t.en || t.zh)) : id;
  }
  function render() {
    list.innerHTML = "";
    for (const [id, styleLayers] of Object.entries(groups)) {
      if (id !== "satellite" && !titles[id]) continue;
      const li = document.createElement("li");
      li.dataset.layer = id;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = `toggle-${id}`;
      box.checked = map.getLayoutProperty(styleLayers[0], "visibility") !== "none";
      box.addEventListener("change", () => {
        for (const s of styleLayers) map.setLayoutProperty(s, "visibility", box.checked ? "visible" : "none");
      });
      const text = document.createElement("label");
      text.htmlFor = box.id;
      text.textContent = " " + label(id);
      li.append(box, text);
      if (id !== "satellite") {
        const dl = document.createElement("span");
        dl.className = "downloads";
        for (const f of ["geojson", "csv", "shp", "gpkg", "kml"]) {
          const a = document.createElement("a");
          a.href = `${base}/collections/${id}/download?f=${f}`;
          a.textContent = f.toUpperCase();
          dl.append(a);
        }
        li.append(dl);
      }
      list.append(li);
    }
  }
  map.on("load", render);
  // the language switch keeps the map where it is: the position is in the hash, which the server never sees
  const switchLink = document.querySelector(".lang-switch");
  const keepPosition = () => { switchLink.hash = window.location.hash; };
  map.on("moveend", keepPosition);
  keepPosition();

  map.on("click", async (e) => {
    const features = map.queryRenderedFeatures(e.point).filter((f) => f.sourceLayer && titles[f.sourceLayer]);
    if (!features.length) return;
    const f = features[0];
    const fields = await fieldsOf(f.sourceLayer);
    const box = document.createElement("div");  // built as nodes: attribute values are data, never markup
    const title = document.createElement("strong");
    title.className = "popup-title";
    title.textContent = label(f.sourceLayer);
    const table = document.createElement("table");
    for (const [k, v] of Object.entries(f.properties)) {
      const meta = fields[k] || {};
      const row = table.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = (lang === "zh" ? meta["x-title-zh-TW"] : meta["x-title-en"]) || k;
      row.append(th);
      row.insertCell().textContent = v;
    }
    box.append(title, table);
    new maplibregl.Popup().setLngLat(e.lngLat).setDOMContent(box).addTo(map);
  });
})();
