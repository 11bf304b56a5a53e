/*
 * c_checksum: an MCP tool in C (docs/mcp.md): the checksum of a text.
 *
 * Input {"text": "hello", "algorithm": "crc32"} (algorithm crc32 (default), adler32 or
 * fnv1a32), output {"algorithm": "crc32", "checksum": "3610a686", "bytes": 5}: the
 * checksum of the text's UTF-8 bytes as 8 lower-case hex digits. The host checked the
 * input against input_schema, so `text` is a string and `algorithm` one of the three.
 * Capabilities: none.
 */
#include "routeiq_tool.h"

PW_MANIFEST({"name": "c_checksum", "version": "0.1.0",
    "description": "Checksum of a text's UTF-8 bytes: crc32 (as zlib), adler32 or fnv1a32, as 8 hex digits.",
    "capabilities": [],
    "input_schema": {"type": "object", "required": ["text"],
        "properties": {"text": {"type": "string", "description": "The text to checksum."},
            "algorithm": {"enum": ["crc32", "adler32", "fnv1a32"], "description": "Default crc32."}}},
    "output_schema": {"type": "object", "required": ["algorithm", "checksum", "bytes"],
        "properties": {"algorithm": {"type": "string"}, "checksum": {"type": "string", "pattern": "^[0-9a-f]{8}$"},
            "bytes": {"type": "integer"}}}});

static uint32_t crc32(const unsigned char *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint32_t adler32(const unsigned char *p, size_t n) {
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    return (b << 16) | a;
}

static uint32_t fnv1a32(const unsigned char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

RT_TOOL_CALL(input, len) {
    char *text = 0, *algorithm = 0;
    size_t pos, text_len = 0;
    if (!pw_json_member(input, len, "text", &pos) || input[pos] != '"') return rt_tool_error("text: a string is required");
    text = pw_json_string_at(input, len, pos, &text_len);
    if (!text) return rt_tool_error("text: cannot decode the string");
    pw_json_get_string(input, len, "algorithm", &algorithm);
    const char *name = algorithm ? algorithm : "crc32";
    uint32_t sum;
    if (pw_bytes_eq((pw_bytes){(char *)name, pw_strlen(name)}, "adler32")) {
        sum = adler32((const unsigned char *)text, text_len);
    } else if (pw_bytes_eq((pw_bytes){(char *)name, pw_strlen(name)}, "fnv1a32")) {
        sum = fnv1a32((const unsigned char *)text, text_len);
    } else {
        name = "crc32";
        sum = crc32((const unsigned char *)text, text_len);
    }
    static const char hex[] = "0123456789abcdef";
    char digits[9];
    for (int i = 0; i < 8; i++) digits[i] = hex[(sum >> (28 - 4 * i)) & 0xFu];
    digits[8] = 0;
    char buf[128];
    pw_text out;
    pw_text_init(&out, buf, sizeof buf);
    pw_text_str(&out, "{\"algorithm\": \"");
    pw_text_str(&out, name);
    pw_text_str(&out, "\", \"checksum\": \"");
    pw_text_str(&out, digits);
    pw_text_str(&out, "\", \"bytes\": ");
    pw_text_u64(&out, text_len);
    pw_text_str(&out, "}");
    uint32_t status = rt_tool_result_n(out.buf, out.len);
    pw_free(text);
    pw_free(algorithm);
    return status;
}
