//! Throughput of the generation core alone: chunks per second, per stage,
//! per instruction-set path, against the core before issue 10 and against a
//! baseline fBm from the `noise` crate, all in the same run.
//!
//! `cargo bench -p worldloom-worldgen --bench generate`

mod legacy;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use noise::{Fbm, MultiFractal, NoiseFn, Perlin};
use worldloom_worldgen::noise::{Fractal, fbm_on};
use worldloom_worldgen::{CHUNK_SIZE, ChunkCoord, Generator, Isa, Params};

/// The 1,024 points of the chunk at (3, -4) in noise space at the default
/// base frequency (what the terrain fBm's first octave sees).
fn fbm_points() -> (Vec<f64>, Vec<f64>) {
    let f = Params::default().frequency;
    let (mut xs, mut zs) = (Vec::new(), Vec::new());
    for x in 0..CHUNK_SIZE {
        for z in 0..CHUNK_SIZE {
            xs.push((96.0 + x as f64 + 12_345.5) * f);
            zs.push((-128.0 + z as f64 + 54_321.25) * f);
        }
    }
    (xs, zs)
}

fn terrain_fractal() -> Fractal {
    let p = Params::default();
    Fractal { octaves: p.octaves, lacunarity: p.lacunarity, persistence: p.persistence }
}

fn noise_crate_fbm() -> Fbm<Perlin> {
    let p = Params::default();
    Fbm::<Perlin>::new(42)
        .set_octaves(p.octaves as usize)
        .set_frequency(1.0)
        .set_lacunarity(p.lacunarity)
        .set_persistence(p.persistence)
}

fn chunks(c: &mut Criterion) {
    let p = Params::default();
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));
    let legacy = legacy::LegacyGenerator::new(42, &p);
    let mut i = 0i32;
    group.bench_function("chunk (all stages), before issue 10", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(legacy.chunk(ChunkCoord::new(i % 97, i / 97)))
        })
    });
    for isa in Isa::available() {
        let g = Generator::new(42, &p).with_isa(isa);
        let mut i = 0i32;
        group.bench_function(format!("chunk (all stages), {}", isa.name()), |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(g.chunk(ChunkCoord::new(i % 97, i / 97)))
            })
        });
    }
    let g = Generator::new(42, &p);
    let mut i = 0i32;
    group.bench_function("chunk (all stages) far out, |x| = 10^7 columns", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(g.chunk(ChunkCoord::new(312_500 + i % 97, -312_500 + i / 97)))
        })
    });
    // Stage benches use the land chunk with the most features near the origin
    // (chosen with the current core; the legacy core runs the same chunk).
    let land = (0..200)
        .map(|i| ChunkCoord::new(i * 7, -i * 3))
        .max_by_key(|c| g.chunk(*c).features.len())
        .expect("candidates");
    let high = (0..200)
        .map(|i| ChunkCoord::new(i * 7, -i * 3))
        .max_by_key(|c| g.terrain(*c).layers.height.iter().map(|h| *h as i64).sum::<i64>())
        .expect("candidates");
    for (name, coord) in [("land chunk", land), ("highland chunk", high)] {
        group.bench_function(format!("terrain stage, {name}"), |b| b.iter(|| black_box(g.terrain(coord))));
        group.bench_function(format!("terrain stage, {name}, before issue 10"), |b| {
            b.iter(|| black_box(legacy.terrain(coord)))
        });
    }
    let terrain = g.terrain(land);
    group.bench_function("climate + biome stage", |b| {
        b.iter(|| {
            let mut c = terrain.clone();
            g.climate(&mut c);
            black_box(c)
        })
    });
    group.bench_function("climate + biome stage, before issue 10", |b| {
        b.iter(|| {
            let mut c = terrain.clone();
            legacy.climate(&mut c);
            black_box(c)
        })
    });
    let mut climate = terrain.clone();
    g.climate(&mut climate);
    group.bench_function("features stage", |b| {
        b.iter(|| {
            let mut c = climate.clone();
            g.features(&mut c);
            black_box(c)
        })
    });
    group.bench_function("features stage, before issue 10", |b| {
        b.iter(|| {
            let mut c = climate.clone();
            legacy.features(&mut c);
            black_box(c)
        })
    });
    // Per-column sampling (the overview): 1,024 columns 16 apart.
    let columns: Vec<(i64, i64)> = (0..1024i64).map(|i| ((i / 32) * 16 - 300, (i % 32) * 16 + 77)).collect();
    group.throughput(Throughput::Elements(columns.len() as u64));
    group.bench_function("1024 sampled columns, column_at one by one", |b| {
        b.iter(|| black_box(columns.iter().map(|&(x, z)| g.column_at(x, z).0).sum::<f32>()))
    });
    group.bench_function("1024 sampled columns, columns_at batched", |b| b.iter(|| black_box(g.columns_at(&columns))));
    group.finish();
}

fn fbm(c: &mut Criterion) {
    let (xs, zs) = fbm_points();
    let f = terrain_fractal();
    let mut group = c.benchmark_group("fbm 1024 points x 6 octaves");
    group.throughput(Throughput::Elements(xs.len() as u64));
    let baseline = noise_crate_fbm();
    group.bench_function("noise crate Fbm<Perlin> (baseline)", |b| {
        b.iter(|| black_box(xs.iter().zip(&zs).map(|(x, z)| baseline.get([*x, *z])).sum::<f64>()))
    });
    for isa in Isa::available() {
        let mut out = vec![0.0; xs.len()];
        group.bench_function(format!("worldgen fbm, {}", isa.name()), |b| {
            b.iter(|| {
                let (mut x, mut z) = (xs.clone(), zs.clone());
                fbm_on(isa, 42, f, &mut x, &mut z, &mut out);
                black_box(out[0])
            })
        });
    }
    group.finish();
}

/// Median wall time of one call over `rounds` rounds of `n` calls.
fn median(rounds: usize, n: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed() / n as u32
        })
        .collect();
    t.sort();
    t[rounds / 2]
}

/// The ratios the issue asks for, measured back to back (interleaved rounds).
fn ratios(_: &mut Criterion) {
    let p = Params::default();
    let (xs, zs) = fbm_points();
    let f = terrain_fractal();
    let baseline = noise_crate_fbm();
    let g = Generator::new(42, &p);
    let legacy = legacy::LegacyGenerator::new(42, &p);
    let mut out = vec![0.0; xs.len()];
    let coords: Vec<ChunkCoord> = (0..97).map(|i| ChunkCoord::new(i % 13, i / 13)).collect();
    let (mut base, mut ours, mut before, mut after) = (vec![], vec![], vec![], vec![]);
    for _ in 0..15 {
        base.push(median(5, 20, || {
            black_box(xs.iter().zip(&zs).map(|(x, z)| baseline.get([*x, *z])).sum::<f64>());
        }));
        ours.push(median(5, 20, || {
            let (mut x, mut z) = (xs.clone(), zs.clone());
            fbm_on(g.isa(), 42, f, &mut x, &mut z, &mut out);
            black_box(out[0]);
        }));
        before.push(
            median(3, 1, || {
                for c in &coords {
                    black_box(legacy.chunk(*c));
                }
            }) / coords.len() as u32,
        );
        after.push(
            median(3, 1, || {
                for c in &coords {
                    black_box(g.chunk(*c));
                }
            }) / coords.len() as u32,
        );
    }
    for v in [&mut base, &mut ours, &mut before, &mut after] {
        v.sort();
    }
    let m = |v: &Vec<Duration>| v[v.len() / 2].as_secs_f64() * 1e6;
    let (b, o, bc, ac) = (m(&base), m(&ours), m(&before), m(&after));
    println!("ratios (medians of 15 interleaved rounds, path {}):", g.isa().name());
    println!(
        "  fbm 1024 points x 6 octaves: noise crate {b:.2} us, worldgen {o:.2} us, worldgen / noise = {:.3}",
        o / b
    );
    println!("  whole chunk: before issue 10 {bc:.1} us, now {ac:.1} us, speed-up {:.1}x", bc / ac);
    println!("  whole chunk / (noise-crate fBm over 1024 points) = {:.2}", ac / b);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = ratios, chunks, fbm
}
criterion_main!(benches);
