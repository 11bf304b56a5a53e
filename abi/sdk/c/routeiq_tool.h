/*
 * routeiq_tool.h: MCP tools in C (docs/mcp.md, abi/mcp_tool.md), on top of proxy_wasm.h.
 *
 * A tool is a core module exporting routeiq_tool_call(input_ptr, input_len): the input
 * is the call's arguments as JSON (already checked against the manifest's input_schema,
 * in a buffer from proxy_on_memory_allocate that the tool owns), the answer is what it
 * hands to routeiq_tool_set_output: on RT_TOOL_OK the JSON result, on RT_TOOL_ERROR a
 * message for the client (MCP isError). Include it in exactly one .c file:
 *
 *     #include "routeiq_tool.h"
 *     PW_MANIFEST({"name": "my_tool", "version": "0.1.0", "capabilities": [],
 *                  "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}}});
 *
 *     RT_TOOL_CALL(input, len) {
 *         return rt_tool_result("{\"ok\": true}");     // or rt_tool_error("why")
 *     }
 *
 * The manifest is macro-expanded before it is stringized: stdbool's `true` and `false`
 * would become 1 and 0, so write JSON booleans another way (leave
 * "additionalProperties": false out, or #undef false around PW_MANIFEST).
 *
 * A tool granted http_callout may dispatch proxy_http_call and return RT_TOOL_PAUSED; each
 * response then arrives in proxy_on_http_call_response (define it), which ends the call
 * with rt_tool_finish(RT_TOOL_OK or RT_TOOL_ERROR) after setting the output.
 */
#ifndef ROUTEIQ_TOOL_H
#define ROUTEIQ_TOOL_H

#include "proxy_wasm.h"

#define RT_TOOL_OK 0u
#define RT_TOOL_ERROR 1u
#define RT_TOOL_PAUSED 2u

PW_IMPORT(routeiq_tool_set_output) uint32_t routeiq_tool_set_output(const char *data, size_t size);
PW_IMPORT(routeiq_tool_finish) uint32_t routeiq_tool_finish(uint32_t status);

/* Hand over the answer (a later call replaces an earlier one); 0 OK, 2 over the host's size limit. */
PW_INLINE uint32_t rt_tool_output(const char *data, size_t size) { return routeiq_tool_set_output(data, size); }

PW_INLINE uint32_t rt_tool_result_n(const char *json, size_t size) {
    rt_tool_output(json, size);
    return RT_TOOL_OK;
}
PW_INLINE uint32_t rt_tool_result(const char *json) { return rt_tool_result_n(json, pw_strlen(json)); }

PW_INLINE uint32_t rt_tool_error(const char *message) {
    rt_tool_output(message, pw_strlen(message));
    return RT_TOOL_ERROR;
}

/* End a paused call from proxy_on_http_call_response. */
PW_INLINE uint32_t rt_tool_finish(uint32_t status) { return routeiq_tool_finish(status); }

/*
 * Defines the exported routeiq_tool_call; the body sees `input` (char *, the JSON
 * arguments, NUL-terminated for convenience) and `len`, and returns RT_TOOL_*.
 * The input buffer is freed after the body returns.
 */
#define RT_TOOL_CALL(input, len)                                                                   \
    static uint32_t rt_tool_body_(char *input, size_t len);                                        \
    PW_EXPORT(routeiq_tool_call) uint32_t routeiq_tool_call(char *rt_in_, size_t rt_len_) {        \
        char *rt_text_ = pw_strndup(rt_in_ ? rt_in_ : "", rt_len_);                               \
        if (rt_in_) pw_free(rt_in_);                                                               \
        if (!rt_text_) return rt_tool_error("out of memory");                                      \
        uint32_t rt_status_ = rt_tool_body_(rt_text_, rt_len_);                                   \
        pw_free(rt_text_);                                                                         \
        return rt_status_;                                                                         \
    }                                                                                              \
    static uint32_t rt_tool_body_(char *input, size_t len)

#endif
