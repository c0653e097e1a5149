//! Renders a biome map with hill shading as a binary PPM on stdout.
//!
//! `cargo run -p worldloom-worldgen --example map -- SEED RADIUS > map.ppm`

use worldloom_worldgen::{BIOMES, CHUNK_SIZE, ChunkCoord, Generator, Params};

fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().map_or(1, |s| s.parse().expect("SEED is an integer"));
    let radius: i32 = args.next().map_or(8, |s| s.parse().expect("RADIUS is an integer"));
    let g = Generator::new(seed, &Params::default());
    let side = (2 * radius + 1) as usize * CHUNK_SIZE;
    let mut rgb = vec![0u8; side * side * 3];
    let colour = |hex: &str| -> [f32; 3] {
        let v = u32::from_str_radix(&hex[1..], 16).expect("colour");
        [(v >> 16) as f32, ((v >> 8) & 255) as f32, (v & 255) as f32]
    };
    for cx in -radius..=radius {
        for cz in -radius..=radius {
            let c = g.chunk(ChunkCoord::new(cx, cz));
            for x in 0..CHUNK_SIZE {
                for z in 0..CHUNK_SIZE {
                    let i = x * CHUNK_SIZE + z;
                    let h = c.layers.height[i];
                    let (ox, oz) = c.coord.origin();
                    let west =
                        if x > 0 { c.layers.height[i - CHUNK_SIZE] } else { g.height_at(ox - 1, oz + z as i64) as f32 };
                    let shade = (1.0 + (h - west) * 0.05).clamp(0.6, 1.3);
                    let base = colour(BIOMES[usize::from(c.layers.biome[i])].color);
                    let has_feature = c.features.iter().any(|f| usize::from(f.x) == x && usize::from(f.z) == z);
                    let px = (cx + radius) as usize * CHUNK_SIZE + x;
                    let pz = (cz + radius) as usize * CHUNK_SIZE + z;
                    let o = (pz * side + px) * 3;
                    for k in 0..3 {
                        let v = base[k] * shade * if has_feature { 0.7 } else { 1.0 };
                        rgb[o + k] = v.clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    write!(out, "P6\n{side} {side}\n255\n").expect("stdout");
    out.write_all(&rgb).expect("stdout");
}
