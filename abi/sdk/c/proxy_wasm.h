/*
 * proxy_wasm.h: a header-only C guest SDK for proxy-wasm ABI v0.2.1 (RouteIQ).
 *
 * Spec: proxy-wasm/spec, abi-versions/v0.2.1/README.md. No libc: the module is built
 * freestanding (wasm32), so this header also supplies memcpy/memset/memmove/memcmp,
 * a small allocator, integer formatting and a tiny JSON string reader.
 *
 * Include it in exactly one .c file per module (it defines exported functions):
 *
 *     #include "proxy_wasm.h"
 *     PW_MANIFEST("{\"name\":\"my_filter\",\"version\":\"0.1.0\",\"capabilities\":[]}");
 *     PW_EXPORT(proxy_on_request_headers)
 *     uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t n, uint32_t eos) { ... }
 *
 * Build (zig from PyPI, or clang + wasm-ld):
 *
 *     python -m ziglang cc --target=wasm32-freestanding -nostdlib -O2 \
 *         -Wl,--no-entry -Iabi/sdk/c my_filter.c -o my_filter.wasm
 *
 * What the header exports for you: proxy_abi_version_0_2_1, proxy_on_memory_allocate,
 * and (unless PW_NO_DEFAULT_CALLBACKS is defined) nothing else: every proxy_on_*
 * callback is yours to define, and the host never calls one a module does not export.
 */
#ifndef ROUTEIQ_PROXY_WASM_H
#define ROUTEIQ_PROXY_WASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PW_EXPORT(name) __attribute__((export_name(#name), visibility("default")))
#define PW_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define PW_WASI_IMPORT(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))
#define PW_INLINE static inline __attribute__((unused))

/*
 * The plugin's manifest as the custom section `routeiq.manifest`. Write the JSON as
 * bare tokens, not as a string literal:
 *
 *     PW_MANIFEST({"name": "my_filter", "version": "0.1.0", "capabilities": ["request_body"]});
 *
 * Clang has no attribute that puts a C object into a custom section (a
 * `section(".custom_section.x")` variable becomes an ordinary data segment in linear
 * memory), so the macro emits file-scope assembly instead: the LLVM assembler turns a
 * `.section .custom_section.NAME` into the custom section NAME, and wasm-ld keeps it.
 * The JSON is stringized twice: once into a C string, once more into the assembler's
 * quoted `.ascii` operand, which escapes its quotes and backslashes. Runs of whitespace
 * between tokens become one space (whitespace inside JSON strings is kept).
 */
#define PW_STRINGIZE_(...) #__VA_ARGS__
#define PW_STRINGIZE_AGAIN_(literal) PW_STRINGIZE_(literal)
#define PW_MANIFEST(...)                                                                           \
    __asm__(".section .custom_section.routeiq.manifest,\"\",@\n"                                  \
            ".ascii " PW_STRINGIZE_AGAIN_(PW_STRINGIZE_(__VA_ARGS__)) "\n")

/* ---------------------------------------------------------------- ABI enums (spec) */

typedef enum {
    PW_OK = 0,
    PW_NOT_FOUND = 1,
    PW_BAD_ARGUMENT = 2,
    PW_SERIALIZATION_FAILURE = 3,
    PW_PARSE_FAILURE = 4,
    PW_BAD_EXPRESSION = 5,
    PW_INVALID_MEMORY_ACCESS = 6,
    PW_EMPTY = 7,
    PW_CAS_MISMATCH = 8,
    PW_RESULT_MISMATCH = 9,
    PW_INTERNAL_FAILURE = 10,
    PW_BROKEN_CONNECTION = 11,
    PW_UNIMPLEMENTED = 12,
} pw_status;

typedef enum { PW_CONTINUE = 0, PW_PAUSE = 1 } pw_action;

typedef enum {
    PW_LOG_TRACE = 0,
    PW_LOG_DEBUG = 1,
    PW_LOG_INFO = 2,
    PW_LOG_WARN = 3,
    PW_LOG_ERROR = 4,
    PW_LOG_CRITICAL = 5,
} pw_log_level;

typedef enum {
    PW_MAP_HTTP_REQUEST_HEADERS = 0,
    PW_MAP_HTTP_REQUEST_TRAILERS = 1,
    PW_MAP_HTTP_RESPONSE_HEADERS = 2,
    PW_MAP_HTTP_RESPONSE_TRAILERS = 3,
    PW_MAP_GRPC_CALL_INITIAL_METADATA = 4,
    PW_MAP_GRPC_CALL_TRAILING_METADATA = 5,
    PW_MAP_HTTP_CALL_RESPONSE_HEADERS = 6,
    PW_MAP_HTTP_CALL_RESPONSE_TRAILERS = 7,
} pw_map_type;

typedef enum {
    PW_BUFFER_HTTP_REQUEST_BODY = 0,
    PW_BUFFER_HTTP_RESPONSE_BODY = 1,
    PW_BUFFER_DOWNSTREAM_DATA = 2,
    PW_BUFFER_UPSTREAM_DATA = 3,
    PW_BUFFER_HTTP_CALL_RESPONSE_BODY = 4,
    PW_BUFFER_GRPC_CALL_MESSAGE = 5,
    PW_BUFFER_VM_CONFIGURATION = 6,
    PW_BUFFER_PLUGIN_CONFIGURATION = 7,
    PW_BUFFER_FOREIGN_FUNCTION_ARGUMENTS = 8,
} pw_buffer_type;

typedef enum {
    PW_STREAM_HTTP_REQUEST = 0,
    PW_STREAM_HTTP_RESPONSE = 1,
    PW_STREAM_DOWNSTREAM = 2,
    PW_STREAM_UPSTREAM = 3,
} pw_stream_type;

typedef enum { PW_METRIC_COUNTER = 0, PW_METRIC_GAUGE = 1, PW_METRIC_HISTOGRAM = 2 } pw_metric_type;

#define PW_NO_GRPC_STATUS 0xFFFFFFFFu

/* ------------------------------------------------------ host calls (module "env") */

PW_IMPORT(proxy_log) uint32_t proxy_log(uint32_t level, const char *msg, size_t size);
PW_IMPORT(proxy_get_log_level) uint32_t proxy_get_log_level(uint32_t *return_level);
PW_IMPORT(proxy_get_current_time_nanoseconds) uint32_t proxy_get_current_time_nanoseconds(uint64_t *return_time);

PW_IMPORT(proxy_get_header_map_pairs)
uint32_t proxy_get_header_map_pairs(uint32_t map, char **return_data, size_t *return_size);
PW_IMPORT(proxy_set_header_map_pairs)
uint32_t proxy_set_header_map_pairs(uint32_t map, const char *data, size_t size);
PW_IMPORT(proxy_get_header_map_size) uint32_t proxy_get_header_map_size(uint32_t map, size_t *return_size);
PW_IMPORT(proxy_get_header_map_value)
uint32_t proxy_get_header_map_value(uint32_t map, const char *key, size_t key_size, char **return_value,
                                    size_t *return_value_size);
PW_IMPORT(proxy_add_header_map_value)
uint32_t proxy_add_header_map_value(uint32_t map, const char *key, size_t key_size, const char *value,
                                    size_t value_size);
PW_IMPORT(proxy_replace_header_map_value)
uint32_t proxy_replace_header_map_value(uint32_t map, const char *key, size_t key_size, const char *value,
                                        size_t value_size);
PW_IMPORT(proxy_remove_header_map_value)
uint32_t proxy_remove_header_map_value(uint32_t map, const char *key, size_t key_size);

PW_IMPORT(proxy_get_buffer_bytes)
uint32_t proxy_get_buffer_bytes(uint32_t buffer, size_t start, size_t max_size, char **return_data,
                                size_t *return_size);
PW_IMPORT(proxy_set_buffer_bytes)
uint32_t proxy_set_buffer_bytes(uint32_t buffer, size_t start, size_t size, const char *data, size_t data_size);
PW_IMPORT(proxy_get_buffer_status)
uint32_t proxy_get_buffer_status(uint32_t buffer, size_t *return_size, uint32_t *return_ignored);

PW_IMPORT(proxy_send_local_response)
uint32_t proxy_send_local_response(uint32_t status_code, const char *details, size_t details_size, const char *body,
                                   size_t body_size, const char *headers, size_t headers_size, uint32_t grpc_status);
PW_IMPORT(proxy_continue_stream) uint32_t proxy_continue_stream(uint32_t stream);
PW_IMPORT(proxy_close_stream) uint32_t proxy_close_stream(uint32_t stream);

PW_IMPORT(proxy_get_property)
uint32_t proxy_get_property(const char *path, size_t path_size, char **return_value, size_t *return_size);
PW_IMPORT(proxy_set_property)
uint32_t proxy_set_property(const char *path, size_t path_size, const char *value, size_t value_size);

PW_IMPORT(proxy_set_effective_context) uint32_t proxy_set_effective_context(uint32_t context_id);
PW_IMPORT(proxy_done) uint32_t proxy_done(void);

PW_IMPORT(proxy_http_call)
uint32_t proxy_http_call(const char *upstream, size_t upstream_size, const char *headers, size_t headers_size,
                         const char *body, size_t body_size, const char *trailers, size_t trailers_size,
                         uint32_t timeout_ms, uint32_t *return_token);
PW_IMPORT(proxy_get_shared_data)
uint32_t proxy_get_shared_data(const char *key, size_t key_size, char **return_value, size_t *return_size,
                               uint32_t *return_cas);
PW_IMPORT(proxy_set_shared_data)
uint32_t proxy_set_shared_data(const char *key, size_t key_size, const char *value, size_t value_size, uint32_t cas);
PW_IMPORT(proxy_define_metric)
uint32_t proxy_define_metric(uint32_t type, const char *name, size_t name_size, uint32_t *return_id);
PW_IMPORT(proxy_increment_metric) uint32_t proxy_increment_metric(uint32_t id, int64_t offset);
PW_IMPORT(proxy_record_metric) uint32_t proxy_record_metric(uint32_t id, uint64_t value);
PW_IMPORT(proxy_get_metric) uint32_t proxy_get_metric(uint32_t id, uint64_t *return_value);
PW_IMPORT(proxy_set_tick_period_milliseconds) uint32_t proxy_set_tick_period_milliseconds(uint32_t period);

/*
 * Declarations cost nothing: the linker imports only the functions a module calls, so a
 * filter that never calls proxy_http_call does not import it (and the host's import
 * check only sees what is used).
 */

/* ------------------------------------------------- libc shims (freestanding build) */

#ifndef PW_NO_LIBC_SHIMS
/* clang may lower struct copies and loops to these; -nostdlib provides none. no_builtin
 * keeps the optimizer from turning their own loops back into calls to themselves. */
#define PW_SHIM __attribute__((visibility("hidden"), no_builtin))
PW_SHIM void *memcpy(void *dst, const void *src, size_t n) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    while (n--) *d++ = *s++;
    return dst;
}
PW_SHIM void *memmove(void *dst, const void *src, size_t n) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}
PW_SHIM void *memset(void *dst, int c, size_t n) {
    unsigned char *d = (unsigned char *)dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}
PW_SHIM int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}
#endif

PW_INLINE size_t pw_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* ------------------------------------------------------------------- allocator */
/*
 * Power-of-two size classes (16 B .. 2 GiB) with one free list each. Every block carries
 * an 8-byte header holding its class, so pw_free needs no size. Fresh blocks come from a
 * bump pointer starting at the linker's __heap_base and growing linear memory on demand.
 * A freed block is reused by the next allocation of its class, so a long-running VM's
 * memory stays bounded by its peak use (at most 2x per block).
 */

extern unsigned char __heap_base;

#define PW_ALLOC_HEADER 8u
#define PW_ALLOC_MIN_CLASS 4u  /* 16 bytes including the header */
#define PW_ALLOC_MAX_CLASS 31u

static void *pw_free_lists[PW_ALLOC_MAX_CLASS + 1];
static uintptr_t pw_bump_next;
static uintptr_t pw_bump_end;

PW_INLINE uint32_t pw_size_class(size_t total) {
    uint32_t cls = PW_ALLOC_MIN_CLASS;
    while (cls < PW_ALLOC_MAX_CLASS && ((size_t)1 << cls) < total) cls++;
    return cls;
}

PW_INLINE void *pw_malloc(size_t size) {
    if (size > ((size_t)1 << PW_ALLOC_MAX_CLASS) - PW_ALLOC_HEADER) return 0;
    uint32_t cls = pw_size_class(size + PW_ALLOC_HEADER);
    unsigned char *block = (unsigned char *)pw_free_lists[cls];
    if (block) {
        pw_free_lists[cls] = *(void **)(block + PW_ALLOC_HEADER);
    } else {
        size_t total = (size_t)1 << cls;
        if (!pw_bump_next) {
            pw_bump_next = ((uintptr_t)&__heap_base + 15u) & ~(uintptr_t)15u;
            pw_bump_end = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
        }
        if (pw_bump_end - pw_bump_next < total) {
            size_t missing = total - (pw_bump_end - pw_bump_next);
            size_t pages = (missing + 65535u) / 65536u;
            if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
            pw_bump_end += pages * 65536u;
        }
        block = (unsigned char *)pw_bump_next;
        pw_bump_next += total;
    }
    *(uint32_t *)block = cls;
    return block + PW_ALLOC_HEADER;
}

PW_INLINE void pw_free(void *ptr) {
    if (!ptr) return;
    unsigned char *block = (unsigned char *)ptr - PW_ALLOC_HEADER;
    uint32_t cls = *(uint32_t *)block;
    if (cls < PW_ALLOC_MIN_CLASS || cls > PW_ALLOC_MAX_CLASS) return; /* not ours */
    *(void **)ptr = pw_free_lists[cls];
    pw_free_lists[cls] = block;
}

PW_INLINE void *pw_calloc(size_t size) {
    void *p = pw_malloc(size);
    if (p) memset(p, 0, size);
    return p;
}

/* The host allocates every returned value (header values, buffers, properties) here. */
PW_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return pw_malloc(size); }

/* The ABI marker: the host refuses a module without it. Never called. */
PW_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

/* ------------------------------------------------------------------- byte strings */

/* A (pointer, length) view. Values returned by the host are owned: pw_bytes_free them. */
typedef struct {
    char *data;
    size_t len;
} pw_bytes;

PW_INLINE void pw_bytes_free(pw_bytes *b) {
    pw_free(b->data);
    b->data = 0;
    b->len = 0;
}

PW_INLINE bool pw_bytes_eq(pw_bytes b, const char *s) {
    size_t n = pw_strlen(s);
    return b.len == n && memcmp(b.data, s, n) == 0;
}

/* Copy `len` bytes into a fresh NUL-terminated allocation (0 on failure). */
PW_INLINE char *pw_strndup(const char *s, size_t len) {
    char *out = (char *)pw_malloc(len + 1);
    if (!out) return 0;
    memcpy(out, s, len);
    out[len] = 0;
    return out;
}

/* Decimal text of `value` into `out` (at least 21 bytes); returns its length. */
PW_INLINE size_t pw_u64_to_dec(uint64_t value, char *out) {
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = 0;
    return n;
}

/* A small append-only text builder over a fixed buffer (truncates, always NUL-terminated). */
typedef struct {
    char *buf;
    size_t cap;
    size_t len;
} pw_text;

PW_INLINE void pw_text_init(pw_text *t, char *buf, size_t cap) {
    t->buf = buf;
    t->cap = cap;
    t->len = 0;
    if (cap) buf[0] = 0;
}
PW_INLINE void pw_text_append(pw_text *t, const char *s, size_t n) {
    if (!t->cap) return;
    size_t room = t->cap - 1 - t->len;
    if (n > room) n = room;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = 0;
}
PW_INLINE void pw_text_str(pw_text *t, const char *s) { pw_text_append(t, s, pw_strlen(s)); }
PW_INLINE void pw_text_u64(pw_text *t, uint64_t v) {
    char num[21];
    pw_text_append(t, num, pw_u64_to_dec(v, num));
}

/* ---------------------------------------------------------------------- logging */

PW_INLINE uint32_t pw_log(pw_log_level level, const char *msg, size_t len) { return proxy_log(level, msg, len); }
PW_INLINE uint32_t pw_log_str(pw_log_level level, const char *msg) { return proxy_log(level, msg, pw_strlen(msg)); }

/* ---------------------------------------------------------------------- headers */

/* Value of header `key` (lower case) in `map`. PW_OK and an owned value, or PW_NOT_FOUND. */
PW_INLINE uint32_t pw_get_header(pw_map_type map, const char *key, pw_bytes *out) {
    out->data = 0;
    out->len = 0;
    return proxy_get_header_map_value(map, key, pw_strlen(key), &out->data, &out->len);
}

/* True when header `key` is present in `map` (any value, even empty). */
PW_INLINE bool pw_has_header(pw_map_type map, const char *key) {
    pw_bytes value;
    uint32_t status = pw_get_header(map, key, &value);
    pw_bytes_free(&value);
    return status == PW_OK;
}

PW_INLINE uint32_t pw_add_header_n(pw_map_type map, const char *key, const char *value, size_t value_len) {
    return proxy_add_header_map_value(map, key, pw_strlen(key), value, value_len);
}
PW_INLINE uint32_t pw_add_header(pw_map_type map, const char *key, const char *value) {
    return pw_add_header_n(map, key, value, pw_strlen(value));
}
PW_INLINE uint32_t pw_replace_header(pw_map_type map, const char *key, const char *value) {
    return proxy_replace_header_map_value(map, key, pw_strlen(key), value, pw_strlen(value));
}
PW_INLINE uint32_t pw_remove_header(pw_map_type map, const char *key) {
    return proxy_remove_header_map_value(map, key, pw_strlen(key));
}

/* One header pair, NUL-terminated strings. */
typedef struct {
    const char *key;
    const char *value;
} pw_header;

/*
 * Serialize pairs in the spec's map format (count, (key_len, value_len)*, then
 * key\0value\0 each) into a fresh allocation. Zero pairs give an empty map (len 0).
 */
PW_INLINE pw_bytes pw_serialize_headers(const pw_header *pairs, size_t count) {
    pw_bytes out = {0, 0};
    if (!count) return out;
    size_t size = 4 + 8 * count;
    for (size_t i = 0; i < count; i++) size += pw_strlen(pairs[i].key) + pw_strlen(pairs[i].value) + 2;
    unsigned char *p = (unsigned char *)pw_malloc(size);
    if (!p) return out;
    uint32_t n = (uint32_t)count;
    memcpy(p, &n, 4);
    unsigned char *data = p + 4 + 8 * count;
    for (size_t i = 0; i < count; i++) {
        uint32_t kl = (uint32_t)pw_strlen(pairs[i].key), vl = (uint32_t)pw_strlen(pairs[i].value);
        memcpy(p + 4 + 8 * i, &kl, 4);
        memcpy(p + 8 + 8 * i, &vl, 4);
        memcpy(data, pairs[i].key, kl);
        data += kl;
        *data++ = 0;
        memcpy(data, pairs[i].value, vl);
        data += vl;
        *data++ = 0;
    }
    out.data = (char *)p;
    out.len = size;
    return out;
}

/* ------------------------------------------------------------- local responses */

/*
 * Answer the stream locally: `status`, `details` (shown in logs), `body` of `body_len`
 * bytes, extra response headers. The callback should then return PW_PAUSE.
 */
PW_INLINE uint32_t pw_send_local_response(uint32_t status, const char *details, const char *body, size_t body_len,
                                          const pw_header *headers, size_t header_count) {
    pw_bytes map = pw_serialize_headers(headers, header_count);
    uint32_t rc = proxy_send_local_response(status, details, pw_strlen(details), body, body_len, map.data, map.len,
                                            PW_NO_GRPC_STATUS);
    pw_bytes_free(&map);
    return rc;
}

/* ---------------------------------------------------------------------- buffers */

/* Up to `max_size` bytes from `start` of `buffer`; owned value on PW_OK. */
PW_INLINE uint32_t pw_get_buffer(pw_buffer_type buffer, size_t start, size_t max_size, pw_bytes *out) {
    out->data = 0;
    out->len = 0;
    return proxy_get_buffer_bytes(buffer, start, max_size, &out->data, &out->len);
}

/* The whole plugin configuration (call from proxy_on_configure with its size). */
PW_INLINE uint32_t pw_get_plugin_configuration(size_t size, pw_bytes *out) {
    if (!size) {
        out->data = 0;
        out->len = 0;
        return PW_OK;
    }
    return pw_get_buffer(PW_BUFFER_PLUGIN_CONFIGURATION, 0, size, out);
}

/* ------------------------------------------------------------------- properties */

/*
 * A property by dotted path ("request.path"); converted to the spec's NUL-separated
 * segments. Owned value on PW_OK.
 */
PW_INLINE uint32_t pw_get_property(const char *dotted, pw_bytes *out) {
    size_t n = pw_strlen(dotted);
    char *path = pw_strndup(dotted, n);
    out->data = 0;
    out->len = 0;
    if (!path) return PW_INTERNAL_FAILURE;
    for (size_t i = 0; i < n; i++)
        if (path[i] == '.') path[i] = 0;
    uint32_t rc = proxy_get_property(path, n, &out->data, &out->len);
    pw_free(path);
    return rc;
}

/* --------------------------------------------------------- per-context user data */
/*
 * A tiny registry of per-context state: pw_context_data(id, size) returns the zeroed
 * block for context `id` (made on first use), pw_context_forget(id) frees it (call it
 * from proxy_on_delete). A linked list: fine for the handful of concurrent streams a VM
 * serves.
 */

typedef struct pw_context_node {
    struct pw_context_node *next;
    uint32_t id;
    uint32_t size;
} pw_context_node;

static pw_context_node *pw_contexts;

PW_INLINE void *pw_context_find(uint32_t id) {
    for (pw_context_node *n = pw_contexts; n; n = n->next)
        if (n->id == id) return (void *)(n + 1);
    return 0;
}

PW_INLINE void *pw_context_data(uint32_t id, size_t size) {
    void *found = pw_context_find(id);
    if (found) return found;
    pw_context_node *n = (pw_context_node *)pw_calloc(sizeof(pw_context_node) + size);
    if (!n) return 0;
    n->id = id;
    n->size = (uint32_t)size;
    n->next = pw_contexts;
    pw_contexts = n;
    return (void *)(n + 1);
}

PW_INLINE void pw_context_forget(uint32_t id) {
    for (pw_context_node **link = &pw_contexts; *link; link = &(*link)->next) {
        if ((*link)->id == id) {
            pw_context_node *dead = *link;
            *link = dead->next;
            pw_free(dead);
            return;
        }
    }
}

/* ----------------------------------------------------------------- tiny JSON reader */
/*
 * pw_json_get_string(json, len, "key", &out): the string value of top-level member "key"
 * of a JSON object, unescaped into a fresh NUL-terminated allocation (pw_free it).
 * Returns false when the input is not an object, the key is missing, or its value is not
 * a string. pw_json_get_string_array does the same for an array of strings. Escapes \" \\ \/ \b \f \n \r \t and \uXXXX (encoded as UTF-8; surrogate
 * pairs joined) are decoded. Nested values of other members are skipped.
 */

typedef struct {
    const char *s;
    size_t len;
    size_t pos;
} pw_json;

PW_INLINE void pw_json_ws(pw_json *j) {
    while (j->pos < j->len &&
           (j->s[j->pos] == ' ' || j->s[j->pos] == '\t' || j->s[j->pos] == '\n' || j->s[j->pos] == '\r'))
        j->pos++;
}

PW_INLINE int pw_json_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

PW_INLINE bool pw_json_u4(pw_json *j, uint32_t *cp) {
    if (j->pos + 4 > j->len) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = pw_json_hex(j->s[j->pos + i]);
        if (h < 0) return false;
        v = v * 16 + (uint32_t)h;
    }
    j->pos += 4;
    *cp = v;
    return true;
}

PW_INLINE size_t pw_utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parse a string at j->pos (on its opening quote). With `out`, write the decoded bytes
 * (at most the raw length, which always suffices) and their count to *out_len. */
PW_INLINE bool pw_json_string(pw_json *j, char *out, size_t *out_len) {
    if (j->pos >= j->len || j->s[j->pos] != '"') return false;
    j->pos++;
    size_t n = 0;
    while (j->pos < j->len) {
        char c = j->s[j->pos++];
        if (c == '"') {
            if (out_len) *out_len = n;
            return true;
        }
        if ((unsigned char)c < 0x20) return false;
        if (c != '\\') {
            if (out) out[n] = c;
            n++;
            continue;
        }
        if (j->pos >= j->len) return false;
        char e = j->s[j->pos++];
        char simple = 0;
        switch (e) {
            case '"': simple = '"'; break;
            case '\\': simple = '\\'; break;
            case '/': simple = '/'; break;
            case 'b': simple = '\b'; break;
            case 'f': simple = '\f'; break;
            case 'n': simple = '\n'; break;
            case 'r': simple = '\r'; break;
            case 't': simple = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (!pw_json_u4(j, &cp)) return false;
                if (cp >= 0xD800 && cp < 0xDC00 && j->pos + 6 <= j->len && j->s[j->pos] == '\\' &&
                    j->s[j->pos + 1] == 'u') {
                    size_t save = j->pos;
                    uint32_t lo;
                    j->pos += 2;
                    if (pw_json_u4(j, &lo) && lo >= 0xDC00 && lo < 0xE000)
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    else
                        j->pos = save;
                }
                char tmp[4];
                size_t k = pw_utf8_put(cp, tmp);
                if (out) memcpy(out + n, tmp, k);
                n += k;
                continue;
            }
            default: return false;
        }
        if (out) out[n] = simple;
        n++;
    }
    return false;
}

/* Skip any JSON value (object, array, string, number, literal). */
PW_INLINE bool pw_json_skip(pw_json *j) {
    pw_json_ws(j);
    if (j->pos >= j->len) return false;
    char c = j->s[j->pos];
    if (c == '"') return pw_json_string(j, 0, 0);
    if (c == '{' || c == '[') {
        int depth = 0;
        while (j->pos < j->len) {
            char d = j->s[j->pos];
            if (d == '"') {
                if (!pw_json_string(j, 0, 0)) return false;
                continue;
            }
            j->pos++;
            if (d == '{' || d == '[') depth++;
            else if (d == '}' || d == ']') {
                if (--depth == 0) return true;
            }
        }
        return false;
    }
    size_t start = j->pos;
    while (j->pos < j->len) {
        char d = j->s[j->pos];
        if (d == ',' || d == '}' || d == ']' || d == ' ' || d == '\t' || d == '\n' || d == '\r') break;
        j->pos++;
    }
    return j->pos > start;
}

/*
 * Find top-level member `key` of the JSON object in (json, len); on success *value_pos is
 * the offset of its value. Duplicate keys: the last one wins. False for a missing key or
 * input that is not a well-formed object at the top level.
 */
PW_INLINE bool pw_json_member(const char *json, size_t len, const char *key, size_t *value_pos) {
    pw_json j = {json, len, 0};
    size_t key_len = pw_strlen(key);
    bool found = false;
    pw_json_ws(&j);
    if (j.pos >= j.len || j.s[j.pos] != '{') return false;
    j.pos++;
    pw_json_ws(&j);
    if (j.pos < j.len && j.s[j.pos] == '}') return false;
    while (j.pos < j.len) {
        pw_json_ws(&j);
        size_t raw_start = j.pos;
        size_t name_len = 0;
        if (!pw_json_string(&j, 0, &name_len)) return false;
        bool match = false;
        if (name_len == key_len) {
            char *name = (char *)pw_malloc(name_len + 1);
            if (!name) return false;
            pw_json k = {json, len, raw_start};
            pw_json_string(&k, name, &name_len);
            match = memcmp(name, key, key_len) == 0;
            pw_free(name);
        }
        pw_json_ws(&j);
        if (j.pos >= j.len || j.s[j.pos] != ':') return false;
        j.pos++;
        pw_json_ws(&j);
        if (match) {
            *value_pos = j.pos;
            found = true;
        }
        if (!pw_json_skip(&j)) return false;
        pw_json_ws(&j);
        if (j.pos < j.len && j.s[j.pos] == ',') {
            j.pos++;
            continue;
        }
        if (j.pos < j.len && j.s[j.pos] == '}') return found;
        return false;
    }
    return false;
}

/* Decode the JSON string at `pos` into a fresh NUL-terminated allocation (pw_free it). */
PW_INLINE char *pw_json_string_at(const char *json, size_t len, size_t pos, size_t *out_len) {
    pw_json j = {json, len, pos};
    size_t n = 0;
    if (!pw_json_string(&j, 0, &n)) return 0;
    char *out = (char *)pw_malloc(n + 1);
    if (!out) return 0;
    j.pos = pos;
    pw_json_string(&j, out, &n);
    out[n] = 0;
    if (out_len) *out_len = n;
    return out;
}

PW_INLINE bool pw_json_get_string(const char *json, size_t len, const char *key, char **out) {
    size_t pos;
    *out = 0;
    if (!pw_json_member(json, len, key, &pos) || json[pos] != '"') return false;
    *out = pw_json_string_at(json, len, pos, 0);
    return *out != 0;
}

/*
 * The array of strings at member `key`: *items is a fresh array of *count fresh strings
 * (free with pw_json_free_strings). False (and nothing allocated) when the member is
 * missing, not an array, or holds anything but strings.
 */
PW_INLINE void pw_json_free_strings(char **items, size_t count) {
    if (!items) return;
    for (size_t i = 0; i < count; i++) pw_free(items[i]);
    pw_free(items);
}

PW_INLINE bool pw_json_get_string_array(const char *json, size_t len, const char *key, char ***items,
                                        size_t *count) {
    size_t pos;
    *items = 0;
    *count = 0;
    if (!pw_json_member(json, len, key, &pos) || json[pos] != '[') return false;
    pw_json j = {json, len, pos + 1};
    size_t cap = 0, n = 0;
    char **list = 0;
    pw_json_ws(&j);
    if (j.pos < j.len && j.s[j.pos] == ']') {
        *items = 0;
        *count = 0;
        return true;
    }
    while (j.pos < j.len) {
        pw_json_ws(&j);
        if (j.pos >= j.len || j.s[j.pos] != '"') break;
        size_t at = j.pos;
        if (!pw_json_string(&j, 0, 0)) break;
        if (n == cap) {
            size_t grown = cap ? cap * 2 : 4;
            char **bigger = (char **)pw_malloc(grown * sizeof(char *));
            if (!bigger) break;
            if (list) memcpy(bigger, list, n * sizeof(char *));
            pw_free(list);
            list = bigger;
            cap = grown;
        }
        list[n] = pw_json_string_at(json, len, at, 0);
        if (!list[n]) break;
        n++;
        pw_json_ws(&j);
        if (j.pos < j.len && j.s[j.pos] == ',') {
            j.pos++;
            continue;
        }
        if (j.pos < j.len && j.s[j.pos] == ']') {
            *items = list;
            *count = n;
            return true;
        }
        break;
    }
    pw_json_free_strings(list, n);
    return false;
}

#endif /* ROUTEIQ_PROXY_WASM_H */
