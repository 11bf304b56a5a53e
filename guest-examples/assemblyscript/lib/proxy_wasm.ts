// proxy_wasm.ts: a tiny in-repo helper for proxy-wasm ABI v0.2.1 guests in AssemblyScript.
//
// Host calls (module "env"), the allocator the host uses for returned values, the ABI
// marker, and helpers for logs, headers, buffers, properties, local responses, shared
// data and HTTP callouts.
// A guest's entry file re-exports the two module-level exports it needs:
//
//   export { proxy_abi_version_0_2_1, proxy_on_memory_allocate } from "../lib/proxy_wasm";
//
// and exports its own proxy_on_* callbacks (the host calls only those a module exports).
// Strings cross the boundary as UTF-8; AssemblyScript strings are UTF-16 inside.

// ------------------------------------------------------------------ ABI enums (spec)

export namespace Status {
  export const OK: u32 = 0;
  export const NOT_FOUND: u32 = 1;
  export const BAD_ARGUMENT: u32 = 2;
  export const INVALID_MEMORY_ACCESS: u32 = 6;
  export const EMPTY: u32 = 7;
  export const UNIMPLEMENTED: u32 = 12;
}

export namespace Action {
  export const CONTINUE: u32 = 0;
  export const PAUSE: u32 = 1;
}

export namespace LogLevel {
  export const TRACE: u32 = 0;
  export const DEBUG: u32 = 1;
  export const INFO: u32 = 2;
  export const WARN: u32 = 3;
  export const ERROR: u32 = 4;
  export const CRITICAL: u32 = 5;
}

export namespace MapType {
  export const HTTP_REQUEST_HEADERS: u32 = 0;
  export const HTTP_REQUEST_TRAILERS: u32 = 1;
  export const HTTP_RESPONSE_HEADERS: u32 = 2;
  export const HTTP_RESPONSE_TRAILERS: u32 = 3;
}

export namespace BufferType {
  export const HTTP_REQUEST_BODY: u32 = 0;
  export const HTTP_RESPONSE_BODY: u32 = 1;
  export const VM_CONFIGURATION: u32 = 6;
  export const PLUGIN_CONFIGURATION: u32 = 7;
}

export const NO_GRPC_STATUS: u32 = 0xffffffff;

// ---------------------------------------------------------------------- host calls

@external("env", "proxy_log")
export declare function proxy_log(level: u32, message: usize, size: usize): u32;

@external("env", "proxy_get_buffer_bytes")
export declare function proxy_get_buffer_bytes(buffer: u32, start: usize, maxSize: usize, returnData: usize, returnSize: usize): u32;

@external("env", "proxy_get_header_map_value")
export declare function proxy_get_header_map_value(map: u32, key: usize, keySize: usize, returnValue: usize, returnSize: usize): u32;

@external("env", "proxy_add_header_map_value")
export declare function proxy_add_header_map_value(map: u32, key: usize, keySize: usize, value: usize, valueSize: usize): u32;

@external("env", "proxy_replace_header_map_value")
export declare function proxy_replace_header_map_value(map: u32, key: usize, keySize: usize, value: usize, valueSize: usize): u32;

@external("env", "proxy_get_property")
export declare function proxy_get_property(path: usize, pathSize: usize, returnValue: usize, returnSize: usize): u32;

@external("env", "proxy_set_buffer_bytes")
export declare function proxy_set_buffer_bytes(buffer: u32, start: usize, size: usize, data: usize, dataSize: usize): u32;

@external("env", "proxy_get_shared_data")
export declare function proxy_get_shared_data(key: usize, keySize: usize, returnValue: usize, returnSize: usize, returnCas: usize): u32;

@external("env", "proxy_set_shared_data")
export declare function proxy_set_shared_data(key: usize, keySize: usize, value: usize, valueSize: usize, cas: u32): u32;

@external("env", "proxy_http_call")
export declare function proxy_http_call(
  upstream: usize, upstreamSize: usize, headers: usize, headersSize: usize, body: usize, bodySize: usize,
  trailers: usize, trailersSize: usize, timeoutMs: u32, returnCallId: usize): u32;

@external("env", "proxy_send_local_response")
export declare function proxy_send_local_response(
  statusCode: u32, details: usize, detailsSize: usize, body: usize, bodySize: usize,
  headers: usize, headersSize: usize, grpcStatus: u32): u32;

// ----------------------------------------------------------------- module exports

// The host writes every returned value (header values, buffers, properties) into memory
// it asks for here. heap.alloc is the runtime's raw allocator: not garbage-collected, so
// the block stays put until takeBytes() copies it and frees it.
export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size);
}

// The ABI marker: the host refuses a module without it. Never called.
export function proxy_abi_version_0_2_1(): void {}

// `--use abort=lib/proxy_wasm/abort` routes AssemblyScript's abort (failed assertions,
// out-of-bounds accesses, `throw`) here instead of an `env.abort` import the host does
// not provide: log at CRITICAL, then trap.
export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let text = "abort";
  if (message !== null) text += ": " + message;
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  log(LogLevel.CRITICAL, text);
  unreachable();
}

// --------------------------------------------------------------------- helpers

// Return slots (pointer, size, then a u32 for cas / call id) for host calls that hand
// back a value.
const RETURN_DATA: usize = memory.data(12, 4);
const RETURN_SIZE: usize = RETURN_DATA + 4;
const RETURN_U32: usize = RETURN_DATA + 8;

function takeBytes(): ArrayBuffer {
  const ptr = load<u32>(RETURN_DATA) as usize;
  const size = load<u32>(RETURN_SIZE) as i32;
  const out = new ArrayBuffer(size);
  if (size > 0) memory.copy(changetype<usize>(out), ptr, size);
  if (ptr != 0) heap.free(ptr);
  return out;
}

function clearReturn(): void {
  store<u32>(RETURN_DATA, 0);
  store<u32>(RETURN_SIZE, 0);
}

export function log(level: u32, message: string): u32 {
  const bytes = String.UTF8.encode(message);
  return proxy_log(level, changetype<usize>(bytes), bytes.byteLength);
}

// The value of header `key` (lower case) in `map`, or null when absent.
export function getHeader(map: u32, key: string): string | null {
  const k = String.UTF8.encode(key);
  clearReturn();
  const status = proxy_get_header_map_value(map, changetype<usize>(k), k.byteLength, RETURN_DATA, RETURN_SIZE);
  if (status != Status.OK) return null;
  return String.UTF8.decode(takeBytes());
}

export function addHeader(map: u32, key: string, value: string): u32 {
  const k = String.UTF8.encode(key);
  const v = String.UTF8.encode(value);
  return proxy_add_header_map_value(map, changetype<usize>(k), k.byteLength, changetype<usize>(v), v.byteLength);
}

// Up to `maxSize` bytes from `start` of `buffer`, or null with the status in lastStatus.
export let lastStatus: u32 = 0;
export function getBuffer(buffer: u32, start: usize, maxSize: usize): ArrayBuffer | null {
  clearReturn();
  lastStatus = proxy_get_buffer_bytes(buffer, start, maxSize, RETURN_DATA, RETURN_SIZE);
  if (lastStatus != Status.OK) return null;
  return takeBytes();
}

// Replace `size` bytes at `start` of `buffer` with `data` ((0, length) replaces it all).
export function setBuffer(buffer: u32, start: usize, size: usize, data: ArrayBuffer): u32 {
  return proxy_set_buffer_bytes(buffer, start, size, changetype<usize>(data), data.byteLength);
}

// The plugin configuration as text (call from proxy_on_configure with its size).
export function getPluginConfiguration(size: usize): string {
  if (size == 0) return "";
  const bytes = getBuffer(BufferType.PLUGIN_CONFIGURATION, 0, size);
  return bytes === null ? "" : String.UTF8.decode(bytes);
}

// A property by dotted path ("request.path"), sent as the spec's NUL-separated segments.
export function getProperty(dotted: string): string | null {
  const path = String.UTF8.encode(dotted.replaceAll(".", "\0"));
  clearReturn();
  const status = proxy_get_property(changetype<usize>(path), path.byteLength, RETURN_DATA, RETURN_SIZE);
  if (status != Status.OK) return null;
  return String.UTF8.decode(takeBytes());
}

// Serialize header pairs in the spec's map format: count, (key_len, value_len)*, then
// key\0value\0 each. No pairs: an empty map.
export function serializeHeaders(pairs: Array<string[]>): ArrayBuffer {
  const n = pairs.length;
  if (n == 0) return new ArrayBuffer(0);
  const keys = new Array<ArrayBuffer>(n);
  const values = new Array<ArrayBuffer>(n);
  let size = 4 + 8 * n;
  for (let i = 0; i < n; i++) {
    keys[i] = String.UTF8.encode(pairs[i][0]);
    values[i] = String.UTF8.encode(pairs[i][1]);
    size += keys[i].byteLength + values[i].byteLength + 2;
  }
  const out = new ArrayBuffer(size);
  const base = changetype<usize>(out);
  store<u32>(base, n);
  let data = base + 4 + 8 * n;
  for (let i = 0; i < n; i++) {
    store<u32>(base + 4 + 8 * i, keys[i].byteLength);
    store<u32>(base + 8 + 8 * i, values[i].byteLength);
    memory.copy(data, changetype<usize>(keys[i]), keys[i].byteLength);
    data += keys[i].byteLength;
    store<u8>(data++, 0);
    memory.copy(data, changetype<usize>(values[i]), values[i].byteLength);
    data += values[i].byteLength;
    store<u8>(data++, 0);
  }
  return out;
}

// Answer the stream locally; the callback should then return Action.PAUSE.
export function sendLocalResponse(status: u32, details: string, body: string, headers: Array<string[]>): u32 {
  const d = String.UTF8.encode(details);
  const b = String.UTF8.encode(body);
  const h = serializeHeaders(headers);
  return proxy_send_local_response(
    status, changetype<usize>(d), d.byteLength, changetype<usize>(b), b.byteLength,
    changetype<usize>(h), h.byteLength, NO_GRPC_STATUS);
}

// ------------------------------------------------------------------- shared data

// A shared-data read: `value` is null unless status is OK. On NOT_FOUND, RouteIQ's `cas`
// is a create token (setSharedData with it succeeds only while the key is still absent).
export class SharedData {
  constructor(public status: u32, public value: ArrayBuffer | null, public cas: u32) {}
}

export function getSharedData(key: string): SharedData {
  const k = String.UTF8.encode(key);
  clearReturn();
  store<u32>(RETURN_U32, 0);
  const status = proxy_get_shared_data(changetype<usize>(k), k.byteLength, RETURN_DATA, RETURN_SIZE, RETURN_U32);
  const cas = load<u32>(RETURN_U32);
  return new SharedData(status, status == Status.OK ? takeBytes() : null, cas);
}

// cas 0 writes unconditionally; otherwise the key must still be at that version.
export function setSharedData(key: string, value: ArrayBuffer, cas: u32): u32 {
  const k = String.UTF8.encode(key);
  return proxy_set_shared_data(changetype<usize>(k), k.byteLength, changetype<usize>(value), value.byteLength, cas);
}

// ---------------------------------------------------------------------- callouts

// Start an HTTP callout (headers must carry :method, :path, :authority). Returns the
// status; on OK the call id is in lastCallId and the answer arrives at
// proxy_on_http_call_response.
export let lastCallId: u32 = 0;
export function httpCall(upstream: string, headers: Array<string[]>, body: ArrayBuffer, timeoutMs: u32): u32 {
  const u = String.UTF8.encode(upstream);
  const h = serializeHeaders(headers);
  store<u32>(RETURN_U32, 0);
  const status = proxy_http_call(
    changetype<usize>(u), u.byteLength, changetype<usize>(h), h.byteLength, changetype<usize>(body), body.byteLength,
    0, 0, timeoutMs, RETURN_U32);
  if (status == Status.OK) lastCallId = load<u32>(RETURN_U32);
  return status;
}
