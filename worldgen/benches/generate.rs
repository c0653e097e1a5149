//! Throughput of the generation core alone: chunks per second.
//!
//! `cargo bench -p worldloom-worldgen`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use worldloom_worldgen::{ChunkCoord, Generator, Params};

fn core(c: &mut Criterion) {
    let g = Generator::new(42, &Params::default());
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));
    let mut i = 0i32;
    group.bench_function("chunk (all stages)", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(g.chunk(ChunkCoord::new(i % 97, i / 97)))
        })
    });
    // Stage benches use the land chunk with the most features near the origin.
    let land = (0..200)
        .map(|i| ChunkCoord::new(i * 7, -i * 3))
        .max_by_key(|c| g.chunk(*c).features.len())
        .expect("candidates");
    group.bench_function("terrain stage", |b| b.iter(|| black_box(g.terrain(land))));
    let terrain = g.terrain(land);
    group.bench_function("climate + biome stage", |b| {
        b.iter(|| {
            let mut c = terrain.clone();
            g.climate(&mut c);
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
    group.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
