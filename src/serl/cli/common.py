"""What every `serl` command shares."""

from __future__ import annotations


def setup_logging() -> None:
    """serl's messages at INFO; the libraries' (a page per orbax checkpoint) from WARNING up."""
    import logging

    # force: an import (absl, via orbax) may already have configured the root logger
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    logging.getLogger("serl").setLevel(logging.INFO)
