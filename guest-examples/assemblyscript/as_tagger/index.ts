// as_tagger: the Rust `tagger` example, in AssemblyScript with lib/proxy_wasm.ts.
//
// Per request:
//  - Denied when the request carries header `deny_header` (any value, even empty), or
//    its path (`:path`, else the `request.path` property) starts with one of
//    `deny_paths`: local response 403, details `blocked by as_tagger`, header
//    `content-type: application/json`, body
//    {"error":{"message":"blocked by as_tagger","type":"forbidden"}}; returns Pause.
//  - Otherwise adds request header `x-routeiq-tagged: <tag>` and continues.
//  - proxy_on_response_headers adds `x-routeiq-plugin: as_tagger`.
//
// Plugin configuration (JSON object, every key optional; wrong types are ignored, empty
// or invalid JSON means all defaults):
//   {"tag": "as", "deny_header": "x-block", "deny_paths": ["/admin"]}
//
// The manifest is manifest.json beside this file; the build writes it into the module
// as the `routeiq.manifest` custom section (see ../routeiq-manifest-transform.mjs).

import {
  Action, LogLevel, MapType, addHeader, getHeader, getPluginConfiguration, getProperty, log, sendLocalResponse,
} from "../lib/proxy_wasm";
import { getString, getStringArray } from "../lib/json";

export { proxy_abi_version_0_2_1, proxy_on_memory_allocate } from "../lib/proxy_wasm";

const DENY_BODY = '{"error":{"message":"blocked by as_tagger","type":"forbidden"}}';

let tag = "as";
let denyHeader = "x-block";
let denyPaths: string[] = [];

export function proxy_on_context_create(contextId: u32, parentId: u32): void {}

export function proxy_on_vm_start(rootId: u32, vmConfigSize: u32): u32 {
  return 1;
}

export function proxy_on_configure(rootId: u32, configSize: u32): u32 {
  tag = "as";
  denyHeader = "x-block";
  denyPaths = [];
  const config = getPluginConfiguration(configSize);
  if (config.length > 0) {
    const t = getString(config, "tag");
    if (t !== null) tag = t;
    const h = getString(config, "deny_header");
    if (h !== null) denyHeader = asciiLower(h);
    const p = getStringArray(config, "deny_paths");
    if (p !== null) denyPaths = p;
  }
  log(LogLevel.DEBUG, "as_tagger: tag=" + tag + " deny_header=" + denyHeader + " deny_paths=" + denyPaths.join(","));
  return 1;
}

// Header names are looked up in lower case (ASCII only, like Rust's to_ascii_lowercase).
function asciiLower(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c + 0x20 : c);
  }
  return out;
}

function requestPath(): string {
  const path = getHeader(MapType.HTTP_REQUEST_HEADERS, ":path");
  if (path !== null) return path;
  const prop = getProperty("request.path");
  return prop !== null ? prop : "";
}

function denied(): bool {
  if (denyHeader.length > 0 && getHeader(MapType.HTTP_REQUEST_HEADERS, denyHeader) !== null) return true;
  if (denyPaths.length == 0) return false;
  const path = requestPath();
  for (let i = 0; i < denyPaths.length; i++) {
    if (path.startsWith(denyPaths[i])) return true;
  }
  return false;
}

export function proxy_on_request_headers(contextId: u32, numHeaders: u32, endOfStream: u32): u32 {
  if (denied()) {
    sendLocalResponse(403, "blocked by as_tagger", DENY_BODY, [["content-type", "application/json"]]);
    return Action.PAUSE;
  }
  addHeader(MapType.HTTP_REQUEST_HEADERS, "x-routeiq-tagged", tag);
  return Action.CONTINUE;
}

export function proxy_on_response_headers(contextId: u32, numHeaders: u32, endOfStream: u32): u32 {
  addHeader(MapType.HTTP_RESPONSE_HEADERS, "x-routeiq-plugin", "as_tagger");
  return Action.CONTINUE;
}

export function proxy_on_done(contextId: u32): u32 {
  return 1;
}
