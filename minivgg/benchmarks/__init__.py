"""What the benchmark scripts (``scripts/benchmark.py`` and the others) are built from: VGG16's layer
shapes, float64 references, check-then-time and the machine's ceilings (``harness.py``). Not part of
the network: nothing in the package imports it.
"""
