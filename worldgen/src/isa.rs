//! Instruction-set paths of the chunk kernels, chosen at run time.
//!
//! The kernels are plain Rust loops over structure-of-arrays slices, marked
//! `#[inline(always)]`, so each path below is the same source compiled with
//! different target features (the compiler vectorises it to the path's
//! width). Rust gives every floating-point operation its exact IEEE-754
//! meaning whatever the target features: it never contracts `a * b + c`
//! into a fused multiply-add and never reassociates, so every path yields
//! the same bits; `worldgen/tests/isa.rs` checks it on many chunks.

/// One code path of the chunk kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Column by column through the per-column functions
    /// ([`crate::Generator::height_at`], [`crate::Generator::climate_at`]):
    /// no batch, nothing to vectorise.
    Scalar,
    /// Whole-chunk batches compiled for the target's baseline (SSE2 on x86-64).
    Baseline,
    /// Whole-chunk batches compiled with SSE4.1 (x86-64).
    Sse41,
    /// Whole-chunk batches compiled with AVX2 (x86-64).
    Avx2,
    /// Whole-chunk batches compiled with AVX-512 F/DQ/VL (x86-64).
    Avx512,
}

impl Isa {
    /// Every path, slowest first.
    pub const ALL: [Isa; 5] = [Isa::Scalar, Isa::Baseline, Isa::Sse41, Isa::Avx2, Isa::Avx512];

    /// Short name for reports and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Baseline if cfg!(target_arch = "x86_64") => "sse2",
            Isa::Baseline => "baseline",
            Isa::Sse41 => "sse4.1",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this machine can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar | Isa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Sse41 => std::arch::is_x86_feature_detected!("sse4.1"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The paths this machine can run, slowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The fastest path this machine can run (what [`crate::Generator::new`] uses).
    pub fn best() -> Isa {
        [Isa::Avx512, Isa::Avx2, Isa::Sse41].into_iter().find(|i| i.is_available()).unwrap_or(Isa::Baseline)
    }
}

/// A batch kernel: its `run` is `#[inline(always)]`, so it is compiled
/// inside each of the target-feature functions below.
pub(crate) trait Kernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// Runs a kernel on a batch path. `isa` must be available (checked where a
/// [`crate::Generator`] takes it); [`Isa::Scalar`] runs the baseline build.
#[inline]
pub(crate) fn run<K: Kernel>(isa: Isa, k: K) -> K::Output {
    debug_assert!(isa.is_available());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has these features (Generator::with_isa checked them).
        Isa::Sse41 => unsafe { x86::sse41(k) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::avx2(k) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx512 => unsafe { x86::avx512(k) },
        _ => k.run(),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Kernel;

    #[target_feature(enable = "sse4.1")]
    pub(super) fn sse41<K: Kernel>(k: K) -> K::Output {
        k.run()
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn avx2<K: Kernel>(k: K) -> K::Output {
        k.run()
    }

    #[target_feature(enable = "avx512f,avx512dq,avx512vl")]
    pub(super) fn avx512<K: Kernel>(k: K) -> K::Output {
        k.run()
    }
}
