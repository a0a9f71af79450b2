"""What each channel of a VGG16 layer looks for: images optimised to excite it, and a page.

    python scripts/features.py --layer block4_conv3 --channels 0-15     # same as: minivgg-features
"""
from minivgg.features.cli import main

raise SystemExit(main())
