"""The network: VGG as a table of rows (``table.py``), the model that runs it (``vgg.py``: weights and
the one forward loop), and how it learns (``backprop.py``: the backward pass, the same rows in
reverse). Built from the layers in ``minivgg/layers/``.
"""
