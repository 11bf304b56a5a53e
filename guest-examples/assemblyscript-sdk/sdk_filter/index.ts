// sdk_filter: a RouteIQ filter written with the public AssemblyScript proxy-wasm SDK,
// @solo-io/proxy-runtime 0.1.8 (ABI 0.2.0), used unmodified from node_modules.
//
//  - root context (on_configure): keeps the plugin configuration, a plain string
//    (e.g. `config: blue`; a mapping arrives as its JSON text).
//  - request headers: `x-sdk-deny` present (any value) -> local response 403 with body
//    {"error":{"message":"denied by sdk_filter","type":"forbidden"}}; otherwise adds
//    request header `x-sdk-filter: <configuration>`.
//  - request body: buffers until end_of_stream, then reads the whole body and keeps its
//    length (needs capability request_body).
//  - response headers: adds `x-sdk-seen: 1` and `x-sdk-body-bytes: <n>` (0 without a body).
//
// Build: docs/guide-assemblyscript.md (asc 0.17, --use abort=abort_proc_exit); routeiq
// build-guests writes build/sdk_filter.wasm and its sidecar build/sdk_filter.manifest.json.
export * from "@solo-io/proxy-runtime/proxy"; // the proxy_on_* exports, malloc, the ABI marker
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, FilterDataStatusValues,
  GrpcStatusValues, HeaderPair, LogLevelValues, log, send_local_response, stream_context,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

const DENY_BODY = '{"error":{"message":"denied by sdk_filter","type":"forbidden"}}';

class SdkFilterRoot extends RootContext {
  config: string = "";

  // Not the SDK's RootContext.onConfigure: in 0.1.8 it calls
  //   proxy_get_buffer_bytes(PluginConfiguration, 0, size, &buffer, size)
  // i.e. it passes the configuration *size* where the spec wants a pointer for the
  // returned size. A spec host writes the length to address `size` (linear memory low
  // addresses or, for configurations over ~1 KiB, the module's static data), and the SDK
  // then trusts a stale length from an earlier call: with root_id "" (our default) the
  // configuration reads as "". The SDK's own get_buffer_bytes passes both pointers right.
  onConfigure(configuration_size: u32): bool {
    const bytes = get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size);
    this.config = String.UTF8.decode(bytes);
    log(LogLevelValues.info, "sdk_filter: configuration=" + this.config);
    return true;
  }

  createContext(context_id: u32): Context {
    return new SdkFilter(context_id, this);
  }
}

class SdkFilter extends Context {
  root: SdkFilterRoot;
  bodyBytes: u32 = 0;

  constructor(context_id: u32, root_context: SdkFilterRoot) {
    super(context_id, root_context);
    this.root = root_context;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    // Presence, not value: the SDK's get() answers "" both for a missing header and for
    // an empty value, so look through the pairs.
    const pairs = stream_context.headers.request.get_headers();
    let deny = false;
    for (let i = 0; i < pairs.length; i++) {
      if (String.UTF8.decode(pairs[i].key) == "x-sdk-deny") deny = true;
    }
    if (deny) {
      const headers: HeaderPair[] = [
        new HeaderPair(String.UTF8.encode("content-type"), String.UTF8.encode("application/json")),
      ];
      send_local_response(403, "denied by sdk_filter", String.UTF8.encode(DENY_BODY), headers, GrpcStatusValues.InvalidCode);
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.add("x-sdk-filter", this.root.config);
    return FilterHeadersStatusValues.Continue;
  }

  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) {
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    const body = get_buffer_bytes(BufferTypeValues.HttpRequestBody, 0, body_buffer_length as u32);
    this.bodyBytes = body.byteLength;
    log(LogLevelValues.info, "sdk_filter: request body bytes=" + this.bodyBytes.toString());
    return FilterDataStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-sdk-seen", "1");
    stream_context.headers.response.add("x-sdk-body-bytes", this.bodyBytes.toString());
    return FilterHeadersStatusValues.Continue;
  }
}

// The SDK picks the factory by the plugin's root_id (property plugin_root_id).
registerRootContext((context_id: u32) => { return new SdkFilterRoot(context_id); }, "sdk_filter");
registerRootContext((context_id: u32) => { return new SdkFilterRoot(context_id); }, "");
