/*
 * bench_filter as an Extism plugin: the logic of guest-examples/rust/bench_filter, for the
 * `extism` column of bench/test_hook_matrix.py. No PDK (crates.io and the C PDK are not
 * vendored here): the Extism kernel imports are declared directly. Built freestanding by
 * the benchmark with the C toolchain RouteIQ uses (zig cc), cached under .cache/extism/.
 *
 * Extism's model is "input bytes in, output bytes out" plus host functions, so each row
 * is one exported function (they return 0 on success):
 *
 *  - request_headers: input = the request headers in the proxy-wasm map encoding; finds
 *    `x-api-key`; output = the headers to add, same encoding (`x-routeiq-seen: 1`, or
 *    `anonymous`). The host applies them.
 *  - request_body: input = the whole body; output = it with every `secret` -> `******`.
 *  - response_chunk: input = one chunk; adds its length to the plugin's counter (one
 *    plugin instance serves one stream here); output = the total, u64 little-endian.
 *  - kv_get_set: `bench-counter` += 1 (decimal text) through the host functions kv_get
 *    and kv_set, with compare-and-swap.
 *  - denied_call: one http_call host function call to 127.0.0.1:1, status ignored (the
 *    host refuses it: no callout capability).
 *
 * Host functions (module extism:host/user), written by the benchmark in Python:
 *  - kv_get(key) -> block: u64 LE cas, then the value bytes (none for a missing key, whose
 *    cas is then a create token); 0 when refused.
 *  - kv_set(key, value, cas) -> status (proxy-wasm numbering).
 *  - http_call(upstream, headers, body, timeout_ms) -> status.
 * All block arguments are Extism memory handles.
 */
#include <stddef.h>
#include <stdint.h>

#define KERNEL(name) __attribute__((import_module("extism:host/env"), import_name(#name)))
#define HOST(name) __attribute__((import_module("extism:host/user"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

typedef uint64_t handle; /* an offset in Extism's kernel memory, 0 = none */

KERNEL(input_length) extern uint64_t k_input_length(void);
KERNEL(input_load_u8) extern uint8_t k_input_load_u8(uint64_t offset);
KERNEL(input_load_u64) extern uint64_t k_input_load_u64(uint64_t offset);
KERNEL(alloc) extern handle k_alloc(uint64_t size);
KERNEL(length) extern uint64_t k_length(handle h);
KERNEL(load_u8) extern uint8_t k_load_u8(handle p);
KERNEL(load_u64) extern uint64_t k_load_u64(handle p);
KERNEL(store_u8) extern void k_store_u8(handle p, uint8_t v);
KERNEL(store_u64) extern void k_store_u64(handle p, uint64_t v);
KERNEL(output_set) extern void k_output_set(handle p, uint64_t size);

HOST(kv_get) extern handle host_kv_get(handle key);
HOST(kv_set) extern int32_t host_kv_set(handle key, handle value, int32_t cas);
HOST(http_call) extern int32_t host_http_call(handle upstream, handle headers, handle body, int32_t timeout_ms);

/* -nostdlib: clang may still emit calls to these for struct copies and loops;
 * no_builtin keeps it from turning these very loops back into calls to themselves. */
__attribute__((visibility("hidden"), no_builtin)) void *memcpy(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}
__attribute__((visibility("hidden"), no_builtin)) void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

/* ------------------------------------------------------------ per-call scratch memory */
/* Everything a call needs is dropped when it returns (Extism resets its own kernel
 * memory per call too), so a bump allocator reset at each entry point is enough. */

extern unsigned char __heap_base;
static uintptr_t scratch_top;

static void scratch_reset(void) { scratch_top = (uintptr_t)&__heap_base; }

static void *scratch(size_t n) {
    uintptr_t p = (scratch_top + 7) & ~(uintptr_t)7;
    uintptr_t end = p + n;
    uintptr_t have = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
    if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535u) / 65536u) == (size_t)-1) return 0;
    scratch_top = end;
    return (void *)p;
}

/* ------------------------------------------------------ moving bytes in and out */

static uint8_t *load_input(uint64_t *len) {
    uint64_t n = k_input_length();
    uint8_t *buf = scratch(n + 1);
    if (!buf) return 0;
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word = k_input_load_u64(i);
        memcpy(buf + i, &word, 8);
    }
    for (; i < n; i++) buf[i] = k_input_load_u8(i);
    *len = n;
    return buf;
}

static handle to_kernel(const void *src, uint64_t n) {
    const uint8_t *s = src;
    handle h = k_alloc(n);
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, s + i, 8);
        k_store_u64(h + i, word);
    }
    for (; i < n; i++) k_store_u8(h + i, s[i]);
    return h;
}

static void output(const void *src, uint64_t n) { k_output_set(to_kernel(src, n), n); }

static size_t cstrlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

static int equal(const uint8_t *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != (uint8_t)b[i]) return 0;
    return 1;
}

static uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

/* The proxy-wasm map encoding: count, (key_len, value_len)*, then key\0value\0 each. */
static uint8_t *encode_map(const char *const *pairs, uint32_t count, uint64_t *len) {
    uint64_t size = 4 + 8 * (uint64_t)count;
    for (uint32_t i = 0; i < 2 * count; i++) size += cstrlen(pairs[i]) + 1;
    uint8_t *out = scratch(size);
    if (!out) return 0;
    put_u32(out, count);
    uint8_t *data = out + 4 + 8 * count;
    for (uint32_t i = 0; i < 2 * count; i++) {
        size_t n = cstrlen(pairs[i]);
        put_u32(out + 4 + 4 * i, (uint32_t)n);
        memcpy(data, pairs[i], n);
        data += n;
        *data++ = 0;
    }
    *len = size;
    return out;
}

/* Is `name` a key of the encoded map? (Bounds-checked: the input is untrusted.) */
static int map_has(const uint8_t *map, uint64_t len, const char *name) {
    if (len < 4) return 0;
    uint32_t count = get_u32(map);
    if ((uint64_t)count > (len - 4) / 8) return 0;
    size_t name_len = cstrlen(name);
    uint64_t data = 4 + 8 * (uint64_t)count;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t kl = get_u32(map + 4 + 8 * i), vl = get_u32(map + 8 + 8 * i);
        if (data + kl + vl + 2 > len) return 0;
        if (kl == name_len && equal(map + data, name, kl)) return 1;
        data += kl + vl + 2;
    }
    return 0;
}

/* ------------------------------------------------------------------------ rows */

EXPORT(request_headers) int32_t request_headers(void) {
    scratch_reset();
    uint64_t len = 0, out_len = 0;
    uint8_t *headers = load_input(&len);
    if (!headers) return 1;
    const char *add[] = {"x-routeiq-seen", map_has(headers, len, "x-api-key") ? "1" : "anonymous"};
    uint8_t *out = encode_map(add, 1, &out_len);
    if (!out) return 1;
    output(out, out_len);
    return 0;
}

/* `secret` -> `******` in place: same length, so the buffer never moves. */
static void mask_secrets(uint8_t *body, uint64_t len) {
    uint64_t i = 0;
    while (i + 6 <= len) {
        if (equal(body + i, "secret", 6)) {
            memset(body + i, '*', 6);
            i += 6;
        } else {
            i++;
        }
    }
}

EXPORT(request_body) int32_t request_body(void) {
    scratch_reset();
    uint64_t len = 0;
    uint8_t *body = load_input(&len);
    if (!body) return 1;
    mask_secrets(body, len);
    output(body, len);
    return 0;
}

static uint64_t response_bytes; /* survives calls: the plugin instance is kept */

EXPORT(response_chunk) int32_t response_chunk(void) {
    scratch_reset();
    uint64_t len = 0;
    if (!load_input(&len)) return 1;
    response_bytes += len;
    output(&response_bytes, 8);
    return 0;
}

static const char COUNTER_KEY[] = "bench-counter";

EXPORT(kv_get_set) int32_t kv_get_set(void) {
    scratch_reset();
    handle key = to_kernel(COUNTER_KEY, sizeof COUNTER_KEY - 1);
    handle entry = host_kv_get(key);
    if (!entry) return 0; /* refused: nothing to count */
    uint64_t size = k_length(entry);
    uint64_t cas = k_load_u64(entry);
    uint64_t count = 0;
    for (uint64_t i = 8; i < size; i++) {
        uint8_t c = k_load_u8(entry + i);
        if (c < '0' || c > '9') {
            count = 0;
            break;
        }
        count = count * 10 + (c - '0');
    }
    char text[21];
    size_t n = 0;
    uint64_t next = count + 1;
    do text[20 - n++] = (char)('0' + next % 10); while ((next /= 10));
    host_kv_set(key, to_kernel(text + 21 - n, n), (int32_t)(uint32_t)cas);
    return 0;
}

static const char CALLOUT_UPSTREAM[] = "127.0.0.1:1";

EXPORT(denied_call) int32_t denied_call(void) {
    scratch_reset();
    const char *headers[] = {":method", "GET", ":path", "/", ":authority", CALLOUT_UPSTREAM, ":scheme", "http"};
    uint64_t len = 0;
    uint8_t *map = encode_map(headers, 4, &len);
    if (!map) return 1;
    (void)host_http_call(to_kernel(CALLOUT_UPSTREAM, sizeof CALLOUT_UPSTREAM - 1), to_kernel(map, len), 0, 1000);
    return 0;
}
