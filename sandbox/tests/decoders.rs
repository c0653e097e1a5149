//! Property tests of the decoders of bytes that come back from untrusted
//! code: the guest's result frame (`WLO1`, status, body), the hook result
//! bodies (terrain and biome layers, the features JSON), the load manifest,
//! and the frames a (possibly compromised) sandbox worker sends its
//! supervisor. Arbitrary bytes never panic them: each gives a value or a
//! plugin error; an accepted result satisfies every documented bound.
//!
//! The default run is bounded (512 cases per property, a few seconds);
//! `WORLDLOOM_FUZZ_CASES=100000 cargo test -p worldloom-sandbox --test decoders`
//! is the long run.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::Config;
use worldloom_plugin_abi::frame::{OUTPUT_MAGIC, STATUS_ERROR, STATUS_OK};
use worldloom_plugin_abi::{ErrorKind, HookInput, HookName, HookOutput, LayerBuffers, Limits};
use worldloom_sandbox::proto::{self, Response};
use worldloom_sandbox::validate::{self, Phase};

/// Cases per property: `WORLDLOOM_FUZZ_CASES` (or `PROPTEST_CASES`), else 512.
fn config() -> Config {
    let cases = ["WORLDLOOM_FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(512);
    Config { cases, failure_persistence: None, ..Config::default() }
}

const BIOMES: u16 = 13;

fn input(hook: HookName, size: u32) -> HookInput {
    let n = (size * size) as usize;
    HookInput {
        hook,
        seed: 1,
        cx: 0,
        cz: 0,
        size,
        random_seed: 2,
        sea_level: 0.0,
        params: BTreeMap::new(),
        layers: LayerBuffers {
            height: vec![0.0; n],
            temperature: vec![0.0; n],
            moisture: vec![0.0; n],
            biome: vec![0; n],
        },
    }
}

fn hook() -> impl Strategy<Value = HookName> {
    prop_oneof![Just(HookName::Terrain), Just(HookName::Biome), Just(HookName::Features)]
}

/// Checks an accepted hook result against every bound the host promises.
fn check_accepted(out: &HookOutput, size: u32, limits: &Limits) -> Result<(), TestCaseError> {
    let n = (size * size) as usize;
    match out {
        HookOutput::Terrain(t) => {
            prop_assert_eq!(t.height.len(), n);
            prop_assert!(t.height.iter().all(|h| h.is_finite()));
        }
        HookOutput::Biome(b) => {
            prop_assert_eq!(b.biome.len(), n);
            prop_assert!(b.biome.iter().all(|&id| id < BIOMES));
        }
        HookOutput::Features(f) => {
            prop_assert!(f.len() <= limits.max_features as usize);
            for feature in f {
                prop_assert!(feature.x < size && feature.z < size);
                prop_assert!(feature.properties.len() <= limits.max_feature_properties as usize);
            }
        }
    }
    Ok(())
}

/// JSON-ish text: bytes drawn mostly from the characters feature lists are made of.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = br#"[]{}:,"0123456789-.eE xzkindtreuflsa_\u"#.to_vec();
    proptest::collection::vec(proptest::sample::select(alphabet), 0..200)
}

/// A features result built from plausible parts, in range or not.
fn features_json() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| if v.is_finite() { format!("{v:?}") } else { "1e999".into() }),
        "\\PC{0,70}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("null".to_string()),
        Just("[1, 2]".to_string()),
        Just("true".to_string()),
    ];
    let key = prop_oneof![
        Just("x".to_string()),
        Just("z".to_string()),
        Just("kind".to_string()),
        "[a-z_]{1,70}",
        "\\PC{0,8}"
    ];
    let feature = proptest::collection::vec((key, value), 0..20).prop_map(|pairs| {
        let body: Vec<String> =
            pairs.iter().map(|(k, v)| format!("{}: {v}", serde_json::to_string(k).unwrap())).collect();
        format!("{{{}}}", body.join(", "))
    });
    proptest::collection::vec(feature, 0..8).prop_map(|fs| format!("[{}]", fs.join(", ")).into_bytes())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_result_frames_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        status in prop_oneof![Just(STATUS_OK), Just(STATUS_ERROR), any::<u8>()],
        magic in any::<bool>(),
        load in any::<bool>(),
    ) {
        let mut frame = if magic { OUTPUT_MAGIC.to_vec() } else { body.iter().take(4).copied().collect() };
        frame.push(status);
        frame.extend_from_slice(&body);
        let phase = if load { Phase::Load } else { Phase::Call };
        match validate::result_frame(&frame, phase) {
            Ok(ok) => prop_assert!(magic && status == STATUS_OK && ok == body),
            Err(e) => {
                // The guest can never claim a limit only the host decides.
                prop_assert!(!matches!(e.kind, ErrorKind::Timeout | ErrorKind::FuelExhausted | ErrorKind::OutputLimit), "{e:?}");
                prop_assert!(!e.transient);
            }
        }
        // Guest error reports built from plausible JSON too.
        let mut report = OUTPUT_MAGIC.to_vec();
        report.push(STATUS_ERROR);
        report.extend_from_slice(format!(r#"{{"kind": {:?}, "message": {:?}, "line": 3}}"#,
            String::from_utf8_lossy(&body), String::from_utf8_lossy(&body)).as_bytes());
        let e = validate::result_frame(&report, phase).unwrap_err();
        prop_assert!(!matches!(e.kind, ErrorKind::Timeout | ErrorKind::FuelExhausted | ErrorKind::OutputLimit));
    }

    #[test]
    fn arbitrary_hook_results_never_panic_and_accepted_ones_are_in_bounds(
        hook in hook(),
        size in 1u32..=8,
        raw in prop_oneof![proptest::collection::vec(any::<u8>(), 0..600), jsonish(), features_json()],
    ) {
        let limits = Limits { max_features: 4, max_feature_properties: 3, max_feature_string: 16, ..Limits::default() };
        let input = input(hook, size);
        if let Ok(out) = validate::hook_output(hook, &raw, &input, BIOMES, &limits) {
            check_accepted(&out, size, &limits)?;
        }
    }

    #[test]
    fn well_sized_layers_are_accepted_exactly_when_every_value_is_valid(
        size in 1u32..=8,
        heights in proptest::collection::vec(any::<f32>(), 64),
        biomes in proptest::collection::vec(0u16..20, 64),
    ) {
        let n = (size * size) as usize;
        let limits = Limits::default();
        let mut raw = Vec::new();
        worldloom_plugin_abi::frame::put_f32s(&mut raw, &heights[..n]);
        let ok = validate::hook_output(HookName::Terrain, &raw, &input(HookName::Terrain, size), BIOMES, &limits).is_ok();
        prop_assert_eq!(ok, heights[..n].iter().all(|h| h.is_finite()));
        let mut raw = Vec::new();
        worldloom_plugin_abi::frame::put_u16s(&mut raw, &biomes[..n]);
        let ok = validate::hook_output(HookName::Biome, &raw, &input(HookName::Biome, size), BIOMES, &limits).is_ok();
        prop_assert_eq!(ok, biomes[..n].iter().all(|&b| b < BIOMES));
    }

    #[test]
    fn arbitrary_load_manifests_never_panic(raw in prop_oneof![proptest::collection::vec(any::<u8>(), 0..400), jsonish()]) {
        let _ = validate::manifest(&raw);
        let wrapped = format!(r#"{{"hooks": ["terrain"], "params": {}, "warnings": []}}"#, String::from_utf8_lossy(&raw));
        let _ = validate::manifest(wrapped.as_bytes());
    }

    #[test]
    fn arbitrary_worker_frames_never_panic_the_supervisors_reader(
        len in prop_oneof![0u32..2048, any::<u32>()],
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let r = proto::read_frame::<Response>(&mut bytes.as_slice());
        if (len as usize) > proto::MAX_FRAME {
            prop_assert!(r.is_err(), "an oversized length is refused before reading");
        }
    }
}

#[test]
fn a_valid_worker_frame_reads_back() {
    let mut bytes = Vec::new();
    proto::write_frame(&mut bytes, &Response::HostError("x".into())).unwrap();
    assert!(matches!(proto::read_frame::<Response>(&mut bytes.as_slice()), Ok(Response::HostError(s)) if s == "x"));
}
