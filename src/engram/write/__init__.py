"""The write pipeline: validate, store verbatim turns, add round, window and sentence keys."""

from engram.write.ingest import (
    DEFAULT_SESSION,
    build_rounds,
    build_sentences,
    build_turns,
    build_windows,
    record_id,
    rekey,
    span_vectors,
    split_sentences,
    turn_keys,
)
from engram.write.messages import MAX_CONTENT_CHARS, Message, parse_datetime, parse_messages

__all__ = [
    "DEFAULT_SESSION",
    "MAX_CONTENT_CHARS",
    "Message",
    "build_rounds",
    "build_sentences",
    "build_turns",
    "build_windows",
    "parse_datetime",
    "parse_messages",
    "record_id",
    "rekey",
    "span_vectors",
    "split_sentences",
    "turn_keys",
]
