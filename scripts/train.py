"""Fine-tune VGG on your own classes (one folder of images per class), from scratch.

    python scripts/train.py fruit/ --epochs 10 --out runs/fruit      # same as: minivgg-train ...
"""
from minivgg.train.cli import main

raise SystemExit(main())
