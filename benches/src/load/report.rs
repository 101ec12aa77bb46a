//! Figures of a run: per step, per system, the ratios between systems, the
//! JSON file and the SVG plot.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::Plan;
use super::run::Measured;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Latency {
    /// From sorted samples in microseconds.
    pub fn from_sorted_us(s: &[u32]) -> Latency {
        let at = |q: f64| -> f64 {
            if s.is_empty() {
                return 0.0;
            }
            let i = ((s.len() - 1) as f64 * q).round() as usize;
            f64::from(s.get(i).copied().unwrap_or(0)) / 1000.0
        };
        Latency {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// One step of the ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Subscribers in all rooms.
    pub subscribers: usize,
    /// Video tracks forwarded to subscribers.
    pub video_down_tracks: usize,
    /// Measured for this long.
    pub seconds: f64,
    /// Packets the subscribers received per second.
    pub forwarded_pps: f64,
    /// Server CPU seconds during the step.
    pub cpu_seconds: f64,
    /// Packets received per server CPU-second.
    pub packets_per_cpu_second: f64,
    /// The load generator's own CPU seconds (if near 2 × seconds on 2 cores,
    /// the load generator, not the server, limited the step).
    pub loadgen_cpu_seconds: f64,
    /// 1 - received / (sent × subscribers).
    pub loss_ratio: f64,
    /// One-way latency, publisher to subscriber.
    pub latency_ms: Latency,
    #[serde(skip)]
    pub(crate) latency_samples_us: Vec<u32>,
}

/// Loss above which a step counts as overloaded.
pub const LOSS_LIMIT: f64 = 0.01;

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
    #[serde(skip)]
    cdf_us: Vec<u32>,
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
        let ok: Vec<&Step> = steps
            .iter()
            .filter(|s| s.loss_ratio <= LOSS_LIMIT)
            .collect();
        let top = ok.last().copied().or(steps.first());
        let max_ok = ok.last().map_or(0, |s| s.subscribers);
        let half = max_ok.max(steps.first().map_or(0, |s| s.subscribers)) / 2;
        let lat_step = steps
            .iter()
            .filter(|s| s.loss_ratio <= LOSS_LIMIT || ok.is_empty())
            .min_by_key(|s| s.subscribers.abs_diff(half));
        SystemReport {
            forwarded_pps: top.map_or(0.0, |s| s.forwarded_pps),
            cpu_seconds: steps.iter().map(|s| s.cpu_seconds).sum(),
            packets_per_cpu_second: top.map_or(0.0, |s| s.packets_per_cpu_second),
            rss_bytes_per_participant: measured.rss_growth_bytes as f64
                / measured.participants.max(1) as f64,
            latency_ms: lat_step.map_or_else(Latency::default, |s| s.latency_ms),
            loss_ratio: lat_step.map_or(1.0, |s| s.loss_ratio),
            max_subscribers_under_1pct_loss: max_ok,
            first_subscribers_over_1pct_loss: steps
                .iter()
                .find(|s| s.loss_ratio > LOSS_LIMIT)
                .map(|s| s.subscribers),
            latency_step_subscribers: lat_step.map_or(0, |s| s.subscribers),
            rcvbuf_errors: RcvbufErrors {
                server: measured.server_rcvbuf_errors,
                loadgen: measured.client_rcvbuf_errors,
            },
            cdf_us: lat_step
                .map(|s| s.latency_samples_us.clone())
                .unwrap_or_default(),
            steps,
        }
    }
}

/// Chorus against another system.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratio {
    /// Chorus' packets per CPU-second / the other's (higher is better).
    pub packets_per_cpu_second: f64,
    /// Chorus' p99 latency / the other's (lower is better).
    pub p99_latency: f64,
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
    Some(Ratio {
        packets_per_cpu_second: div(a.packets_per_cpu_second, b.packets_per_cpu_second),
        p99_latency: div(a.latency_ms.p99, b.latency_ms.p99),
    })
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
        for (label, r) in [
            ("chorus/janus", self.ratios.chorus_over_janus),
            ("chorus/reflector", self.ratios.chorus_over_reflector),
        ] {
            if let Some(r) = r {
                out.push_str(&format!(
                    "{label}: packets per CPU-second x{:.2}, p99 latency x{:.2}\n",
                    r.packets_per_cpu_second, r.p99_latency
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

    /// Draws the latency CDF and forwarded packets/s against subscribers.
    pub fn write_svg(&self, path: &Path) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| format!("plot: {e}");
        let root = SVGBackend::new(path, (1100, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (left, right) = root.split_horizontally(550);
        let systems = self.systems();

        let max_ms = systems
            .iter()
            .filter_map(|(_, s, _)| {
                let n = s.cdf_us.len();
                s.cdf_us
                    .get(n.saturating_sub(1).min(n * 999 / 1000))
                    .copied()
            })
            .max()
            .unwrap_or(1000) as f64
            / 1000.0;
        let mut cdf = ChartBuilder::on(&left)
            .caption("One-way latency at half load (CDF)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..(max_ms * 1.05).max(0.1), 0.0..1.0)
            .map_err(|e| err(&e))?;
        cdf.configure_mesh()
            .x_desc("milliseconds")
            .y_desc("fraction of packets")
            .draw()
            .map_err(|e| err(&e))?;
        for (name, s, color) in &systems {
            let n = s.cdf_us.len().max(1);
            let stride = (n / 400).max(1);
            let points: Vec<(f64, f64)> = s
                .cdf_us
                .iter()
                .enumerate()
                .step_by(stride)
                .map(|(i, us)| (f64::from(*us) / 1000.0, (i + 1) as f64 / n as f64))
                .collect();
            cdf.draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        cdf.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(&e))?;

        let max_subs = self.plan.steps.iter().copied().max().unwrap_or(1) as f64;
        let max_pps = systems
            .iter()
            .flat_map(|(_, s, _)| s.steps.iter().map(|st| st.forwarded_pps))
            .fold(1.0, f64::max);
        let mut tp = ChartBuilder::on(&right)
            .caption(
                "Forwarded packets/s against subscribers",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..max_subs * 1.05, 0.0..max_pps * 1.1)
            .map_err(|e| err(&e))?;
        tp.configure_mesh()
            .x_desc("subscribers")
            .y_desc("packets/s")
            .draw()
            .map_err(|e| err(&e))?;
        let offered = self.plan.rooms as f64 * self.plan.publishers as f64 / self.plan.rooms as f64
            * (Plan::VIDEO_PPS + Plan::AUDIO_PPS) as f64;
        tp.draw_series(LineSeries::new(
            self.plan
                .steps
                .iter()
                .map(|s| (*s as f64, *s as f64 * offered)),
            BLACK.mix(0.3).stroke_width(1),
        ))
        .map_err(|e| err(&e))?
        .label("offered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.3)));
        for (name, s, color) in &systems {
            let points: Vec<(f64, f64)> = s
                .steps
                .iter()
                .map(|st| (st.subscribers as f64, st.forwarded_pps))
                .collect();
            tp.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            tp.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| err(&e))?;
        }
        tp.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}
