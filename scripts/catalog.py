"""Which parts of your images make each channel of VGG16 fire most, with exact receptive fields.

    python scripts/catalog.py photos/ --layers block3_conv1,block5_conv3 --top 9    # same as: minivgg-catalog
"""
from minivgg.catalog.cli import main

raise SystemExit(main())
