"""OGC API surfaces of the layers: Features through pygeoapi (landing page, collections, items,
queryables, sortables, schema), Styles, downloads, metadata records and the DCAT feed, geocoding."""
