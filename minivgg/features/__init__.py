"""Feature visualisation: what a channel of VGG16 looks for, found by gradient ascent on the image.

Legend: N batch (one image per channel or class), H, W height and width, 3 colours.

Read in this order (each file says where its method comes from):

1. ``param.py``: the image as free numbers: a scaled Fourier spectrum, colour decorrelation and a
   sigmoid (Lucid's parameterisation), or plain pixels and a sigmoid (the naive twin).
2. ``transforms.py``: Lucid's random pad, jitter, scale and rotation, composed into one bilinear
   resampling, and its backward scatter.
3. ``objectives.py``: what is maximised (a channel's mean, a class logit, deep dream's mean square)
   and its gradient w.r.t. the network's input, through ``model.gradients``.
4. ``optimise.py``: one step (forward through 1-3, the network, back again), Adam, the loop.
5. ``page.py`` and ``cli.py``: the page and the command line (``scripts/features.py``).

    from minivgg import VGG16
    from minivgg.features.optimise import Objective, optimise
    model = VGG16(weights="imagenet", include_top=False)
    result = optimise(model, Objective("channel", "block4_conv3", tuple(range(16))), size=128, steps=256)
    result.rgb          # (16, 128, 128, 3) in (0, 1): image i excites channel i
"""
