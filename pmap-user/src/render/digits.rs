//! Numbers appended to a byte buffer as `printf` would print them, without going through
//! `core::fmt`: dumps and event lines print hundreds of thousands of them.

/// Number of lowercase hex digits of `value` (1 for 0).
pub fn hex_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(4)
}

/// Number of decimal digits of `value` (1 for 0).
pub fn dec_len(value: u64) -> usize {
    value
        .checked_ilog10()
        .map_or(1, |digits| digits as usize + 1)
}

/// `%0*lx`: lowercase hex, zero-padded to `width`.
pub fn push_hex(out: &mut Vec<u8>, value: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let len = hex_len(value);
    out.resize(out.len() + width.saturating_sub(len), b'0');
    let at = out.len();
    out.resize(at + len, 0);
    let mut rest = value;
    for slot in out[at..].iter_mut().rev() {
        *slot = DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
    }
}

/// `0x` and lowercase hex, zero included (`0x0`), as Rust's `{:#x}` prints it.
pub fn push_prefixed_hex(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(b"0x");
    push_hex(out, value, 0);
}

/// `%*lu`: decimal, right-justified in `width` with spaces.
pub fn push_dec(out: &mut Vec<u8>, value: u64, width: usize) {
    push_decimal(out, value, width, b' ');
}

/// `%0*lu`: decimal, zero-padded to `width`.
pub fn push_dec_zero_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    push_decimal(out, value, width, b'0');
}

fn push_decimal(out: &mut Vec<u8>, value: u64, width: usize, fill: u8) {
    let len = dec_len(value);
    out.resize(out.len() + width.saturating_sub(len), fill);
    let at = out.len();
    out.resize(at + len, 0);
    let mut rest = value;
    for slot in out[at..].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

/// `%ld`.
pub fn push_signed(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_dec(out, value.unsigned_abs(), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: [u64; 12] = [
        0,
        1,
        9,
        10,
        15,
        16,
        99,
        100,
        0xfff,
        0x1000,
        u64::MAX / 10,
        u64::MAX,
    ];

    fn text(fill: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = b"<".to_vec();
        fill(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_print_as_format_prints_them() {
        let powers = (0..64).map(|shift| 1u64 << shift);
        let near_powers = (1..20).map(|exp| 10u64.pow(exp)).flat_map(|p| [p - 1, p]);
        for value in VALUES.into_iter().chain(powers).chain(near_powers) {
            assert_eq!(hex_len(value), format!("{value:x}").len(), "{value}");
            assert_eq!(dec_len(value), value.to_string().len(), "{value}");
            for width in [0, 1, 8, 16, 25] {
                assert_eq!(
                    text(|o| push_hex(o, value, width)),
                    format!("<{value:0width$x}")
                );
                assert_eq!(
                    text(|o| push_dec(o, value, width)),
                    format!("<{value:>width$}")
                );
                assert_eq!(
                    text(|o| push_dec_zero_padded(o, value, width)),
                    format!("<{value:0width$}")
                );
            }
            assert_eq!(
                text(|o| push_prefixed_hex(o, value)),
                format!("<{value:#x}")
            );
            let signed = value as i64;
            assert_eq!(text(|o| push_signed(o, signed)), format!("<{signed}"));
        }
        assert_eq!(text(|o| push_signed(o, i64::MIN)), format!("<{}", i64::MIN));
    }
}
