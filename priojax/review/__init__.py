"""The round review page: ``review.html`` in every run's workdir.

One self-contained file (images, scripts and styles inline; it works
offline, mailed or copied to a USB stick) that a mapping coordinator opens
in any browser to see where the model wants labels this round, what it
predicts there and how the map has improved:

* ``round_view.py`` gathers a round's picture from the run (the picks with
  thumbnails, and for chips of scenes each pool scene's image, priority
  heat map, predictions, labels and selected chips), kept small for any
  pool size;
* ``page.py`` writes the page from that picture and the metrics history;
* ``assets/`` holds the page's script and style, and Leaflet (vendored from
  the npm registry, BSD-2-Clause; ``assets/leaflet/VENDORED.json`` gives
  its version and sha256) for the zoomable scene maps.
"""
