//! Bounded collection of a container's output.

use std::collections::VecDeque;

/// How much of each stream the worker reports: the last 100 000 characters, like iexec-common's
/// `ComputeLogs` (Java counts UTF-16 units; this counts Unicode scalar values, which is the same
/// for ASCII output).
pub const MAX_LOG_CHARS: usize = 100_000;

/// The longest UTF-8 encoding of one character.
const MAX_UTF8_BYTES: usize = 4;

/// Keeps only the end of a byte stream, so an app that floods its output cannot exhaust the
/// node's memory: at most `max_chars` characters' worth of bytes are held at any time.
pub struct LogTail {
    bytes: VecDeque<u8>,
    max_chars: usize,
    byte_budget: usize,
}

impl LogTail {
    /// A tail that will yield at most `max_chars` characters.
    pub fn new(max_chars: usize) -> Self {
        // Enough bytes for `max_chars` four-byte characters, plus the three bytes of a character
        // the cut may have split, which decoding turns into replacement characters.
        let byte_budget = max_chars
            .saturating_mul(MAX_UTF8_BYTES)
            .saturating_add(MAX_UTF8_BYTES - 1);
        Self {
            bytes: VecDeque::new(),
            max_chars,
            byte_budget,
        }
    }

    /// Appends a chunk of output, forgetting the oldest bytes beyond the budget.
    pub fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.byte_budget)..];
        self.bytes.extend(chunk);
        let excess = self.bytes.len().saturating_sub(self.byte_budget);
        self.bytes.drain(..excess);
    }

    /// The last `max_chars` characters, invalid UTF-8 replaced by U+FFFD.
    pub fn into_string(mut self) -> String {
        let text = String::from_utf8_lossy(self.bytes.make_contiguous());
        let char_count = text.chars().count();
        text.chars()
            .skip(char_count.saturating_sub(self.max_chars))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(chunks: &[&[u8]], max_chars: usize) -> String {
        let mut tail = LogTail::new(max_chars);
        for chunk in chunks {
            tail.push(chunk);
        }
        tail.into_string()
    }

    #[test]
    fn short_output_is_kept_whole() {
        assert_eq!(tail_of(&[b"hello ", b"world\n"], 100), "hello world\n");
        assert_eq!(tail_of(&[], 100), "");
    }

    #[test]
    fn long_output_keeps_the_last_characters() {
        let lines: Vec<String> = (0..1000).map(|i| format!("line {i:04}\n")).collect();
        let chunks: Vec<&[u8]> = lines.iter().map(|line| line.as_bytes()).collect();
        let tail = tail_of(&chunks, 20);
        assert_eq!(tail, "line 0998\nline 0999\n");
    }

    #[test]
    fn one_huge_chunk_is_cut_too() {
        let mut chunk = vec![b'x'; 1_000_000];
        chunk.extend_from_slice(b"END");
        assert_eq!(tail_of(&[&chunk], 5), "xxEND");
    }

    #[test]
    fn multibyte_characters_count_as_one_and_are_not_split() {
        // 'é' is 2 bytes, '∑' 3, '🦀' 4: a byte-based cut would break them.
        let text = "é∑🦀".repeat(100);
        let tail = tail_of(&[text.as_bytes()], 7);
        assert_eq!(tail, "🦀é∑🦀é∑🦀");
    }

    #[test]
    fn four_byte_characters_fill_the_whole_quota() {
        let text = "🦀".repeat(50);
        let tail = tail_of(&[text.as_bytes()], 10);
        assert_eq!(tail, "🦀".repeat(10));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        assert_eq!(
            tail_of(&[b"ok \xff\xfe end"], 100),
            "ok \u{fffd}\u{fffd} end"
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let mut tail = LogTail::new(10);
        for _ in 0..10_000 {
            tail.push(b"0123456789abcdef");
        }
        assert!(tail.bytes.len() < 11 * MAX_UTF8_BYTES);
    }
}
