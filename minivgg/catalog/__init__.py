"""The neuron catalogue: for every channel of the chosen layers, the images (and the parts of them,
by exact receptive fields) where it fires most; ``minivgg-catalog``.

Reading order: ``scan.py`` (per-channel top-k over a stream of images, its naive twin, the state
that resumes and merges), ``stream.py`` (decoding threads ahead of the network, batches, Ctrl-C),
``patches.py`` (a unit's receptive field cut from the image; sprite sheets; deconvnet projections),
``page.py`` (the pages), ``cli.py`` (the command line, ``--shard`` and ``--merge``).
The receptive fields themselves are the network's: ``network/receptive_field.py``.
"""
