"""Draw and search: the canvas, search as you draw, the results grid and its thumbnails,
opening and saving sketches, and what a GDH model imagines of the sketch."""
