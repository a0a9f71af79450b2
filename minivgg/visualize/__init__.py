"""Pictures of what every layer makes of an image: feature maps as grids (``grids.py``), the page that
shows them (``report.py``, whose style and links the other tools' pages share), many images through
the network while writer threads draw (``pipeline.py``, ``summary_page.py``), and the command line
(``cli.py``: ``minivgg-visualize``).

    from minivgg.visualize import grid
    grid(model.activations(x)["block3_conv1"], start=0, stop=64).save("block3_conv1.png")
"""
from .grids import grid, tile_images

__all__ = ["grid", "tile_images"]
