//! Standard base64 (RFC 4648 §4, padded), the encoding qemu-ga uses for a command's standard
//! input and captured output. A dependency for forty lines is not worth it.

use anyhow::{Result, bail};

/// Decodes padded standard base64. Line breaks are not accepted: qemu-ga never inserts them.
pub fn decode(text: &str) -> Result<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        bail!(
            "base64 text has {} characters, not a multiple of 4",
            bytes.len()
        );
    }
    let mut decoded = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.chunks_exact(4);
    let last_quad = quads.len().saturating_sub(1);
    for (index, quad) in quads.enumerate() {
        let padding = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 || (padding > 0 && index != last_quad) {
            bail!("misplaced '=' padding in base64 text");
        }
        let mut group = 0u32;
        for &symbol in &quad[..4 - padding] {
            group = group << 6 | u32::from(sextet(symbol)?);
        }
        group <<= 6 * padding;
        let [_, high, middle, low] = group.to_be_bytes();
        decoded.extend_from_slice(&[high, middle, low][..3 - padding]);
    }
    Ok(decoded)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `bytes` as padded standard base64, without line breaks.
pub fn encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        for position in 0..4 {
            if position <= chunk.len() {
                let index = (bits >> (18 - 6 * position)) & 0x3f;
                text.push(char::from(ALPHABET[index as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

fn sextet(symbol: u8) -> Result<u8> {
    Ok(match symbol {
        b'A'..=b'Z' => symbol - b'A',
        b'a'..=b'z' => symbol - b'a' + 26,
        b'0'..=b'9' => symbol - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => bail!("{:?} is not a base64 character", char::from(symbol)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4648_test_vectors() {
        for (encoded, plain) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ] {
            assert_eq!(decode(encoded).unwrap(), plain.as_bytes(), "{encoded}");
            assert_eq!(encode(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn every_byte_value_survives_a_round_trip() {
        let bytes: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        assert_eq!(
            encode(&[0, 1, 2, 3, 4, 5, 0xfb, 0xfc, 0xfd, 0xfe, 0xff]),
            "AAECAwQF+/z9/v8="
        );
        assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
    }

    #[test]
    fn both_ends_of_the_alphabet_decode() {
        // GNU base64's encoding of these bytes: 'A'..'F' and '+', '/', '9', 'v' all appear.
        let decoded = decode("AAECAwQF+/z9/v8=").unwrap();
        assert_eq!(decoded, [0, 1, 2, 3, 4, 5, 0xfb, 0xfc, 0xfd, 0xfe, 0xff]);
    }

    #[test]
    fn captured_command_output_with_newlines() {
        // What qemu-ga returned for `systemctl is-system-running` printing "running\n".
        assert_eq!(decode("cnVubmluZwo=").unwrap(), b"running\n");
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in [
            "Zg=",
            "Zg=a",
            "Z===",
            "Zg==Zg==",
            "Zm9v\nYmFy",
            "Zm9-",
            "Zm9v YmFy",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
