//! Incremental Server-Sent-Events counter (pure code).
//!
//! Counts complete events that carried data: an event is a group of lines
//! terminated by an empty line (`"\n\n"`); it is counted when that blank
//! line arrives and at least one of its lines starts with `data:`. `\r`
//! bytes are ignored, so `\r\n` line endings work too (a lone `\r` is not a
//! line terminator). State persists across chunks, so lines, `data:`
//! prefixes and `"\n\n"` terminators may be split anywhere.

#[derive(Default)]
pub struct SseCounter {
    /// First bytes (max 5) of the current line.
    prefix: [u8; 5],
    prefix_len: usize,
    /// Length of the current line (saturating; only `== 0` matters).
    line_len: usize,
    /// Current event has at least one `data:` line.
    event_has_data: bool,
    pub events: u64,
}

impl SseCounter {
    pub fn feed(&mut self, chunk: &[u8]) {
        for &c in chunk {
            match c {
                b'\r' => {}
                b'\n' => {
                    if self.line_len == 0 {
                        if self.event_has_data {
                            self.events += 1;
                        }
                        self.event_has_data = false;
                    } else if self.prefix_len == 5 && &self.prefix == b"data:" {
                        self.event_has_data = true;
                    }
                    self.line_len = 0;
                    self.prefix_len = 0;
                }
                _ => {
                    if self.prefix_len < 5 {
                        self.prefix[self.prefix_len] = c;
                        self.prefix_len += 1;
                    }
                    self.line_len = self.line_len.saturating_add(1);
                }
            }
        }
    }
}
