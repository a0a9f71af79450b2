"""Why VGG16 chose its class: attribution maps by eight methods, sanity-checked, and a page.

    python scripts/explain.py photo.jpg --top 3 --json why.json     # same as: minivgg-explain ...
"""
from minivgg.explain.cli import main

raise SystemExit(main())
