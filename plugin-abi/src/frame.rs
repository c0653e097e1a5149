//! Byte layout of the frames that cross the host/guest boundary.
//!
//! All integers and floats are little-endian. Layers are raw buffers of
//! `size * size` values in `[x][z]` order, never per-value JSON.
//!
//! Source (host -> guest, while loading), answered to `_host.call(b"src")`:
//! the plugin's UTF-8 source text.
//!
//! Input (host -> guest), answered to the guest's `_host.call(b"in")`; a
//! fixed binary header (`struct` format `<4sBBHIQiiQdIIII`, 60 bytes), the
//! hook's parameters, the layers:
//! ```text
//! "WLI3" | hook: u8 (0 terrain, 1 biome, 2 features) | 0u8 | biome_count: u16 | size: u32
//!        | seed: u64 | cx: i32 | cz: i32 | random_seed: u64 | sea_level: f64
//!        | max_features: u32 | max_feature_properties: u32 | max_feature_string: u32
//!        | params_len: u32 | params: UTF-8 JSON object (absent, params_len 0, when there are none)
//!        | height: f32 x n | temperature: f32 x n | moisture: f32 x n | biome: u16 x n
//! ```
//! Result (guest -> host), sent as `_host.call(b"out" + frame)`:
//! ```text
//! "WLO1" | status: u8 (0 ok, 1 error) | body
//!   ok, terrain:  f32 x n          ok, biome: u16 x n
//!   ok, features: UTF-8 JSON array of {x, z, kind, ...properties}
//!   ok, load:     UTF-8 JSON {hooks: [...], params: {...}}
//!   error:        UTF-8 JSON {kind, message, line}
//! ```

/// Magic prefix of an input frame.
pub const INPUT_MAGIC: &[u8; 4] = b"WLI3";
/// Length of an input frame's fixed header, magic included (the
/// parameters follow it).
pub const INPUT_HEADER_LEN: usize = 60;
/// Magic prefix of a result frame.
pub const OUTPUT_MAGIC: &[u8; 4] = b"WLO1";
/// Result status: the hook returned a value.
pub const STATUS_OK: u8 = 0;
/// Result status: the load or hook failed; the body is a JSON error.
pub const STATUS_ERROR: u8 = 1;
/// Door request: the guest asks for its input frame.
pub const DOOR_INPUT: &[u8] = b"in";
/// Door request, while loading: the guest asks for the plugin's source.
pub const DOOR_SOURCE: &[u8] = b"src";
/// Door request prefix: the guest hands over its result frame.
pub const DOOR_OUTPUT: &[u8] = b"out";

/// Appends `values` as little-endian `f32`.
pub fn put_f32s(buf: &mut Vec<u8>, values: &[f32]) {
    buf.reserve(values.len() * 4);
    for v in values {
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends `values` as little-endian `u16`.
pub fn put_u16s(buf: &mut Vec<u8>, values: &[u16]) {
    buf.reserve(values.len() * 2);
    for v in values {
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads exactly `n` little-endian `f32` values; `None` if the length is wrong.
pub fn get_f32s(bytes: &[u8], n: usize) -> Option<Vec<f32>> {
    (bytes.len() == n.checked_mul(4)?)
        .then(|| bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Reads exactly `n` little-endian `u16` values; `None` if the length is wrong.
pub fn get_u16s(bytes: &[u8], n: usize) -> Option<Vec<u16>> {
    (bytes.len() == n.checked_mul(2)?)
        .then(|| bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_buffers_round_trip_and_reject_wrong_lengths() {
        let mut b = Vec::new();
        put_f32s(&mut b, &[1.5, -2.0, f32::MAX]);
        assert_eq!(get_f32s(&b, 3), Some(vec![1.5, -2.0, f32::MAX]));
        assert_eq!(get_f32s(&b, 2), None);
        assert_eq!(get_f32s(&b[..11], 3), None);
        let mut b = Vec::new();
        put_u16s(&mut b, &[0, 7, u16::MAX]);
        assert_eq!(get_u16s(&b, 3), Some(vec![0, 7, u16::MAX]));
        assert_eq!(get_u16s(&b, usize::MAX), None);
    }
}
