//! Safe wrappers over the WASI `wasi_snapshot_preview1` subset that
//! proxy-wasm v0.2.1 hosts provide. Errors are raw `wasi_errno_t` values
//! (see [`crate::types::errno`]).

use crate::sys;

/// Writes `data` to `fd` (1 = stdout -> host INFO log, 2 = stderr -> host
/// ERROR log). Returns the number of bytes the host reports as written.
pub fn fd_write(fd: u32, data: &[u8]) -> Result<usize, u32> {
    let iov = sys::CioVec {
        buf: data.as_ptr(),
        buf_len: data.len(),
    };
    let mut written: usize = 0;
    let rc = unsafe { sys::fd_write(fd, &iov, 1, &mut written) };
    if rc == 0 {
        Ok(written)
    } else {
        Err(rc)
    }
}

/// Clock 0 = REALTIME, 1 = MONOTONIC; nanoseconds.
pub fn clock_time_get(clock_id: u32) -> Result<u64, u32> {
    let mut t: u64 = 0;
    let rc = unsafe { sys::clock_time_get(clock_id, 1, &mut t) };
    if rc == 0 {
        Ok(t)
    } else {
        Err(rc)
    }
}

/// Fills `buf` with host randomness.
pub fn random_get(buf: &mut [u8]) -> Result<(), u32> {
    let rc = unsafe { sys::random_get(buf.as_mut_ptr(), buf.len()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(rc)
    }
}

/// `environ_sizes_get`: (number of variables, total buffer size).
pub fn environ_sizes_get() -> Result<(usize, usize), u32> {
    let mut count: usize = 0;
    let mut size: usize = 0;
    let rc = unsafe { sys::environ_sizes_get(&mut count, &mut size) };
    if rc == 0 {
        Ok((count, size))
    } else {
        Err(rc)
    }
}

/// Reads all environment variables as raw `NAME=VALUE` byte strings
/// (without the trailing NUL). Pointers written by the host are checked to
/// lie inside the buffer the SDK allocated; entries outside are skipped.
pub fn environ_get() -> Result<Vec<Vec<u8>>, u32> {
    let (count, size) = environ_sizes_get()?;
    let mut ptrs: Vec<*mut u8> = vec![std::ptr::null_mut(); count];
    // +1 so that the buffer pointer is never dangling, even for size 0.
    let mut buf: Vec<u8> = vec![0u8; size + 1];
    let rc = unsafe { sys::environ_get(ptrs.as_mut_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(rc);
    }
    let base = buf.as_ptr() as usize;
    let mut out = Vec::with_capacity(count);
    for p in ptrs {
        let addr = p as usize;
        if addr < base || addr >= base + size {
            continue;
        }
        let start = addr - base;
        let rest = &buf[start..size];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        out.push(rest[..end].to_vec());
    }
    Ok(out)
}

/// Reads all environment variables split at the first `=` (lossy UTF-8).
pub fn environ() -> Result<Vec<(String, String)>, u32> {
    Ok(environ_get()?
        .into_iter()
        .map(|e| {
            let s = String::from_utf8_lossy(&e).into_owned();
            match s.find('=') {
                Some(i) => (s[..i].to_string(), s[i + 1..].to_string()),
                None => (s, String::new()),
            }
        })
        .collect())
}
