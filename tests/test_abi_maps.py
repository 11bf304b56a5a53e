import pytest

from routeiq.abi.proxy_wasm import MapFormatError, decode_map, encode_map, split_property_path


def test_map_serialization_matches_the_spec_example() -> None:
    # The spec's own example: {"a": "1", "b": "22"}
    raw = encode_map([(b"a", b"1"), (b"b", b"22")])
    assert raw == b"\x02\x00\x00\x00" + b"\x01\x00\x00\x00\x01\x00\x00\x00" + b"\x01\x00\x00\x00\x02\x00\x00\x00" + b"a\x001\x00b\x0022\x00"
    assert decode_map(raw) == [(b"a", b"1"), (b"b", b"22")]


@pytest.mark.parametrize("raw", [b"", b"\x00"])
def test_empty_map_forms(raw: bytes) -> None:
    assert decode_map(raw) == []


def test_truncated_map_is_rejected() -> None:
    raw = encode_map([(b"key", b"value")])
    with pytest.raises(MapFormatError):
        decode_map(raw[:-3])
    with pytest.raises(MapFormatError):
        decode_map(b"\x05\x00\x00\x00\x01\x00")


def test_property_paths_accept_nul_and_dot_forms() -> None:
    assert split_property_path(b"request\0path") == (b"request", b"path")
    assert split_property_path(b"request.path") == (b"request", b"path")
    assert split_property_path(b"plugin_name") == (b"plugin_name",)
