"""Face data: in-memory face sets, image-folder loading, identity splits, verification pairs.

The default dataset of every command is the built-in synthetic faces
(:func:`synthetic_faceset`); real data comes from a folder with one sub-folder per identity
(:func:`load_image_folder`). Both give a :class:`FaceSet`.
"""

from btnet_core.data.folder import (
    FIT_MODES,
    IMAGE_EXTENSIONS,
    FaceSet,
    fit_face,
    load_image_folder,
    split_identities,
    synthetic_faceset,
    verification_pairs,
)
from btnet_core.data.synthetic import synthetic_faces

__all__ = [
    "FIT_MODES",
    "IMAGE_EXTENSIONS",
    "FaceSet",
    "fit_face",
    "load_image_folder",
    "split_identities",
    "synthetic_faces",
    "synthetic_faceset",
    "verification_pairs",
]
