//! The cron trigger, as the Spin cron trigger plugin defines it: `[[trigger.cron]]` with a
//! `cron_expression`, and a component exporting `handle-cron-event` of the world
//! `fermyon:spin-cron/spin-cron@2.0.0`, called with the tick's time (Unix seconds) in a
//! fresh instance. One run at a time per trigger: a tick that comes while the previous run
//! is still going is skipped, with a line in the log.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use wasmtime::component::InstancePre;
use wasmtime::Engine;

use super::state::{describe_failure, ComponentEnv, SpinState};
use crate::limits::GuestLimits;
use crate::signals::TerminationWatch;
use crate::telemetry::SpanKind;

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-cron",
        world: "spin-cron",
        exports: { default: async },
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error as CronError, Metadata};
pub use bindings::SpinCronPre;

/// The export a cron component must have.
pub const EXPORT: &str = "handle-cron-event";

/// A `cron_expression`: six fields, seconds first (`sec min hour day-of-month month
/// day-of-week`), and an optional year, as the Spin cron trigger reads it. A five-field
/// expression (no seconds) runs at second 0.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
    expression: String,
}

impl CronSchedule {
    /// Reads `expression`; the error quotes it and says what is wrong.
    pub fn parse(expression: &str) -> Result<CronSchedule, String> {
        let fields = expression.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expression}"),
            6 | 7 => expression.to_string(),
            n => {
                return Err(format!(
                    "cron_expression {expression:?} has {n} fields; give 6 (sec min hour \
                     day-of-month month day-of-week, e.g. \"*/5 * * * * *\"), 7 (with a year) \
                     or 5 (no seconds)"
                ))
            }
        };
        let schedule = cron::Schedule::from_str(&full)
            .map_err(|e| format!("cron_expression {expression:?}: {e}"))?;
        if schedule.upcoming(Utc).next().is_none() {
            return Err(format!("cron_expression {expression:?} never fires again"));
        }
        Ok(CronSchedule {
            schedule,
            expression: expression.to_string(),
        })
    }

    /// The first tick after `after` and after now (ticks missed while a run was being
    /// started are not made up for).
    fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&after.max(Utc::now())).next()
    }
}

/// One cron trigger, linked.
pub struct CronJob {
    /// The trigger id.
    pub trigger: String,
    /// The component id.
    pub component: String,
    /// When it fires.
    pub schedule: CronSchedule,
    /// The component, linked, with its `handle-cron-event`.
    pub pre: SpinCronPre<SpinState>,
}

impl CronJob {
    /// Links `pre` as a cron component; the error says what it exports instead.
    pub fn link(
        trigger: &str,
        component: &str,
        expression: &str,
        pre: InstancePre<SpinState>,
    ) -> Result<CronJob, String> {
        let schedule = CronSchedule::parse(expression)?;
        let pre = SpinCronPre::new(pre).map_err(|e| {
            format!(
                "it does not export `{EXPORT}` (the world fermyon:spin-cron/spin-cron@2.0.0), \
                 so it cannot run a cron trigger: {e:#}"
            )
        })?;
        Ok(CronJob {
            trigger: trigger.to_string(),
            component: component.to_string(),
            schedule,
            pre,
        })
    }

    /// Runs the job on its schedule until the task is dropped: each tick in a fresh
    /// instance of `env`'s component, and a span.
    pub async fn run(
        self,
        engine: Engine,
        watch: TerminationWatch,
        env: ComponentEnv,
        limits: GuestLimits,
    ) {
        let job = Arc::new(self);
        let env = Arc::new(env);
        let running = Arc::new(AtomicBool::new(false));
        eprintln!(
            "wasmpod: cron trigger {} runs component {} on {:?}",
            job.trigger, job.component, job.schedule.expression
        );
        let mut last = Utc::now();
        loop {
            let Some(next) = job.schedule.next(last) else {
                eprintln!(
                    "wasmpod: cron trigger {}: {:?} does not fire again",
                    job.trigger, job.schedule.expression
                );
                return;
            };
            last = next;
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            if watch.signal().is_some() {
                return;
            }
            let timestamp = u64::try_from(next.timestamp()).unwrap_or(0);
            if running.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "wasmpod: cron trigger {}: the run due at {timestamp} is skipped: the \
                     previous run is still going",
                    job.trigger
                );
                continue;
            }
            let (job, env, running, engine, watch, limits) = (
                job.clone(),
                env.clone(),
                running.clone(),
                engine.clone(),
                watch.clone(),
                limits.clone(),
            );
            tokio::spawn(async move {
                let span = env.span(
                    format!("cron {}", job.trigger),
                    SpanKind::Internal,
                    &job.trigger,
                );
                let fired = job.fire(&engine, &watch, timestamp, env.state(limits));
                if let Err(reason) = crate::telemetry::traced(span, fired).await {
                    eprintln!(
                        "wasmpod: cron trigger {}: component {} failed: {reason}",
                        job.trigger, job.component
                    );
                }
                running.store(false, Ordering::SeqCst);
            });
        }
    }

    async fn fire(
        &self,
        engine: &Engine,
        watch: &TerminationWatch,
        timestamp: u64,
        state: Result<SpinState, String>,
    ) -> Result<(), String> {
        let mut store = state?.into_store(engine, watch);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| describe_failure(&e, watch))?;
        match instance
            .call_handle_cron_event(&mut store, Metadata { timestamp })
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(CronError::Other(message))) => Err(format!("it returned an error: {message}")),
            Err(e) => Err(describe_failure(&e, watch)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_six_seven_and_five_field_expressions() {
        assert!(CronSchedule::parse("*/2 * * * * *").is_ok());
        assert!(CronSchedule::parse("1/2 * * * * *").is_ok());
        assert!(CronSchedule::parse("0 0 12 * * Mon-Fri 2099").is_ok());
        assert!(CronSchedule::parse("*/5 * * * *").is_ok());
        let short = CronSchedule::parse("* * *").unwrap_err();
        assert!(short.contains("3 fields"), "{short}");
        let bad = CronSchedule::parse("70 * * * * *").unwrap_err();
        assert!(bad.contains("\"70 * * * * *\""), "{bad}");
        let past = CronSchedule::parse("0 0 0 1 1 * 2001").unwrap_err();
        assert!(past.contains("never fires"), "{past}");
    }

    #[test]
    fn ticks_come_one_period_apart_and_never_twice() {
        let s = CronSchedule::parse("*/2 * * * * *").unwrap();
        let first = s.next(Utc::now()).unwrap();
        assert!(first > Utc::now() && first - Utc::now() <= chrono::Duration::seconds(2));
        // Asked again at the tick itself (a wake-up a little early), the next is the one
        // after.
        let second = s.next(first).unwrap();
        assert_eq!((second - first).num_seconds(), 2);
    }
}
