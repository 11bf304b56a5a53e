//! ABI enums of proxy-wasm v0.2.1, with the numeric values of the spec
//! (`abi-versions/v0.2.1/README.md`, section "Types").

/// `proxy_status_t`. Not a C-like enum because hosts may return codes the
/// spec does not list; those are kept verbatim in [`Status::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 0
    Ok,
    /// 1
    NotFound,
    /// 2
    BadArgument,
    /// 3
    SerializationFailure,
    /// 4
    ParseFailure,
    /// 6
    InvalidMemoryAccess,
    /// 7
    Empty,
    /// 8
    CasMismatch,
    /// 10
    InternalFailure,
    /// 12
    Unimplemented,
    /// Any other value returned by the host.
    Other(u32),
}

impl Status {
    pub const OK: u32 = 0;
    pub const NOT_FOUND: u32 = 1;
    pub const BAD_ARGUMENT: u32 = 2;
    pub const SERIALIZATION_FAILURE: u32 = 3;
    pub const PARSE_FAILURE: u32 = 4;
    pub const INVALID_MEMORY_ACCESS: u32 = 6;
    pub const EMPTY: u32 = 7;
    pub const CAS_MISMATCH: u32 = 8;
    pub const INTERNAL_FAILURE: u32 = 10;
    pub const UNIMPLEMENTED: u32 = 12;

    /// Maps a raw `proxy_status_t` to a `Status`.
    pub fn from_code(code: u32) -> Status {
        match code {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::BadArgument,
            3 => Status::SerializationFailure,
            4 => Status::ParseFailure,
            6 => Status::InvalidMemoryAccess,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            10 => Status::InternalFailure,
            12 => Status::Unimplemented,
            other => Status::Other(other),
        }
    }

    /// The raw `proxy_status_t` value.
    pub fn code(self) -> u32 {
        match self {
            Status::Ok => 0,
            Status::NotFound => 1,
            Status::BadArgument => 2,
            Status::SerializationFailure => 3,
            Status::ParseFailure => 4,
            Status::InvalidMemoryAccess => 6,
            Status::Empty => 7,
            Status::CasMismatch => 8,
            Status::InternalFailure => 10,
            Status::Unimplemented => 12,
            Status::Other(c) => c,
        }
    }

    /// `Ok(())` for status 0, `Err(status)` otherwise.
    pub fn check(code: u32) -> Result<(), Status> {
        if code == 0 {
            Ok(())
        } else {
            Err(Status::from_code(code))
        }
    }
}

/// `proxy_action_t`
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

/// `proxy_log_level_t`
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub fn from_u32(v: u32) -> Option<LogLevel> {
        match v {
            0 => Some(LogLevel::Trace),
            1 => Some(LogLevel::Debug),
            2 => Some(LogLevel::Info),
            3 => Some(LogLevel::Warn),
            4 => Some(LogLevel::Error),
            5 => Some(LogLevel::Critical),
            _ => None,
        }
    }
}

/// `proxy_buffer_type_t`
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferType {
    HttpRequestBody = 0,
    HttpResponseBody = 1,
    DownstreamData = 2,
    UpstreamData = 3,
    HttpCallResponseBody = 4,
    GrpcCallMessage = 5,
    VmConfiguration = 6,
    PluginConfiguration = 7,
    ForeignFunctionArguments = 8,
}

/// `proxy_map_type_t`
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    HttpRequestHeaders = 0,
    HttpRequestTrailers = 1,
    HttpResponseHeaders = 2,
    HttpResponseTrailers = 3,
    GrpcCallInitialMetadata = 4,
    GrpcCallTrailingMetadata = 5,
    HttpCallResponseHeaders = 6,
    HttpCallResponseTrailers = 7,
}

/// `proxy_peer_type_t`
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerType {
    Unknown = 0,
    Local = 1,
    Remote = 2,
}

/// `proxy_stream_type_t`
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamType {
    HttpRequest = 0,
    HttpResponse = 1,
    Downstream = 2,
    Upstream = 3,
}

/// `proxy_metric_type_t`
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

/// `wasi_errno_t` values named by the proxy-wasm spec.
pub mod errno {
    pub const SUCCESS: u32 = 0;
    pub const BADF: u32 = 8;
    pub const FAULT: u32 = 21;
    pub const INVAL: u32 = 28;
    pub const NOTSUP: u32 = 58;
}

/// `wasi_clock_id_t`
pub mod clock {
    pub const REALTIME: u32 = 0;
    pub const MONOTONIC: u32 = 1;
}

/// `wasi_fd_id_t`
pub mod fd {
    pub const STDOUT: u32 = 1;
    pub const STDERR: u32 = 2;
}
