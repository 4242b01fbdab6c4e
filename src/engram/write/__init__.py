"""The write pipeline: validate, store verbatim turns, add round keys."""

from engram.write.ingest import DEFAULT_SESSION, build_rounds, build_turns, record_id, turn_keys
from engram.write.messages import MAX_CONTENT_CHARS, Message, parse_datetime, parse_messages

__all__ = [
    "DEFAULT_SESSION",
    "MAX_CONTENT_CHARS",
    "Message",
    "build_rounds",
    "build_turns",
    "parse_datetime",
    "parse_messages",
    "record_id",
    "turn_keys",
]
