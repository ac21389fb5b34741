"""The portal: the pages a browser gets (home and search, a layer's page, the map viewer, and the
sign-in, account and request pages), all on one layout (``render``), zh-TW first (``i18n``)."""
