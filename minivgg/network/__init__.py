"""The network: VGG as a table of rows (``table.py``), the model that runs it (``vgg.py``: weights and
the one forward loop), and how it learns (``backprop.py``: the backward pass, the same rows in
reverse). ``naive.py`` writes both passes with the layers' naive kernels: the network's own twins.
Built from the layers in ``minivgg/layers/``.
"""
