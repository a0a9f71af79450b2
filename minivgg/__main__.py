"""``python -m minivgg``: print the VGG16 (or VGG19) table, as Keras' ``model.summary()`` would.

    python -m minivgg                        # with the top, 224x224, and each conv layer's method
    python -m minivgg --arch vgg19 --no-top --size 160 288
    python -m minivgg --weights PATH         # the table of what that file holds (VGG16 or VGG19, any head)
"""
import argparse
import sys

from .errors import MinivggError
from .layers.conv import METHODS
from .network.table import ARCHS, TOP_SIZE, layers, plan, summary
from .network.vgg import VGG, VGG16, VGG19


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minivgg", description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=tuple(ARCHS), help="vgg16 (default) or vgg19; with --weights: from the file")
    p.add_argument("--no-top", action="store_true", help="leave out flatten, fc1, fc2, predictions")
    p.add_argument("--size", type=int, nargs="+", metavar="N", help="H [W] (default 224, or the file's)")
    p.add_argument("--weights", help="a Keras weight file: the table of what it holds")
    p.add_argument("--method", default="auto", choices=("auto", *METHODS), help="conv method (default: auto)")
    args = p.parse_args(argv)
    if args.size and len(args.size) > 2:
        p.error("--size takes H, or H and W")
    h, w = ((args.size or [None]) * 2)[:2]
    try:
        if args.weights:
            cls = {"vgg16": VGG16, "vgg19": VGG19, None: VGG}[args.arch]
            model = cls(weights=args.weights, include_top=False if args.no_top else None, method=args.method)
            print(model.summary(h, w))
        else:
            arch = args.arch or "vgg16"
            rows = layers(arch, not args.no_top)
            print(summary(not args.no_top, h or TOP_SIZE, w or TOP_SIZE, plan(args.method, rows), arch))
    except MinivggError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
