//! A warm sandbox: one plugin loaded and snapshotted, serving hook calls
//! with fresh state each time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use worldloom_plugin_abi::{CallStats, ErrorKind, HookInput, HookName, HookOutput, Limits, PluginError, PluginInfo};

use crate::engine::Engine;
use crate::error::SandboxError;
use crate::host::{Request, rng_for};
use crate::image::{Image, ResetProfile};
use crate::instance::{Live, TurnLimits, TurnSource};
use crate::validate::{self, Phase};
use crate::{Core, ResetStrategy};

/// The outcome of one hook call.
#[derive(Clone, Debug, PartialEq)]
pub struct CallReport {
    pub result: Result<HookOutput, PluginError>,
    /// What the call printed (stdout and stderr, interleaved), at most
    /// `log_bytes`.
    pub log: String,
    pub stats: CallStats,
}

/// A hook call as the sandbox saw it: the result frame's OK body, not yet
/// validated, or the failure.
#[derive(Clone, Debug, PartialEq)]
pub struct RawCall {
    pub result: Result<Vec<u8>, PluginError>,
    pub log: String,
    pub stats: CallStats,
}

/// Where the time of the last call went, measured by the sandbox itself
/// (for the benchmark's breakdown; a few clock reads per call).
#[derive(Clone, Copy, Debug, Default)]
pub struct CallProfile {
    /// Building and checking the input frame (`try_call_raw` only).
    pub frame: Duration,
    /// The guest's turn: harness, hook, result frame (includes the page
    /// faults of first writes).
    pub turn: Duration,
    /// Restoring memory and globals after the call.
    pub reset: Duration,
    /// The reset's parts (Overlay with write tracking only).
    pub reset_parts: ResetProfile,
    /// Classifying the outcome and validating the result body.
    pub validate: Duration,
    /// The turn split at the guest's two door requests: from the turn's
    /// start until its input was answered (the runner compiling the turn's
    /// source, the harness asking), from then until it handed over its
    /// result (the harness and the hook), and from then until the turn
    /// returned. Zero when the guest did not ask or hand over.
    pub turn_parts: [Duration; 3],
    /// The fuel of the same three parts.
    pub turn_fuel: [u64; 3],
}

/// One warm interpreter with a plugin loaded. `Send`; used by one thread at
/// a time. After every call (success or failure) it is restored to the
/// snapshot taken right after the plugin loaded.
pub struct Sandbox {
    core: Arc<Core>,
    wasmer: wasmer::Engine,
    limits: Limits,
    strategy: ResetStrategy,
    name: String,
    info: PluginInfo,
    warnings: Vec<String>,
    load_log: String,
    load_stats: CallStats,
    image: Arc<Image>,
    live: Option<Live>,
    calls: u64,
    rebuilds: u64,
    profile: CallProfile,
    eager_harness: bool,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("name", &self.name)
            .field("strategy", &self.strategy)
            .field("info", &self.info)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    pub(crate) fn new(
        engine: &Engine,
        name: &str,
        (info, warnings, load_log, load_stats): (PluginInfo, Vec<String>, String, CallStats),
        image: Arc<Image>,
        live: Option<Live>,
        strategy: ResetStrategy,
    ) -> Self {
        Sandbox {
            core: engine.core.clone(),
            wasmer: engine.wasmer.clone(),
            limits: engine.limits,
            strategy,
            name: name.to_owned(),
            info,
            warnings,
            load_log,
            load_stats,
            image,
            live,
            calls: 0,
            rebuilds: 0,
            profile: CallProfile::default(),
            eager_harness: false,
        }
    }

    /// What loading the plugin cost.
    pub fn load_stats(&self) -> CallStats {
        self.load_stats
    }

    /// The plugin's hooks and declared parameters.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Load-time warnings (e.g. "did you mean terrain?").
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// What the module-level code printed while loading.
    pub fn load_log(&self) -> &str {
        &self.load_log
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn strategy(&self) -> ResetStrategy {
        self.strategy
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Linear memory of the plugin's snapshot, bytes.
    pub fn memory_bytes(&self) -> usize {
        self.image.len()
    }

    /// Bytes of the snapshot memfd actually stored (zero pages are holes).
    /// Shared by every sandbox forked from this one.
    pub fn snapshot_stored_bytes(&self) -> usize {
        self.image.stored_bytes
    }

    /// How many times the instance was rebuilt from the snapshot because a
    /// reset failed (0 in normal operation).
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// Pages the resets of this sandbox's current instance have restored so
    /// far (for measuring how much a call dirties).
    pub fn pages_restored(&self) -> usize {
        self.live.as_ref().map_or(0, |l| l.pages_reset)
    }

    /// Benchmark only: serve calls with the harness's previous call path
    /// (`_wl_call_eager`: every layer copied into an array up front, the
    /// result always converted), to measure it against the current one in
    /// the same run. Same results; only the cost differs.
    pub fn use_eager_harness(&mut self, on: bool) {
        self.eager_harness = on;
    }

    /// Where the last call's time went.
    pub fn last_profile(&self) -> CallProfile {
        self.profile
    }

    /// Another warm sandbox for the same plugin, sharing this one's snapshot
    /// (no re-load; one memfd serves both).
    pub fn fork(&self) -> Result<Sandbox, SandboxError> {
        let live = if self.strategy == ResetStrategy::FreshInstance {
            None
        } else {
            Some(Live::from_image(&self.core, &self.wasmer, &self.image, self.strategy)?)
        };
        Ok(Sandbox {
            core: self.core.clone(),
            wasmer: self.wasmer.clone(),
            limits: self.limits,
            strategy: self.strategy,
            name: self.name.clone(),
            info: self.info.clone(),
            warnings: self.warnings.clone(),
            load_log: self.load_log.clone(),
            load_stats: self.load_stats,
            image: self.image.clone(),
            live,
            calls: 0,
            rebuilds: 0,
            profile: CallProfile::default(),
            eager_harness: false,
        })
    }

    /// Calls a hook. Plugin failures are in `result`; a host-side failure
    /// (which should not happen) is reported as a `trap` and logged.
    pub fn call(&mut self, input: &HookInput) -> CallReport {
        match self.try_call(input) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(plugin = %self.name, error = %e, "sandbox host error");
                CallReport {
                    result: Err(PluginError::transient(ErrorKind::Trap, format!("internal sandbox error: {e}"))),
                    log: String::new(),
                    stats: CallStats::default(),
                }
            }
        }
    }

    /// Calls a hook, separating host-side errors (invalid input, a failed
    /// reset) from plugin failures.
    pub fn try_call(&mut self, input: &HookInput) -> Result<CallReport, SandboxError> {
        let raw = self.try_call_raw(input)?;
        let t = Instant::now();
        let result = raw
            .result
            .and_then(|body| validate::hook_output(input.hook, &body, input, self.core.biome_count, &self.limits));
        self.profile.validate += t.elapsed();
        Ok(CallReport { result, log: raw.log, stats: raw.stats })
    }

    /// Calls a hook and returns the result frame's OK body unvalidated (a
    /// worker process hands it to the supervisor, which validates it), or
    /// the plugin failure as classified by the host.
    pub fn try_call_raw(&mut self, input: &HookInput) -> Result<RawCall, SandboxError> {
        let t = Instant::now();
        let frame = validate::input_frame(input, self.core.biome_count, &self.limits)?;
        let frame_time = t.elapsed();
        let r = self.call_frame(input.hook, input.random_seed, frame.into());
        self.profile.frame = frame_time;
        r
    }

    /// [`Sandbox::try_call_raw`] with the input frame already built and
    /// checked (by `validate::input_frame`, on the supervisor's side of a
    /// worker's socket).
    pub fn call_frame(&mut self, hook: HookName, random_seed: u64, frame: Bytes) -> Result<RawCall, SandboxError> {
        if !self.info.hooks.contains(&hook) {
            return Ok(RawCall {
                result: Err(PluginError::new(
                    ErrorKind::MissingHook,
                    format!("the plugin does not define {hook}(ctx, chunk)"),
                )),
                log: String::new(),
                stats: CallStats::default(),
            });
        }
        let mut live = match self.live.take() {
            Some(l) if self.strategy != ResetStrategy::FreshInstance => l,
            _ => Live::from_image(&self.core, &self.wasmer, &self.image, self.strategy)?,
        };
        self.calls += 1;
        let deadline = Duration::from_millis(self.limits.deadline_ms);
        let limits = TurnLimits {
            fuel: self.limits.fuel,
            deadline: Some(deadline),
            virtual_deadline: deadline,
            log_bytes: usize::try_from(self.limits.log_bytes).unwrap_or(usize::MAX),
            frame_cap: self.limits.output_bytes.saturating_add(5),
        };
        self.profile = CallProfile::default();
        let src = self.image.call_src[usize::from(self.eager_harness)];
        let t_turn = Instant::now();
        let turn = live.run_turn(
            &self.core,
            TurnSource::At(src.0, src.1),
            Request::Call(frame),
            rng_for("call", random_seed),
            limits,
        );
        let t_reset = Instant::now();
        self.profile.turn = t_reset - t_turn;
        // Restore before anything else, whatever happened.
        if self.strategy != ResetStrategy::FreshInstance {
            if live.exception_debt() > crate::instance::MAX_EXCEPTION_DEBT {
                // Free the exception objects wasmer kept: a new instance next call.
                self.rebuilds += 1;
                drop(live);
            } else {
                match live.reset(&self.image, self.strategy) {
                    Ok(()) => {
                        self.profile.reset_parts = live.last_reset;
                        self.live = Some(live);
                    }
                    Err(e) => {
                        // Never reuse a dirty instance: drop it; the next call
                        // builds a new one from the snapshot.
                        tracing::warn!(plugin = %self.name, error = %e, "reset failed; rebuilding from the snapshot");
                        self.rebuilds += 1;
                        drop(live);
                    }
                }
            }
        }
        let t_classify = Instant::now();
        self.profile.reset = t_classify - t_reset;
        let tr = turn?;
        if let (Some((t_in, f_in)), Some((t_out, f_out))) = (tr.outcome.asked_input, tr.outcome.handed_result) {
            let f_end = self.limits.fuel.saturating_sub(tr.fuel_used);
            self.profile.turn_parts = [t_in - t_turn, t_out - t_in, t_reset.saturating_duration_since(t_out)];
            self.profile.turn_fuel =
                [self.limits.fuel.saturating_sub(f_in), f_in.saturating_sub(f_out), f_out.saturating_sub(f_end)];
        }
        let stats =
            CallStats { wall_us: tr.wall.as_micros() as u64, fuel: tr.fuel_used, memory_bytes: tr.memory_bytes };
        let result = validate::classify(&tr, &self.limits, Phase::Call);
        self.profile.validate = t_classify.elapsed();
        Ok(RawCall { result, log: tr.log, stats })
    }
}

#[cfg(test)]
mod tests {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Send + Sync>() {}

    #[test]
    fn sandbox_is_send_and_engine_is_sync() {
        assert_send::<super::Sandbox>();
        assert_sync::<crate::Engine>();
    }
}
