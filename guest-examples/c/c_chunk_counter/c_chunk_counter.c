/*
 * c_chunk_counter: counts response body chunks and bytes, in C with abi/sdk/c/proxy_wasm.h.
 *
 * proxy_on_response_body(ctx, body_size, eos): every call with body_size > 0 is one
 * chunk of body_size bytes (the host hands each chunk as it streams; the filter never
 * buffers, never modifies, always returns Continue). proxy_on_log logs at INFO exactly
 *   c_chunk_counter: chunks=<N> bytes=<B>
 * Needs capability `response_body` (without it the host never calls on_response_body).
 */
#include "proxy_wasm.h"

PW_MANIFEST({"name": "c_chunk_counter", "version": "0.1.0", "description": "Counts streamed response chunks and bytes (C guest)", "capabilities": ["response_body"]});

typedef struct {
    uint64_t chunks;
    uint64_t bytes;
} counts;

PW_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {
    if (parent_id) pw_context_data(context_id, sizeof(counts));
}

PW_EXPORT(proxy_on_response_body)
uint32_t proxy_on_response_body(uint32_t context_id, uint32_t body_size, uint32_t end_of_stream) {
    (void)end_of_stream;
    counts *c = (counts *)pw_context_data(context_id, sizeof(counts));
    if (c && body_size) {
        c->chunks += 1;
        c->bytes += body_size;
    }
    return PW_CONTINUE;
}

PW_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) {
    (void)context_id;
    return 1;
}

PW_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {
    counts *c = (counts *)pw_context_find(context_id);
    if (!c) return; /* the root context, or a stream we never saw */
    char line[96];
    pw_text t;
    pw_text_init(&t, line, sizeof line);
    pw_text_str(&t, "c_chunk_counter: chunks=");
    pw_text_u64(&t, c->chunks);
    pw_text_str(&t, " bytes=");
    pw_text_u64(&t, c->bytes);
    pw_log(PW_LOG_INFO, t.buf, t.len);
}

PW_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) { pw_context_forget(context_id); }
