/*
 * c_tagger: the Rust `tagger` example, in C with abi/sdk/c/proxy_wasm.h.
 *
 * Per request:
 *  - Denied when the request carries header `deny_header` (any value, even empty), or
 *    its path (`:path`, else the `request.path` property) starts with one of
 *    `deny_paths`: local response 403, details `blocked by c_tagger`, header
 *    `content-type: application/json`, body
 *    {"error":{"message":"blocked by c_tagger","type":"forbidden"}}; returns Pause.
 *  - Otherwise adds request header `x-routeiq-tagged: <tag>` and continues.
 *  - proxy_on_response_headers adds `x-routeiq-plugin: c_tagger`.
 *
 * Plugin configuration (JSON object, every key optional; wrong types are ignored, empty
 * or invalid JSON means all defaults):
 *   {"tag": "c", "deny_header": "x-block", "deny_paths": ["/admin"]}
 */
#include "proxy_wasm.h"

PW_MANIFEST({"name": "c_tagger", "version": "0.1.0", "description": "Header tagging and deny rules (C guest)", "capabilities": []});

static const char DENY_BODY[] = "{\"error\":{\"message\":\"blocked by c_tagger\",\"type\":\"forbidden\"}}";

static char *cfg_tag;          /* owned; never NULL after configure */
static char *cfg_deny_header;  /* owned, lower case; "" disables the header rule */
static char **cfg_deny_paths;  /* owned */
static size_t cfg_deny_path_count;

static char *dup_str(const char *s) { return pw_strndup(s, pw_strlen(s)); }

static void lower_ascii(char *s) {
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s + ('a' - 'A'));
}

static void set_defaults(void) {
    pw_free(cfg_tag);
    pw_free(cfg_deny_header);
    pw_json_free_strings(cfg_deny_paths, cfg_deny_path_count);
    cfg_tag = dup_str("c");
    cfg_deny_header = dup_str("x-block");
    cfg_deny_paths = 0;
    cfg_deny_path_count = 0;
}

PW_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {
    (void)context_id;
    (void)parent_id;
}

PW_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, uint32_t vm_config_size) {
    (void)root_id;
    (void)vm_config_size;
    return 1;
}

PW_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, uint32_t config_size) {
    (void)root_id;
    set_defaults();
    pw_bytes config;
    if (pw_get_plugin_configuration(config_size, &config) == PW_OK && config.len) {
        char *value;
        if (pw_json_get_string(config.data, config.len, "tag", &value)) {
            pw_free(cfg_tag);
            cfg_tag = value;
        }
        if (pw_json_get_string(config.data, config.len, "deny_header", &value)) {
            lower_ascii(value);
            pw_free(cfg_deny_header);
            cfg_deny_header = value;
        }
        char **paths;
        size_t count;
        if (pw_json_get_string_array(config.data, config.len, "deny_paths", &paths, &count)) {
            cfg_deny_paths = paths;
            cfg_deny_path_count = count;
        }
    }
    pw_bytes_free(&config);

    char line[512];
    pw_text t;
    pw_text_init(&t, line, sizeof line);
    pw_text_str(&t, "c_tagger: tag=");
    pw_text_str(&t, cfg_tag);
    pw_text_str(&t, " deny_header=");
    pw_text_str(&t, cfg_deny_header);
    pw_text_str(&t, " deny_paths=");
    pw_text_u64(&t, cfg_deny_path_count);
    pw_log(PW_LOG_DEBUG, t.buf, t.len);
    return 1;
}

static bool path_denied(void) {
    if (!cfg_deny_path_count) return false;
    pw_bytes path;
    if (pw_get_header(PW_MAP_HTTP_REQUEST_HEADERS, ":path", &path) != PW_OK) {
        pw_bytes_free(&path);
        if (pw_get_property("request.path", &path) != PW_OK) pw_bytes_free(&path);
    }
    bool denied = false;
    for (size_t i = 0; i < cfg_deny_path_count && !denied; i++) {
        size_t n = pw_strlen(cfg_deny_paths[i]);
        denied = path.len >= n && memcmp(path.data, cfg_deny_paths[i], n) == 0;
    }
    pw_bytes_free(&path);
    return denied;
}

static bool denied(void) {
    if (cfg_deny_header[0] && pw_has_header(PW_MAP_HTTP_REQUEST_HEADERS, cfg_deny_header)) return true;
    return path_denied();
}

PW_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t num_headers, uint32_t end_of_stream) {
    (void)context_id;
    (void)num_headers;
    (void)end_of_stream;
    if (denied()) {
        static const pw_header headers[] = {{"content-type", "application/json"}};
        pw_send_local_response(403, "blocked by c_tagger", DENY_BODY, sizeof DENY_BODY - 1, headers, 1);
        return PW_PAUSE;
    }
    pw_add_header(PW_MAP_HTTP_REQUEST_HEADERS, "x-routeiq-tagged", cfg_tag);
    return PW_CONTINUE;
}

PW_EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t context_id, uint32_t num_headers, uint32_t end_of_stream) {
    (void)context_id;
    (void)num_headers;
    (void)end_of_stream;
    pw_add_header(PW_MAP_HTTP_RESPONSE_HEADERS, "x-routeiq-plugin", "c_tagger");
    return PW_CONTINUE;
}

PW_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) {
    (void)context_id;
    return 1;
}
