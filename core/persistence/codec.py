"""msgspec JSON encoders/decoders, built once per type (they are the hot path)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(value: Any) -> str:
    return _encoder.encode(value).decode()


@lru_cache(maxsize=64)
def _decoder(tp: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(tp)


def decode(data: str | bytes, tp: type[T]) -> T:
    decoder: msgspec.json.Decoder[T] = _decoder(tp)  # type: ignore[arg-type]
    return decoder.decode(data)
