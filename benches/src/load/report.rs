//! Figures of a run: per step, per system, the ratios between systems, the
//! JSON file and the SVG plot.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::Plan;
use super::figures::{Latency, Measured, Step};

/// Loss above which a step counts as overloaded.
pub use super::figures::LOSS_LIMIT;

/// The figures of one system.
#[derive(Debug, Clone, Serialize)]
pub struct SystemReport {
    /// At the largest step with loss under 1% (else the first step).
    pub forwarded_pps: f64,
    /// Server CPU seconds over all steps.
    pub cpu_seconds: f64,
    /// At the same step as `forwarded_pps`.
    pub packets_per_cpu_second: f64,
    /// Server memory growth per participant, bytes.
    pub rss_bytes_per_participant: f64,
    /// At the step nearest half of the largest step under 1% loss.
    pub latency_ms: Latency,
    /// At the same step as `latency_ms`.
    pub loss_ratio: f64,
    /// The largest step's subscribers with loss under 1% (0 if none).
    pub max_subscribers_under_1pct_loss: usize,
    /// The first step's subscribers with loss over 1%, if any.
    pub first_subscribers_over_1pct_loss: Option<usize>,
    /// Subscribers of the step `latency_ms` comes from.
    pub latency_step_subscribers: usize,
    /// UDP receive-buffer drops: server namespace, load generator namespace.
    pub rcvbuf_errors: RcvbufErrors,
    /// Every step.
    pub steps: Vec<Step>,
}

/// Datagrams dropped at full socket receive buffers.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RcvbufErrors {
    /// In the server's namespace.
    pub server: u64,
    /// In the load generator's namespace.
    pub loadgen: u64,
}

impl SystemReport {
    /// Summarises the steps.
    pub fn new(steps: Vec<Step>, measured: Measured) -> SystemReport {
        let ok: Vec<&Step> = steps.iter().filter(|s| s.carried()).collect();
        let top = ok.last().copied().or(steps.first());
        let max_ok = ok.last().map_or(0, |s| s.subscribers);
        let half = max_ok.max(steps.first().map_or(0, |s| s.subscribers)) / 2;
        let lat_step = steps
            .iter()
            .filter(|s| s.carried() || ok.is_empty())
            .min_by_key(|s| s.subscribers.abs_diff(half));
        SystemReport {
            forwarded_pps: top.map_or(0.0, |s| s.forwarded_pps),
            cpu_seconds: steps.iter().map(|s| s.cpu_seconds).sum(),
            packets_per_cpu_second: top.map_or(0.0, |s| s.packets_per_cpu_second),
            // At the largest step carried: an overloaded step's queues
            // would count as memory per participant.
            rss_bytes_per_participant: match top {
                Some(s) if s.rss_growth_bytes > 0 => {
                    s.rss_growth_bytes as f64 / s.participants.max(1) as f64
                }
                _ => measured.rss_growth_bytes as f64 / measured.participants.max(1) as f64,
            },
            latency_ms: lat_step.map_or_else(Latency::default, |s| s.latency_ms),
            loss_ratio: lat_step.map_or(1.0, |s| s.loss_ratio),
            max_subscribers_under_1pct_loss: max_ok,
            first_subscribers_over_1pct_loss: steps
                .iter()
                .find(|s| !s.carried())
                .map(|s| s.subscribers),
            latency_step_subscribers: lat_step.map_or(0, |s| s.subscribers),
            rcvbuf_errors: RcvbufErrors {
                server: measured.server_rcvbuf_errors,
                loadgen: measured.client_rcvbuf_errors,
            },
            steps,
        }
    }
}

/// Chorus against another system, at the same step of the ramp.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratio {
    /// Chorus' packets per CPU-second / the other's (higher is better), at
    /// the largest step where both lost at most 1%.
    pub packets_per_cpu_second: f64,
    /// That step's subscribers.
    pub at_subscribers: usize,
    /// Chorus' p99 latency / the other's (lower is better), at the step
    /// nearest half of that one.
    pub p99_latency: f64,
    /// That step's subscribers.
    pub p99_at_subscribers: usize,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The load.
    pub plan: Plan,
    /// Cores of the machine (the server and the load generator share them).
    pub cores: usize,
    /// Chorus.
    pub chorus: Option<SystemReport>,
    /// Janus VideoRoom.
    pub janus: Option<SystemReport>,
    /// The plain UDP reflector.
    pub reflector: Option<SystemReport>,
    /// `chorus_over_janus`, `chorus_over_reflector`.
    pub ratios: Ratios,
}

/// Ratios present when both systems were measured.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratios {
    /// Chorus / Janus.
    pub chorus_over_janus: Option<Ratio>,
    /// Chorus / reflector.
    pub chorus_over_reflector: Option<Ratio>,
}

fn ratio(a: &Option<SystemReport>, b: &Option<SystemReport>) -> Option<Ratio> {
    let (a, b) = (a.as_ref()?, b.as_ref()?);
    let div = |x: f64, y: f64| if y > 0.0 { x / y } else { 0.0 };
    let both: Vec<(&Step, &Step)> = a
        .steps
        .iter()
        .filter_map(|sa| {
            let sb = b.steps.iter().find(|sb| sb.subscribers == sa.subscribers)?;
            Some((sa, sb))
        })
        .collect();
    let ok: Vec<&(&Step, &Step)> = both
        .iter()
        .filter(|(x, y)| x.carried() && y.carried())
        .collect();
    let (top_a, top_b) = **ok.last().or(both.first().as_ref())?;
    let half = top_a.subscribers / 2;
    let (half_a, half_b) = ok
        .iter()
        .map(|p| **p)
        .min_by_key(|(x, _)| x.subscribers.abs_diff(half))
        .unwrap_or((top_a, top_b));
    Some(Ratio {
        packets_per_cpu_second: div(top_a.packets_per_cpu_second, top_b.packets_per_cpu_second),
        at_subscribers: top_a.subscribers,
        p99_latency: div(half_a.latency_ms.p99, half_b.latency_ms.p99),
        p99_at_subscribers: half_a.subscribers,
    })
}

/// Why a ramp stopped, if its last step says: that step's subscribers
/// and the reasons. A listed step that did not carry its load does not end
/// the ramp (the listed steps all run); the ramp goes on past them until
/// its last step.
pub fn why_the_ramp_ended(steps: &[Step]) -> Option<(usize, Vec<String>)> {
    let end = steps.last()?;
    let mut why = Vec::new();
    if end.loss_ratio > LOSS_LIMIT {
        why.push(format!("lost {:.1}%", end.loss_ratio * 100.0));
    }
    if end.sent_ratio < 1.0 - LOSS_LIMIT {
        why.push(format!(
            "the publishers sent {:.1}% of the plan",
            end.sent_ratio * 100.0
        ));
    }
    if end.loadgen_limited {
        why.push("the load generator may have been the limit".to_string());
    }
    (!why.is_empty()).then_some((end.subscribers, why))
}

impl Report {
    /// Puts the systems together and computes the ratios.
    pub fn new(
        plan: Plan,
        chorus: Option<SystemReport>,
        janus: Option<SystemReport>,
        reflector: Option<SystemReport>,
    ) -> Report {
        let ratios = Ratios {
            chorus_over_janus: ratio(&chorus, &janus),
            chorus_over_reflector: ratio(&chorus, &reflector),
        };
        Report {
            plan,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chorus,
            janus,
            reflector,
            ratios,
        }
    }

    fn systems(&self) -> Vec<(&'static str, &SystemReport, RGBColor)> {
        let mut v = Vec::new();
        if let Some(s) = &self.chorus {
            v.push(("chorus", s, RGBColor(0x1f, 0x77, 0xb4)));
        }
        if let Some(s) = &self.janus {
            v.push(("janus", s, RGBColor(0xd6, 0x27, 0x28)));
        }
        if let Some(s) = &self.reflector {
            v.push(("reflector", s, RGBColor(0x7f, 0x7f, 0x7f)));
        }
        v
    }

    /// A plain-text summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<10} {:>12} {:>14} {:>10} {:>9} {:>9} {:>9} {:>8} {:>10}\n",
            "system",
            "forwarded/s",
            "pkts/CPU-s",
            "rss/part",
            "p50 ms",
            "p99 ms",
            "max ms",
            "loss",
            "max subs"
        ));
        for (name, s, _) in self.systems() {
            out.push_str(&format!(
                "{:<10} {:>12.0} {:>14.0} {:>9.0}K {:>9.3} {:>9.3} {:>9.3} {:>7.2}% {:>10}\n",
                name,
                s.forwarded_pps,
                s.packets_per_cpu_second,
                s.rss_bytes_per_participant / 1024.0,
                s.latency_ms.p50,
                s.latency_ms.p99,
                s.latency_ms.max,
                s.loss_ratio * 100.0,
                s.max_subscribers_under_1pct_loss
            ));
        }
        for (name, s, _) in self.systems() {
            if let Some((subscribers, why)) = why_the_ramp_ended(&s.steps) {
                out.push_str(&format!(
                    "{name}: the ramp ended at {subscribers} subscribers: {}\n",
                    why.join(", ")
                ));
            }
        }
        for (label, r) in [
            ("chorus/janus", self.ratios.chorus_over_janus),
            ("chorus/reflector", self.ratios.chorus_over_reflector),
        ] {
            if let Some(r) = r {
                out.push_str(&format!(
                    "{label}: packets per CPU-second x{:.2} (at {} subscribers), p99 latency x{:.2} (at {})\n",
                    r.packets_per_cpu_second, r.at_subscribers, r.p99_latency, r.p99_at_subscribers
                ));
            }
        }
        out
    }

    /// Writes the JSON report.
    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Draws the latency CDF, forwarded packets/s and server CPU against
    /// subscribers.
    pub fn write_svg(&self, path: &Path) -> Result<(), String> {
        let root = SVGBackend::new(path, (1500, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| format!("plot: {e}"))?;
        let (left, rest) = root.split_horizontally(500);
        let (middle, right) = rest.split_horizontally(500);
        let systems = self.systems();

        // All systems at the same step: half of the largest step every one
        // of them carried with loss under 1%.
        let common = systems
            .iter()
            .map(|(_, s, _)| s.max_subscribers_under_1pct_loss)
            .min()
            .unwrap_or(0);
        let at = |s: &SystemReport| -> Option<Step> {
            s.steps
                .iter()
                .min_by_key(|st| st.subscribers.abs_diff(common / 2))
                .cloned()
        };
        let samples: Vec<Vec<u32>> = systems
            .iter()
            .map(|(_, s, _)| at(s).map(|st| st.latency_samples_us).unwrap_or_default())
            .collect();
        let step_subs = systems
            .first()
            .and_then(|(_, s, _)| at(s))
            .map_or(0, |st| st.subscribers);
        let cdf: Vec<Series> = systems
            .iter()
            .zip(&samples)
            .map(|((name, _, color), cdf_us)| {
                let n = cdf_us.len().max(1);
                let stride = (n / 400).max(1);
                let points = cdf_us
                    .iter()
                    .enumerate()
                    .step_by(stride)
                    .map(|(i, us)| (f64::from(*us) / 1000.0, (i + 1) as f64 / n as f64))
                    .collect();
                (name.to_string(), *color, points, false)
            })
            .collect();
        // Up to the 99.9th percentile: the tail would squash the rest.
        let x_max = samples
            .iter()
            .filter_map(|s| s.get(s.len() * 999 / 1000).copied())
            .max()
            .unwrap_or(1000) as f64
            / 1000.0;
        let caption = format!("One-way latency, {step_subs} subscribers (CDF)");
        chart(
            &left,
            (&caption, "milliseconds", "fraction of packets"),
            (x_max, 1.0),
            &cdf,
            SeriesLabelPosition::LowerRight,
        )?;

        let per_step = |f: &dyn Fn(&Step) -> f64| -> Vec<Series> {
            systems
                .iter()
                .map(|(name, s, color)| {
                    let points = s
                        .steps
                        .iter()
                        .map(|st| (st.subscribers as f64, f(st)))
                        .collect();
                    (name.to_string(), *color, points, true)
                })
                .collect()
        };
        // The ramp goes past the listed steps until each system loses.
        let mut ramp: Vec<usize> = systems
            .iter()
            .flat_map(|(_, s, _)| s.steps.iter().map(|st| st.subscribers))
            .collect();
        ramp.sort_unstable();
        ramp.dedup();
        let max_subs = ramp.last().copied().unwrap_or(1) as f64;
        // Each subscriber gets every publisher of its room.
        let offered = self.plan.publishers as f64 * (Plan::VIDEO_PPS + Plan::AUDIO_PPS) as f64;
        let mut pps = per_step(&|st| st.forwarded_pps);
        pps.push((
            "offered".into(),
            RGBColor(0xbb, 0xbb, 0xbb),
            ramp.iter()
                .map(|s| (*s as f64, *s as f64 * offered))
                .collect(),
            false,
        ));
        chart(
            &middle,
            (
                "Forwarded packets/s against subscribers",
                "subscribers",
                "packets/s",
            ),
            (max_subs, max_y(&pps)),
            &pps,
            SeriesLabelPosition::UpperLeft,
        )?;
        let cpu = per_step(&|st| st.cpu_seconds / st.seconds.max(0.001));
        chart(
            &right,
            (
                "Server CPU against subscribers",
                "subscribers",
                "cores busy",
            ),
            (max_subs, max_y(&cpu)),
            &cpu,
            SeriesLabelPosition::UpperLeft,
        )?;
        root.present().map_err(|e| format!("plot: {e}"))
    }
}

/// A line: its name, colour, points, and whether to mark the points.
type Series = (String, RGBColor, Vec<(f64, f64)>, bool);

fn max_y(series: &[Series]) -> f64 {
    series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(0.001, f64::max)
}

/// One panel: `labels` are the caption and the axis names.
fn chart(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    labels: (&str, &str, &str),
    (x_max, y_max): (f64, f64),
    series: &[Series],
    legend: SeriesLabelPosition,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("plot: {e}");
    let mut c = ChartBuilder::on(area)
        .caption(labels.0, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max.max(0.001) * 1.05, 0.0..y_max * 1.1)
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_desc(labels.1)
        .y_desc(labels.2)
        .draw()
        .map_err(|e| err(&e))?;
    for (name, color, points, marks) in series {
        let color = *color;
        c.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        if *marks {
            c.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(legend)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}
