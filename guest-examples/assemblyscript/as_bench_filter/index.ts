// as_bench_filter: the hook-matrix benchmark filter (guest-examples/rust/bench_filter), in
// AssemblyScript with lib/proxy_wasm.ts. Same logic in every language, so
// bench/test_hook_matrix.py compares hosts, not filters:
//
//  - proxy_on_request_headers: reads `x-api-key`, adds `x-routeiq-seen: 1` (`anonymous`
//    without the key).
//  - proxy_on_request_body: Pause until end_of_stream; then reads the whole body, replaces
//    every `secret` with `******`, writes the whole body back.
//  - proxy_on_response_body: reads each chunk, adds its length to a per-request counter;
//    proxy_on_response_trailers reports it as trailer `x-routeiq-body-bytes: <n>`.
//  - proxy_on_response_headers: `bench-counter` in shared data += 1 (decimal text, CAS).
//  - proxy_on_log: one HTTP callout to 127.0.0.1:1, status ignored (the benchmark grants
//    no `http_callout`: it measures the host's refusal).

import {
  Action, BufferType, MapType, Status, addHeader, getBuffer, getHeader, getSharedData, httpCall, setBuffer, setSharedData,
} from "../lib/proxy_wasm";

export { proxy_abi_version_0_2_1, proxy_on_memory_allocate } from "../lib/proxy_wasm";

const COUNTER_KEY = "bench-counter";
const CALLOUT_UPSTREAM = "127.0.0.1:1";

// Response bytes seen, per stream context.
const responseBytes = new Map<u32, u64>();

export function proxy_on_context_create(contextId: u32, parentId: u32): void {
  if (parentId != 0) responseBytes.set(contextId, 0);
}

export function proxy_on_request_headers(contextId: u32, numHeaders: u32, endOfStream: u32): u32 {
  const seen = getHeader(MapType.HTTP_REQUEST_HEADERS, "x-api-key") !== null ? "1" : "anonymous";
  addHeader(MapType.HTTP_REQUEST_HEADERS, "x-routeiq-seen", seen);
  return Action.CONTINUE;
}

// `secret` -> `******` in place: same length, so the buffer never moves. Raw loads on the
// buffer's memory, like lib/proxy_wasm.ts: typed-array indexing costs a call per byte here.
function maskSecrets(body: ArrayBuffer): void {
  const base = changetype<usize>(body);
  const end = base + <usize>body.byteLength;
  let p = base;
  while (p + 6 <= end) {
    if (
      load<u8>(p) == 0x73 && load<u8>(p, 1) == 0x65 && load<u8>(p, 2) == 0x63 &&
      load<u8>(p, 3) == 0x72 && load<u8>(p, 4) == 0x65 && load<u8>(p, 5) == 0x74
    ) {
      memory.fill(p, 0x2a, 6);
      p += 6;
    } else {
      p++;
    }
  }
}

export function proxy_on_request_body(contextId: u32, bodySize: u32, endOfStream: u32): u32 {
  if (endOfStream == 0) return Action.PAUSE; // the host buffers until the whole body is there
  const body = getBuffer(BufferType.HTTP_REQUEST_BODY, 0, bodySize);
  if (body !== null) {
    maskSecrets(body);
    setBuffer(BufferType.HTTP_REQUEST_BODY, 0, body.byteLength, body);
  }
  return Action.CONTINUE;
}

export function proxy_on_response_headers(contextId: u32, numHeaders: u32, endOfStream: u32): u32 {
  const entry = getSharedData(COUNTER_KEY);
  if (entry.status == Status.OK || entry.status == Status.NOT_FOUND) {
    const value = entry.value;
    const count = value !== null ? U64.parseInt(String.UTF8.decode(value)) : <u64>0;
    setSharedData(COUNTER_KEY, String.UTF8.encode((count + 1).toString()), entry.cas);
  }
  return Action.CONTINUE;
}

export function proxy_on_response_body(contextId: u32, bodySize: u32, endOfStream: u32): u32 {
  if (bodySize > 0 && responseBytes.has(contextId)) {
    const chunk = getBuffer(BufferType.HTTP_RESPONSE_BODY, 0, bodySize);
    if (chunk !== null) responseBytes.set(contextId, responseBytes.get(contextId) + chunk.byteLength);
  }
  return Action.CONTINUE;
}

export function proxy_on_response_trailers(contextId: u32, numTrailers: u32): u32 {
  if (responseBytes.has(contextId)) {
    addHeader(MapType.HTTP_RESPONSE_TRAILERS, "x-routeiq-body-bytes", responseBytes.get(contextId).toString());
  }
  return Action.CONTINUE;
}

export function proxy_on_done(contextId: u32): u32 {
  return 1;
}

export function proxy_on_log(contextId: u32): void {
  httpCall(CALLOUT_UPSTREAM, [[":method", "GET"], [":path", "/"], [":authority", CALLOUT_UPSTREAM], [":scheme", "http"]], new ArrayBuffer(0), 1000);
}

export function proxy_on_delete(contextId: u32): void {
  responseBytes.delete(contextId);
}
