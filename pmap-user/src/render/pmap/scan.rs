//! The C library behaviour pmap's output depends on: `fgets` into its fixed line buffer, the
//! `sscanf` conversions it uses, and the C locale's `isspace`/`isprint`.

/// `fgets(mapbuf, 1024, …)` returns at most this many bytes; the rest of a longer line comes back
/// as the next record.
pub(super) const FGETS_MAX: usize = 1023;

/// The records successive `fgets` calls return for `text`.
pub(super) fn fgets_records(mut text: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if text.is_empty() {
            return None;
        }
        let window = &text[..text.len().min(FGETS_MAX)];
        let len = window
            .iter()
            .position(|&b| b == b'\n')
            .map_or(window.len(), |i| i + 1);
        let (record, rest) = text.split_at(len);
        text = rest;
        Some(record)
    })
}

/// pmap's `static char mapbuf[1024]`. `fgets` overwrites only as many bytes as it reads, plus a
/// terminator, so bytes past the terminator are what longer lines left there; in `-x` mode pmap
/// prints a mapping's name through a pointer into this buffer after later lines were read into it.
pub(super) struct LineBuffer {
    bytes: [u8; FGETS_MAX + 1],
}

impl LineBuffer {
    pub(super) fn new() -> LineBuffer {
        LineBuffer {
            bytes: [0; FGETS_MAX + 1],
        }
    }

    /// `fgets` returning `record`.
    pub(super) fn load(&mut self, record: &[u8]) {
        self.bytes[..record.len()].copy_from_slice(record);
        self.bytes[record.len()] = 0;
    }

    /// The C string at the start of the buffer.
    pub(super) fn line(&self) -> &[u8] {
        self.line_at(0)
    }

    /// The C string starting at `offset`.
    pub(super) fn line_at(&self, offset: usize) -> &[u8] {
        let rest = &self.bytes[offset..];
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// pmap's clean-up of a mapping line before it names the mapping: the line ends at its first
    /// newline, and every byte that is not printable becomes `?`.
    pub(super) fn clean_line(&mut self) {
        let len = self.line().len();
        let line = &mut self.bytes[..len];
        if let Some(newline) = line.iter().position(|&b| b == b'\n') {
            line[newline] = 0;
        }
        for b in line.iter_mut().take_while(|b| **b != 0) {
            if !is_c_print(*b) {
                *b = b'?';
            }
        }
    }
}

/// `isspace` in the C and UTF-8 locales.
pub(super) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `isprint` in the C and UTF-8 locales (bytes above ASCII are not characters on their own).
pub(super) fn is_c_print(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// `strtoul(text, NULL, 16)` of a string of hex digits: `ULONG_MAX` when it overflows.
pub(super) fn hex_value(digits: &[u8]) -> u64 {
    digits
        .iter()
        .try_fold(0u64, |v, &d| {
            let digit = char::from(d).to_digit(16)?;
            v.checked_mul(16)?.checked_add(digit.into())
        })
        .unwrap_or(u64::MAX)
}

/// The unread rest of a C string, for the glibc `sscanf` conversions pmap uses. Each conversion
/// returns `None` where `sscanf` would stop converting.
pub(super) struct Input<'a>(pub(super) &'a [u8]);

impl<'a> Input<'a> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn bump(&mut self) {
        self.0 = &self.0[1..];
    }

    /// A white-space directive: skips any amount of white space, including none.
    pub(super) fn skip_space(&mut self) {
        while self.peek().is_some_and(is_c_space) {
            self.bump();
        }
    }

    /// An ordinary character of the format.
    pub(super) fn literal(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.bump())
    }

    /// Ordinary characters of the format, one after the other.
    pub(super) fn literals(&mut self, text: &[u8]) -> Option<()> {
        text.iter().try_for_each(|&c| self.literal(c))
    }

    /// `%Ns`: white space skipped, then up to `max` bytes that are not white space, at least one.
    pub(super) fn word(&mut self, max: usize) -> Option<&'a [u8]> {
        self.skip_space();
        self.set(max, |b| !is_c_space(b))
    }

    /// `%N[…]`: up to `max` bytes in the set, at least one; no white space is skipped.
    pub(super) fn set(&mut self, max: usize, member: impl Fn(u8) -> bool) -> Option<&'a [u8]> {
        let len = self.0.iter().take(max).take_while(|&&b| member(b)).count();
        if len == 0 {
            return None;
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(taken)
    }

    /// `%31s` into pmap's `char perms[32]`: the word and its terminator are stored, and the bytes
    /// after the terminator keep their old values.
    pub(super) fn word_into(&mut self, dst: &mut [u8; 32]) -> Option<()> {
        let word = self.word(31)?;
        dst[..word.len()].copy_from_slice(word);
        dst[word.len()] = 0;
        Some(())
    }

    /// An integer conversion without width: optional sign, a `0x` prefix in base 16 (glibc
    /// consumes the `x` even when no digit follows), digits. The value is `strtoul`'s: negated
    /// modulo 2^64 after a `-`, `u64::MAX` on overflow whatever the sign.
    pub(super) fn number(&mut self, base: u32) -> Option<u64> {
        self.skip_space();
        let negative = match self.peek()? {
            b'-' => true,
            b'+' => false,
            _ => return Some(self.magnitude(base)?.unwrap_or(u64::MAX)),
        };
        self.bump();
        Some(
            self.magnitude(base)?
                .map_or(u64::MAX, |v| if negative { v.wrapping_neg() } else { v }),
        )
    }

    /// The digits' value, `Some(None)` when it overflows, `None` when there is no digit.
    fn magnitude(&mut self, base: u32) -> Option<Option<u64>> {
        let mut any_digit = false;
        if self.peek() == Some(b'0') {
            self.bump();
            any_digit = true;
            if base == 16 && matches!(self.peek(), Some(b'x' | b'X')) {
                self.bump();
            }
        }
        let mut value = Some(0u64);
        while let Some(digit) = self.peek().and_then(|c| char::from(c).to_digit(base)) {
            self.bump();
            any_digit = true;
            value = value.and_then(|v| v.checked_mul(base.into())?.checked_add(digit.into()));
        }
        any_digit.then_some(value)
    }

    /// `%c`: any one byte.
    pub(super) fn byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.bump();
        Some(b)
    }
}

/// Appends `text` right-justified in `width` bytes, as `printf("%*s")` does (never truncated).
pub(super) fn pad_left(out: &mut Vec<u8>, text: &[u8], width: usize) {
    out.resize(out.len() + width.saturating_sub(text.len()), b' ');
    out.extend_from_slice(text);
}

/// Appends `text` left-justified in `width` bytes, as `printf("%-*s")` does.
pub(super) fn pad_right(out: &mut Vec<u8>, text: &[u8], width: usize) {
    out.extend_from_slice(text);
    out.resize(out.len() + width.saturating_sub(text.len()), b' ');
}

/// pmap's `justify_print`: a heading padded to `width` (widened to fit) and a space, or the
/// heading and a newline when the width is below 1. Returns the width used.
pub(super) fn justify_print(out: &mut Vec<u8>, text: &[u8], width: usize, right: bool) -> usize {
    if width < 1 {
        out.extend_from_slice(text);
        out.push(b'\n');
        return width;
    }
    let width = width.max(text.len());
    if right {
        pad_left(out, text, width);
    } else {
        pad_right(out, text, width);
    }
    out.push(b' ');
    width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fgets_splits_lines_at_1023_bytes() {
        let mut text = vec![b'a'; 2500];
        text.push(b'\n');
        text.extend_from_slice(b"short\n");
        let lens: Vec<usize> = fgets_records(&text).map(<[u8]>::len).collect();
        assert_eq!(lens, [1023, 1023, 455, 6]);
    }

    #[test]
    fn the_line_buffer_keeps_what_shorter_lines_do_not_overwrite() {
        let mut buf = LineBuffer::new();
        buf.load(b"0123456789 /usr/lib/libc.so.6\n");
        buf.clean_line();
        buf.load(b"Swap:    0 kB\n");
        assert_eq!(buf.line(), b"Swap:    0 kB\n");
        assert_eq!(buf.line_at(20), b"libc.so.6");
        assert_eq!(buf.line_at(1), b"wap:    0 kB\n");
    }

    #[test]
    fn cleaning_ends_the_line_and_masks_unprintable_bytes() {
        let mut buf = LineBuffer::new();
        buf.load(b"a\tb\xc3\xa9\x7fc\n");
        buf.clean_line();
        assert_eq!(buf.line(), b"a?b???c");
    }

    #[test]
    fn sets_words_and_literals_convert_as_sscanf_does() {
        let mut input = Input(b"  7f00-zz VmFlags:");
        assert_eq!(input.set(20, |b| b.is_ascii_hexdigit()), None);
        assert_eq!(input.word(2), Some(&b"7f"[..]));
        assert_eq!(input.set(3, |b| b != b'-'), Some(&b"00"[..]));
        assert_eq!(input.literal(b'-'), Some(()));
        assert_eq!(input.byte(), Some(b'z'));
        assert_eq!(input.literals(b"zV"), None);
        assert_eq!(hex_value(b"ffffffffffffffff"), u64::MAX);
        assert_eq!(hex_value(b"10000000000000000"), u64::MAX);
        assert_eq!(hex_value(b"7f00"), 0x7f00);
    }

    #[test]
    fn headings_widen_to_fit_and_a_zero_width_ends_the_line() {
        let mut out = Vec::new();
        assert_eq!(justify_print(&mut out, b"Address", 16, false), 16);
        assert_eq!(justify_print(&mut out, b"Kbytes", 3, true), 6);
        assert_eq!(justify_print(&mut out, b"Mapping", 0, false), 0);
        assert_eq!(out, b"Address          Kbytes Mapping\n");
    }
}
