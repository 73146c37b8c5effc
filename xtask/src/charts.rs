//! SVG charts (plotters) for docs/BENCHMARKS.md: each client's throughput and time to first
//! delta in the end-to-end run, and the SSE parsers side by side.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::Result;

const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// How values map to bar lengths.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Scale {
    Linear,
    /// Powers of ten, for values that span several (bars start at 1).
    Log,
}

/// A horizontal bar chart of `bars` (label, value), drawn top down in the given order. The
/// bars come in groups of `series` (one per client or parser, in the same order in every
/// group), and each series keeps its colour across groups.
pub(crate) fn bars(
    path: &Path,
    title: &str,
    unit: &str,
    bars: &[(String, f64)],
    series: usize,
    scale: Scale,
) -> Result {
    let series = series.max(1);
    // The x axis is drawn linear; on a log scale it holds log10 of each value.
    let length = |value: f64| {
        let value = if value.is_finite() {
            value.max(0.0)
        } else {
            0.0
        };
        match scale {
            Scale::Linear => value,
            Scale::Log => value.max(1.0).log10(),
        }
    };
    // The y axis counts up from the bottom: the first bar goes to the top.
    let row = |index: usize| bars.len() - 1 - index;
    let height = 60 + 34 * bars.len() as u32;
    let root = SVGBackend::new(path, (760, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = bars
        .iter()
        .map(|(_, value)| length(*value))
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(230)
        .build_cartesian_2d(0.0..top, (0..bars.len()).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(unit)
        .x_label_formatter(&|position| match scale {
            Scale::Linear => format!("{position:.0}"),
            Scale::Log => format!("{:.0}", 10_f64.powf(*position)),
        })
        .y_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(position) if *position < bars.len() => {
                bars[row(*position)].0.clone()
            }
            _ => String::new(),
        })
        .y_labels(bars.len())
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(index, (_, value))| {
        let value = length(*value);
        let colour = COLOURS[index % series % COLOURS.len()];
        Rectangle::new(
            [
                (0.0, SegmentValue::Exact(row(index))),
                (value, SegmentValue::Exact(row(index) + 1)),
            ],
            colour.filled(),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(index, (_, value))| {
        Text::new(
            format!("{value:.0}"),
            (length(*value), SegmentValue::CenterOf(row(index))),
            ("sans-serif", 13),
        )
    }))?;
    root.present()?;
    Ok(())
}

/// The end-to-end charts: chunks/s and client-added time to first delta per client, for
/// each scenario. `values[scenario][client]` = (chunks/s, ttft p50 us).
pub(crate) fn e2e(
    root: &Path,
    scenarios: &[&str],
    clients: &[&str],
    values: &[Vec<(f64, f64)>],
) -> Result<Vec<PathBuf>> {
    let dir = root.join("target/e2e");
    std::fs::create_dir_all(&dir)?;
    let mut written = Vec::new();
    let mut throughput = Vec::new();
    let mut first = Vec::new();
    for (scenario, row) in scenarios.iter().zip(values) {
        // One-at-a-time scenarios are about the first delta; answers not streamed have no chunks.
        if matches!(*scenario, "first" | "first-tls" | "nonstream") {
            continue;
        }
        for (client, (rate, _)) in clients.iter().zip(row) {
            throughput.push((format!("{scenario}: {client}"), *rate));
        }
    }
    for (scenario, row) in scenarios.iter().zip(values) {
        if !matches!(
            *scenario,
            "first" | "first-tls" | "c100" | "c100-tls" | "c1000"
        ) {
            continue;
        }
        for (client, (_, ttft)) in clients.iter().zip(row) {
            first.push((format!("{scenario}: {client}"), *ttft));
        }
    }
    let path = dir.join("e2e-throughput.svg");
    bars(
        &path,
        "Chunks per second (one thread per client; higher is better)",
        "chunks/s",
        &throughput,
        clients.len(),
        Scale::Linear,
    )?;
    written.push(path);
    let path = dir.join("e2e-first-delta.svg");
    bars(
        &path,
        "Client-added time to first delta, p50 (lower is better)",
        "microseconds (log scale)",
        &first,
        clients.len(),
        Scale::Log,
    )?;
    written.push(path);
    Ok(written)
}

/// Draws `bars` as `target/charts/NAME`, and keeps a copy in docs/charts for a full run.
pub(crate) fn save(
    root: &Path,
    name: &str,
    title: &str,
    unit: &str,
    values: &[(String, f64)],
    series: usize,
    full_run: bool,
) -> Result<PathBuf> {
    let dir = root.join("target/charts");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    bars(&path, title, unit, values, series, Scale::Linear)?;
    if full_run {
        std::fs::create_dir_all(root.join("docs/charts"))?;
        std::fs::copy(&path, root.join("docs/charts").join(name))?;
    }
    Ok(path)
}
