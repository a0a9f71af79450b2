"""Save the feature maps of every conv and pool layer of VGG16 on one image, plus a page.

    python scripts/visualize.py photo.jpg        # same as the installed command: minivgg-visualize
"""
from minivgg.visualize.cli import main

raise SystemExit(main())
