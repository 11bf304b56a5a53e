//! # hostile_tool — an MCP tool that misbehaves on request (sandbox tests)
//!
//! Input `{"mode": ...}`:
//! * `"loop"` never returns (the host's fuel or deadline must stop it);
//! * `"trap"` executes `unreachable`;
//! * `"kv"` writes shared data without asking for `shared_kv` in its manifest
//!   (the host must refuse the call; the tool answers `{"status": <status>}`);
//! * `"memory"` allocates 1 MiB blocks until its memory limit stops it;
//! * `"config"` answers `{"config": <its configuration>}` (which must be JSON);
//! * `"echo"` (or anything else) answers `{"status": 0}` (the VM still serves
//!   after a hostile call).
//! Capabilities: none.

use routeiq_guest::config_json::{object_members, Value};
use std::ptr::{addr_of_mut, read_volatile, write_volatile};

routeiq_guest::manifest!(
    r#"{"name": "hostile_tool", "version": "0.1.0", "description": "Loops, traps or oversteps its grant, as asked (sandbox tests).",
  "capabilities": [],
  "input_schema": {"type": "object", "properties": {"mode": {"enum": ["loop", "trap", "kv", "memory", "config", "echo"]}}, "required": ["mode"]}}"#
);

static mut SPIN: u64 = 0;

fn run(input: &[u8]) -> Result<String, String> {
    let mut mode = String::new();
    for (key, v) in object_members(input) {
        if let ("mode", Value::Str(s)) = (key.as_str(), v) {
            mode = s;
        }
    }
    match mode.as_str() {
        "loop" => loop {
            unsafe {
                let p = addr_of_mut!(SPIN);
                write_volatile(p, read_volatile(p).wrapping_add(1));
            }
        },
        "trap" => core::arch::wasm32::unreachable(),
        "memory" => {
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                held.push(vec![1u8; 1 << 20]);
                unsafe { write_volatile(addr_of_mut!(SPIN), held.len() as u64) };
            }
        }
        "config" => {
            let config = routeiq_guest::tool::config();
            Ok(format!("{{\"config\": {}}}", String::from_utf8_lossy(&config)))
        }
        "kv" => {
            let (key, value) = ("stolen", b"1");
            let status = unsafe { routeiq_guest::sys::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), 0) };
            Ok(format!("{{\"status\": {}}}", status))
        }
        _ => Ok(String::from("{\"status\": 0}")),
    }
}

routeiq_guest::tool!(run);
