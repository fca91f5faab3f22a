"""MovieLens-100K: 100,000 ratings (1-5) from 943 users on 1,682 movies, with movie and user tables.

Read from GroupLens' native files or RecBole's atomic files (`recdistill.data.movielens`), which
`fetch` downloads and verifies (`recdistill.data.fetch`), or from a folder of either (source=local).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from recdistill.data.fetch import CHECKSUMS, ML_100K
from recdistill.data.movielens import GENRES, read_movielens
from recdistill.data.rating_scale import RatingScale
from recdistill.data.readers.movielens_common import MovieLensConfig, MovieLensReader
from recdistill.data.tables import RecData
from recdistill.utils.fingerprint import fingerprint_of_texts

log = logging.getLogger(__name__)

# raw user, raw item, rating, timestamp; users 1, 2, 10 check numeric (not lexical) id order
_FIXTURE_INTERACTIONS = ((10, 5, 4, 881250949), (1, 1, 5, 874965758), (2, 12, 1, 888550871),
                         (1, 2, 3, 876893171), (10, 1, 2, 881250950), (2, 5, 4, 888551000))
_FIXTURE_ITEMS = ((1, "Toy Story (1995)", "Animation Children's Comedy"), (2, "Heat (1995)", "Action Crime"),
                  (5, "Casablanca (1942)", "Drama Romance War"), (12, "Good Morning (1971)", "unknown"))
_FIXTURE_USERS = ((1, 24, "M", "technician"), (2, 53, "F", "other"), (10, 23, "M", "writer"))


class MovieLens100K(MovieLensReader):
    """GroupLens' MovieLens-100K, fetched and verified into the cache (or read from a local folder)."""

    aliases = ("ml-100k",)

    @dataclass
    class Config(MovieLensConfig):
        """Where MovieLens-100K comes from."""

        name: str = "movielens_100k"

    release = ML_100K

    def parse(self, directory: Path, fmt: str) -> RecData:
        """GroupLens' u.data / u.item / u.user or RecBole's ml-100k.* atomic files; ratings 1..5."""
        return replace(read_movielens(directory, fmt), rating_scale=RatingScale(1.0, 5.0, 1.0))

    def fetched_fingerprint(self, cfg: Config, directory: Path, fmt: str) -> str:
        """Verified against the published checksums: the same data from either mirror."""
        return fingerprint_of_texts("ml-100k", CHECKSUMS.zip_md5)

    def fixtures(self, directory: Path) -> dict[str, Config]:
        """The same tiny data as GroupLens' native files and as RecBole's atomic files."""
        native, atomic = Path(directory) / "native", Path(directory) / "atomic"
        native.mkdir(parents=True, exist_ok=True)
        atomic.mkdir(parents=True, exist_ok=True)
        rows = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in _FIXTURE_INTERACTIONS)
        (native / "u.data").write_text(rows, encoding="latin-1")
        (atomic / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + rows,
                                              encoding="utf-8")
        native_items, atomic_items = [], ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"]
        for item, title, genres in _FIXTURE_ITEMS:
            flags = "|".join("1" if g in genres.split() else "0" for g in GENRES)
            native_items.append(f"{item}|{title}|01-Jan-1995||http://us.imdb.com/x|{flags}\n")
            atomic_items.append(f"{item}\t{title[:-7]}\t{title[-5:-1]}\t{genres}\n")
        (native / "u.item").write_text("".join(native_items), encoding="latin-1")
        (atomic / "ml-100k.item").write_text("".join(atomic_items), encoding="utf-8")
        (native / "u.user").write_text("".join(f"{u}|{a}|{g}|{o}|00000\n" for u, a, g, o in _FIXTURE_USERS),
                                       encoding="latin-1")
        (atomic / "ml-100k.user").write_text(
            "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
            + "".join(f"{u}\t{a}\t{g}\t{o}\t00000\n" for u, a, g, o in _FIXTURE_USERS), encoding="utf-8")
        cache = str(Path(directory) / "cache")
        return {fmt: self.Config(source="local", local_dir=str(folder), cache_dir=cache, min_user_interactions=1)
                for fmt, folder in (("native", native), ("atomic", atomic))}
