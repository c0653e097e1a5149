//! Generation parameters: documented defaults, ranges and validation.

use serde::{Deserialize, Serialize};

/// One documented parameter: what it means, its default and its accepted range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ParamSpec {
    /// JSON field name.
    pub name: &'static str,
    /// Value used when a world does not set it.
    pub default: f64,
    /// Smallest accepted value (inclusive).
    pub min: f64,
    /// Largest accepted value (inclusive).
    pub max: f64,
    /// Whether only whole numbers are accepted.
    pub integer: bool,
    /// Unit of the value.
    pub unit: &'static str,
    /// What the parameter does.
    pub doc: &'static str,
}

/// Every generation parameter, in the order they are documented.
pub const PARAM_SPECS: &[ParamSpec] = &[
    ParamSpec {
        name: "sea_level",
        default: 0.0,
        min: -2000.0,
        max: 2000.0,
        integer: false,
        unit: "m",
        doc: "Water surface height; columns below it are ocean.",
    },
    ParamSpec {
        name: "height_scale",
        default: 600.0,
        min: 1.0,
        max: 8000.0,
        integer: false,
        unit: "m",
        doc: "Vertical scale of the terrain: the largest hills rise about this far.",
    },
    ParamSpec {
        name: "frequency",
        default: 0.002,
        min: 0.000_01,
        max: 0.5,
        integer: false,
        unit: "1/column",
        doc: "Base noise frequency; landmasses are about 1/frequency columns across.",
    },
    ParamSpec {
        name: "octaves",
        default: 6.0,
        min: 1.0,
        max: 12.0,
        integer: true,
        unit: "",
        doc: "Number of noise octaves summed (more octaves, finer detail).",
    },
    ParamSpec {
        name: "lacunarity",
        default: 2.0,
        min: 1.0,
        max: 4.0,
        integer: false,
        unit: "",
        doc: "Frequency multiplier from one octave to the next.",
    },
    ParamSpec {
        name: "persistence",
        default: 0.5,
        min: 0.0,
        max: 1.0,
        integer: false,
        unit: "",
        doc: "Amplitude multiplier from one octave to the next (roughness).",
    },
    ParamSpec {
        name: "climate_scale",
        default: 2048.0,
        min: 16.0,
        max: 1_000_000.0,
        integer: false,
        unit: "columns",
        doc: "Size of climate zones: distance over which temperature and moisture change.",
    },
    ParamSpec {
        name: "warp_strength",
        default: 80.0,
        min: 0.0,
        max: 4000.0,
        integer: false,
        unit: "columns",
        doc: "Domain-warp displacement that bends coastlines and ridges.",
    },
    ParamSpec {
        name: "ridge_strength",
        default: 0.6,
        min: 0.0,
        max: 2.0,
        integer: false,
        unit: "",
        doc: "Weight of ridged mountain ranges on high ground.",
    },
    ParamSpec {
        name: "feature_density",
        default: 1.0,
        min: 0.0,
        max: 4.0,
        integer: false,
        unit: "",
        doc: "Multiplier on how many trees, rocks and other features are scattered.",
    },
];

/// Validated generation parameters with every default filled in.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub sea_level: f64,
    pub height_scale: f64,
    pub frequency: f64,
    pub octaves: u32,
    pub lacunarity: f64,
    pub persistence: f64,
    pub climate_scale: f64,
    pub warp_strength: f64,
    pub ridge_strength: f64,
    pub feature_density: f64,
}

impl Default for Params {
    fn default() -> Self {
        ParamsPatch::default().resolve().expect("defaults are valid")
    }
}

/// Parameters as a client sends them: any subset, unknown names rejected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamsPatch {
    pub sea_level: Option<f64>,
    pub height_scale: Option<f64>,
    pub frequency: Option<f64>,
    pub octaves: Option<f64>,
    pub lacunarity: Option<f64>,
    pub persistence: Option<f64>,
    pub climate_scale: Option<f64>,
    pub warp_strength: Option<f64>,
    pub ridge_strength: Option<f64>,
    pub feature_density: Option<f64>,
}

/// A parameter that is out of range or of the wrong kind.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("params.{field}: {message}")]
pub struct ParamError {
    /// The offending field, e.g. `octaves`.
    pub field: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

fn spec(name: &str) -> &'static ParamSpec {
    PARAM_SPECS.iter().find(|s| s.name == name).expect("every field has a spec")
}

fn check(name: &'static str, value: Option<f64>) -> Result<f64, ParamError> {
    let s = spec(name);
    let Some(v) = value else { return Ok(s.default) };
    let err = |message: String| ParamError { field: name, message };
    if !v.is_finite() {
        return Err(err(format!("must be a finite number, got {v}")));
    }
    if s.integer && v.fract() != 0.0 {
        return Err(err(format!("must be a whole number, got {v}")));
    }
    if v < s.min || v > s.max {
        return Err(err(format!("must be between {} and {}, got {v}", s.min, s.max)));
    }
    Ok(v)
}

impl ParamsPatch {
    /// Fills in defaults and checks every value against its [`ParamSpec`].
    pub fn resolve(self) -> Result<Params, ParamError> {
        Ok(Params {
            sea_level: check("sea_level", self.sea_level)?,
            height_scale: check("height_scale", self.height_scale)?,
            frequency: check("frequency", self.frequency)?,
            octaves: check("octaves", self.octaves)? as u32,
            lacunarity: check("lacunarity", self.lacunarity)?,
            persistence: check("persistence", self.persistence)?,
            climate_scale: check("climate_scale", self.climate_scale)?,
            warp_strength: check("warp_strength", self.warp_strength)?,
            ridge_strength: check("ridge_strength", self.ridge_strength)?,
            feature_density: check("feature_density", self.feature_density)?,
        })
    }
}

impl Params {
    /// Re-checks already resolved parameters (e.g. read back from storage).
    pub fn validate(&self) -> Result<(), ParamError> {
        ParamsPatch::from(*self).resolve().map(|_| ())
    }
}

impl From<Params> for ParamsPatch {
    fn from(p: Params) -> Self {
        ParamsPatch {
            sea_level: Some(p.sea_level),
            height_scale: Some(p.height_scale),
            frequency: Some(p.frequency),
            octaves: Some(f64::from(p.octaves)),
            lacunarity: Some(p.lacunarity),
            persistence: Some(p.persistence),
            climate_scale: Some(p.climate_scale),
            warp_strength: Some(p.warp_strength),
            ridge_strength: Some(p.ridge_strength),
            feature_density: Some(p.feature_density),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_default_is_within_its_range() {
        for s in PARAM_SPECS {
            assert!(s.min <= s.default && s.default <= s.max, "{}", s.name);
        }
        assert_eq!(PARAM_SPECS.len(), 10);
    }

    #[test]
    fn empty_patch_gives_documented_defaults() {
        let p = ParamsPatch::default().resolve().unwrap();
        assert_eq!(p.octaves, 6);
        assert_eq!(p.height_scale, 600.0);
        assert_eq!(p, Params::default());
    }

    #[test]
    fn out_of_range_value_names_the_field() {
        let patch = ParamsPatch { octaves: Some(40.0), ..Default::default() };
        let e = patch.resolve().unwrap_err();
        assert_eq!(e.field, "octaves");
        assert!(e.to_string().contains("between 1 and 12"), "{e}");
    }

    #[test]
    fn fractional_octaves_and_non_finite_values_are_rejected() {
        let e = ParamsPatch { octaves: Some(2.5), ..Default::default() }.resolve().unwrap_err();
        assert!(e.message.contains("whole number"));
        let e = ParamsPatch { persistence: Some(f64::NAN), ..Default::default() }.resolve().unwrap_err();
        assert_eq!(e.field, "persistence");
    }
}
