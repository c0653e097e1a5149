//! Every instruction-set path gives byte-identical chunks, and the per-column
//! functions give the chunk's values: forced path by path and compared with
//! the scalar path on many chunks, seeds and parameter sets, far out too.

use worldloom_worldgen::noise::{Fractal, fbm_on};
use worldloom_worldgen::{CHUNK_SIZE, Chunk, ChunkCoord, Generator, Isa, Params};

fn encode(c: &Chunk) -> Vec<u8> {
    postcard::to_stdvec(c).unwrap()
}

fn worlds() -> Vec<(u64, Params)> {
    let d = Params::default();
    vec![
        (42, d),
        (0, d),
        (u64::MAX, Params { octaves: 12, lacunarity: 3.7, persistence: 0.9, frequency: 0.05, ..d }),
        (7, Params { sea_level: 150.0, height_scale: 1200.0, climate_scale: 16.0, warp_strength: 4000.0, ..d }),
        (99, Params { octaves: 1, frequency: 0.5, warp_strength: 0.0, ridge_strength: 2.0, feature_density: 4.0, ..d }),
        (5, Params { frequency: 0.000_01, climate_scale: 1_000_000.0, feature_density: 0.0, ..d }),
        (123, Params { sea_level: -2000.0, height_scale: 8000.0, persistence: 0.0, lacunarity: 1.0, ..d }),
    ]
}

fn coords() -> Vec<ChunkCoord> {
    let mut v = vec![
        ChunkCoord::new(0, 0),
        ChunkCoord::new(-1, -1),
        ChunkCoord::new(3, -4),
        ChunkCoord::new(-77, 250),
        // |x| = 10^7 columns and the coordinate bounds.
        ChunkCoord::new(312_500, -312_500),
        ChunkCoord::new(-312_501, 312_499),
        ChunkCoord::new(1 << 24, -(1 << 24)),
    ];
    v.extend((0..6).map(|i| ChunkCoord::new(i * 37 - 100, 11 - i * 53)));
    v
}

#[test]
fn every_isa_path_gives_byte_identical_chunks() {
    let paths = Isa::available();
    assert!(paths.contains(&Isa::Scalar) && paths.contains(&Isa::Baseline));
    eprintln!("paths on this machine: {:?}", paths.iter().map(|i| i.name()).collect::<Vec<_>>());
    for (seed, p) in worlds() {
        let scalar = Generator::new(seed, &p).with_isa(Isa::Scalar);
        for c in coords() {
            let reference = encode(&scalar.chunk(c));
            for &isa in &paths {
                let g = Generator::new(seed, &p).with_isa(isa);
                assert_eq!(
                    encode(&g.chunk(c)),
                    reference,
                    "{} differs from scalar: seed {seed} chunk {c} {p:?}",
                    isa.name()
                );
            }
        }
    }
}

/// The staged pipeline (terrain, then climate, then features) and a climate
/// run over a modified height layer agree across paths too.
#[test]
fn every_isa_path_agrees_on_staged_and_modified_chunks() {
    let p = Params::default();
    let scalar = Generator::new(8, &p).with_isa(Isa::Scalar);
    for c in coords() {
        let mut reference = scalar.terrain(c);
        for (i, h) in reference.layers.height.iter_mut().enumerate() {
            *h = (*h * 0.5) + (i as f32) - 300.0;
        }
        let base = reference.clone();
        scalar.climate(&mut reference);
        scalar.features(&mut reference);
        for isa in Isa::available() {
            let g = Generator::new(8, &p).with_isa(isa);
            let mut chunk = base.clone();
            g.climate(&mut chunk);
            g.features(&mut chunk);
            assert_eq!(encode(&chunk), encode(&reference), "{} on chunk {c}", isa.name());
            let mut staged = g.terrain(c);
            g.climate(&mut staged);
            g.features(&mut staged);
            assert_eq!(staged, g.chunk(c), "staged == chunk() on {}", isa.name());
        }
    }
}

#[test]
fn every_isa_path_gives_identical_fbm_bits() {
    let f = Fractal { octaves: 7, lacunarity: 2.1, persistence: 0.55 };
    let xs: Vec<f64> = (0..1031).map(|i| f64::from(i) * 0.37 - 150.0 + if i % 3 == 0 { 2.0e7 } else { 0.0 }).collect();
    let zs: Vec<f64> = (0..1031).map(|i| f64::from(i % 61) * -0.91 + 0.5).collect();
    let run = |isa| {
        let mut out = vec![0.0; xs.len()];
        fbm_on(isa, 3, f, &mut xs.clone(), &mut zs.clone(), &mut out);
        out.iter().map(|v| v.to_bits()).collect::<Vec<u64>>()
    };
    let reference = run(Isa::Scalar);
    for isa in Isa::available() {
        assert_eq!(run(isa), reference, "{}", isa.name());
    }
}

/// The per-column functions an overview uses give the chunk's columns bit for bit.
#[test]
fn sampled_columns_equal_chunk_columns() {
    for (seed, p) in worlds() {
        let g = Generator::new(seed, &p);
        for c in coords() {
            let chunk = g.chunk(c);
            let (ox, oz) = c.origin();
            for i in (0..CHUNK_SIZE * CHUNK_SIZE).step_by(7) {
                let (wx, wz) = (ox + (i / CHUNK_SIZE) as i64, oz + (i % CHUNK_SIZE) as i64);
                let (h, cl) = g.column_at(wx, wz);
                assert_eq!(h.to_bits(), chunk.layers.height[i].to_bits(), "seed {seed} {c} column {i}");
                assert_eq!((g.height_at(wx, wz) as f32).to_bits(), h.to_bits());
                assert_eq!(cl.temperature.to_bits(), chunk.layers.temperature[i].to_bits());
                assert_eq!(cl.moisture.to_bits(), chunk.layers.moisture[i].to_bits());
                assert_eq!(cl.biome, chunk.layers.biome[i]);
            }
        }
    }
}

/// Far from the origin (|x| = 10^7 columns and the coordinate bound) the
/// terrain still varies smoothly and chunk seams hold: f64 keeps the
/// fractional part of every noise coordinate there.
#[test]
fn far_out_terrain_is_smooth_and_seamless() {
    let p = Params::default();
    let g = Generator::new(3, &p);
    let last = CHUNK_SIZE - 1;
    for (cx, cz) in [(312_500, 0), (-312_500, 312_499), (0, -312_501), ((1 << 24) - 1, -(1 << 24))] {
        let here = g.chunk(ChunkCoord::new(cx, cz));
        let east = g.chunk(ChunkCoord::new(cx + 1, cz));
        let south = g.chunk(ChunkCoord::new(cx, cz + 1));
        let distinct: std::collections::BTreeSet<u32> = here.layers.height.iter().map(|h| h.to_bits()).collect();
        assert!(distinct.len() > 900, "terrain at ({cx},{cz}) has only {} distinct heights", distinct.len());
        let mut max_inside = 0f32;
        for x in 0..last {
            for z in 0..CHUNK_SIZE {
                let d = (here.layers.height[(x + 1) * CHUNK_SIZE + z] - here.layers.height[x * CHUNK_SIZE + z]).abs();
                max_inside = max_inside.max(d);
            }
        }
        for k in 0..CHUNK_SIZE {
            let across = (east.layers.height[k] - here.layers.height[last * CHUNK_SIZE + k]).abs();
            assert!(across <= max_inside * 2.0 + 1.0, "seam east of ({cx},{cz}): {across} vs {max_inside}");
            let across_z = (south.layers.height[k * CHUNK_SIZE] - here.layers.height[k * CHUNK_SIZE + last]).abs();
            assert!(across_z <= max_inside * 2.0 + 2.0, "seam south of ({cx},{cz}): {across_z}");
        }
    }
}

/// The batched per-column sampler gives `column_at`'s bits on every path.
#[test]
fn batched_columns_equal_single_columns_on_every_path() {
    let mut columns: Vec<(i64, i64)> = (0..1500i64).map(|i| (i * 37 - 20_000, 13 - i * i % 9_999)).collect();
    columns.extend([(10_000_000, -10_000_000), (-(1 << 29), 1 << 29), (0, 0), (-1, -1)]);
    for (seed, p) in worlds() {
        let single: Vec<_> = columns.iter().map(|&(x, z)| Generator::new(seed, &p).column_at(x, z)).collect();
        for isa in Isa::available() {
            let batch = Generator::new(seed, &p).with_isa(isa).columns_at(&columns);
            assert_eq!(batch.len(), single.len());
            for (k, (b, s)) in batch.iter().zip(&single).enumerate() {
                assert_eq!(b.0.to_bits(), s.0.to_bits(), "{} seed {seed} column {:?}", isa.name(), columns[k]);
                assert_eq!(b.1, s.1, "{} seed {seed} column {:?}", isa.name(), columns[k]);
            }
        }
    }
}
