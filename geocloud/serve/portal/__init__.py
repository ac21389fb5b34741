"""What a browser gets: the pages of the portal and the map viewer."""
