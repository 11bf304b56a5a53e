"""Inputs shared by the hook benchmarks."""

# 10 request headers: 4 pseudo-headers and 6 ordinary ones; the hooks read x-api-key.
HEADERS = ((b":method", b"POST"), (b":path", b"/v1/chat/completions"), (b":authority", b"gw"), (b":scheme", b"http")) + (
    (b"content-type", b"application/json"),
    (b"x-api-key", b"sk-test"),
    (b"user-agent", b"bench"),
    (b"accept", b"*/*"),
    (b"x-request-id", b"0123456789abcdef"),
    (b"content-length", b"120"),
)
assert len(HEADERS) == 10
