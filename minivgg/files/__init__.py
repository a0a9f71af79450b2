"""What comes in from files: Keras weight files (``weights.py``: both HDF5 layouts; ``keras_files.py``:
``.keras`` archives and saved configs; ``keras_model.py``: a saved model as a VGG table and its
weights), the published files (``download.py``), images (``preprocess.py``, ``image_files.py``) and
ImageNet's class names (``imagenet.py``).
"""
