// The API reference: Swagger UI (geocloud's own copy) reading the OpenAPI document the page names.
(function () {
  "use strict";
  const el = document.getElementById("swagger-ui");
  if (!el || !window.SwaggerUIBundle) return;
  window.geocloudApiDocs = SwaggerUIBundle({ url: el.dataset.url, domNode: el, deepLinking: false });
})();
