/*
 * c_bench_filter: the hook-matrix benchmark filter (guest-examples/rust/bench_filter), in C
 * with abi/sdk/c/proxy_wasm.h. Same logic in every language, so bench/test_hook_matrix.py
 * compares hosts, not filters:
 *
 *  - proxy_on_request_headers: reads `x-api-key`, adds `x-routeiq-seen: 1` (`anonymous`
 *    without the key).
 *  - proxy_on_request_body: Pause until end_of_stream; then reads the whole body, replaces
 *    every `secret` with `******`, writes the whole body back.
 *  - proxy_on_response_body: reads each chunk, adds its length to a per-request counter;
 *    proxy_on_response_trailers reports it as trailer `x-routeiq-body-bytes: <n>`.
 *  - proxy_on_response_headers: `bench-counter` in shared data += 1 (decimal text, CAS).
 *  - proxy_on_log: one HTTP callout to 127.0.0.1:1, status ignored (the benchmark grants
 *    no `http_callout`: it measures the host's refusal).
 */
#include "proxy_wasm.h"

PW_MANIFEST({"name": "c_bench_filter", "version": "0.1.0", "description": "Benchmark hook matrix filter (C guest)", "capabilities": ["request_body", "response_body", "shared_kv"]});

static const char COUNTER_KEY[] = "bench-counter";
static const char CALLOUT_UPSTREAM[] = "127.0.0.1:1";

typedef struct {
    uint64_t response_bytes;
} stream_state;

/* `secret` -> `******` in place: same length, so the buffer never moves. */
static void mask_secrets(char *body, size_t len) {
    static const char needle[] = "secret";
    const size_t n = sizeof needle - 1;
    size_t i = 0;
    while (i + n <= len) {
        if (memcmp(body + i, needle, n) == 0) {
            memset(body + i, '*', n);
            i += n;
        } else {
            i++;
        }
    }
}

static uint64_t parse_u64(const char *s, size_t len) {
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v;
}

PW_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {
    if (parent_id) pw_context_data(context_id, sizeof(stream_state));
}

PW_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t num_headers, uint32_t end_of_stream) {
    (void)context_id, (void)num_headers, (void)end_of_stream;
    const char *seen = pw_has_header(PW_MAP_HTTP_REQUEST_HEADERS, "x-api-key") ? "1" : "anonymous";
    pw_add_header(PW_MAP_HTTP_REQUEST_HEADERS, "x-routeiq-seen", seen);
    return PW_CONTINUE;
}

PW_EXPORT(proxy_on_request_body)
uint32_t proxy_on_request_body(uint32_t context_id, uint32_t body_size, uint32_t end_of_stream) {
    (void)context_id;
    if (!end_of_stream) return PW_PAUSE; /* the host buffers until the whole body is there */
    pw_bytes body;
    if (pw_get_buffer(PW_BUFFER_HTTP_REQUEST_BODY, 0, body_size, &body) == PW_OK) {
        mask_secrets(body.data, body.len);
        proxy_set_buffer_bytes(PW_BUFFER_HTTP_REQUEST_BODY, 0, body.len, body.data, body.len);
    }
    pw_bytes_free(&body);
    return PW_CONTINUE;
}

PW_EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t context_id, uint32_t num_headers, uint32_t end_of_stream) {
    (void)context_id, (void)num_headers, (void)end_of_stream;
    pw_bytes value = {0, 0};
    uint32_t cas = 0;
    uint32_t rc = proxy_get_shared_data(COUNTER_KEY, sizeof COUNTER_KEY - 1, &value.data, &value.len, &cas);
    if (rc == PW_OK || rc == PW_NOT_FOUND) { /* NOT_FOUND: cas is the host's create token */
        char text[21];
        size_t n = pw_u64_to_dec(parse_u64(value.data, value.len) + 1, text);
        proxy_set_shared_data(COUNTER_KEY, sizeof COUNTER_KEY - 1, text, n, cas);
    }
    pw_bytes_free(&value);
    return PW_CONTINUE;
}

PW_EXPORT(proxy_on_response_body)
uint32_t proxy_on_response_body(uint32_t context_id, uint32_t body_size, uint32_t end_of_stream) {
    (void)end_of_stream;
    stream_state *s = (stream_state *)pw_context_find(context_id);
    pw_bytes chunk;
    if (s && body_size && pw_get_buffer(PW_BUFFER_HTTP_RESPONSE_BODY, 0, body_size, &chunk) == PW_OK) {
        s->response_bytes += chunk.len;
        pw_bytes_free(&chunk);
    }
    return PW_CONTINUE;
}

PW_EXPORT(proxy_on_response_trailers)
uint32_t proxy_on_response_trailers(uint32_t context_id, uint32_t num_trailers) {
    (void)num_trailers;
    stream_state *s = (stream_state *)pw_context_find(context_id);
    if (s) {
        char text[21];
        size_t n = pw_u64_to_dec(s->response_bytes, text);
        pw_add_header_n(PW_MAP_HTTP_RESPONSE_TRAILERS, "x-routeiq-body-bytes", text, n);
    }
    return PW_CONTINUE;
}

PW_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) {
    (void)context_id;
    return 1;
}

PW_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {
    (void)context_id;
    const pw_header headers[] = {{":method", "GET"}, {":path", "/"}, {":authority", CALLOUT_UPSTREAM}, {":scheme", "http"}};
    pw_bytes map = pw_serialize_headers(headers, 4);
    uint32_t token = 0;
    proxy_http_call(CALLOUT_UPSTREAM, sizeof CALLOUT_UPSTREAM - 1, map.data, map.len, "", 0, 0, 0, 1000, &token);
    pw_bytes_free(&map);
}

PW_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) { pw_context_forget(context_id); }
