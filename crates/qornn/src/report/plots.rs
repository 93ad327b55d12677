//! The report's figures, drawn as SVG with plotters and rasterised to PNG with resvg
//! (a font is embedded, so no system library or font is needed).

use super::{mean_std, Report};
use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// DejaVu Sans (Bitstream Vera licence, `assets/DejaVuSans-LICENSE`) for the PNG text.
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (960, 600);
/// Tableau's ten colours: distinguishable, also in grey print.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// An axis label: whole numbers without decimals (`20k` from ten thousand on), small
/// ones in scientific notation.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 && (v / 1000.0).fract().abs() < 1e-9 {
        format!("{}k", v / 1000.0)
    } else if a >= 1.0 && v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if a != 0.0 && a < 0.01 {
        format!("{v:.0e}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::config("report", format!("drawing a plot failed: {e}"))
}

/// One line of a plot: its points, its group's colour, and a legend entry for the first
/// line of each group.
struct Line {
    points: Vec<(f64, f64)>,
    colour: usize,
    label: Option<String>,
    dashed: bool,
}

pub(super) fn write(report: &Report, out: &Path) -> Result<Vec<PathBuf>> {
    let mut figures: Vec<(&str, String)> = Vec::new();
    if let Some(svg) = curves(report, false)? {
        figures.push(("curves-loss", svg));
    }
    // One axis holds one metric: runs judged by different metrics (tasks) share only the
    // loss curves; their metrics are in the table, each row with its own.
    let one_metric = report.groups.windows(2).all(|g| g[0].metric == g[1].metric);
    if let Some(svg) = curves(report, true)?.filter(|_| one_metric) {
        figures.push(("curves-metric", svg));
    }
    if let Some(svg) = orthogonality(report)? {
        figures.push(("orthogonality", svg));
    }
    if let Some(svg) = frontier(report)?.filter(|_| one_metric) {
        figures.push(("frontier", svg));
    }
    let mut written = Vec::new();
    for (name, svg) in figures {
        let svg_path = out.join(format!("{name}.svg"));
        std::fs::write(&svg_path, &svg).map_err(|e| Error::io(&svg_path, e))?;
        let png_path = out.join(format!("{name}.png"));
        std::fs::write(&png_path, rasterise(&svg)?).map_err(|e| Error::io(&png_path, e))?;
        written.extend([svg_path, png_path]);
    }
    Ok(written)
}

/// The SVG as PNG bytes.
fn rasterise(svg: &str) -> Result<Vec<u8>> {
    let mut options = resvg::usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_font_data(FONT.to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    options.font_family = "DejaVu Sans".into();
    let tree = resvg::usvg::Tree::from_str(svg, &options).map_err(plot_error)?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| plot_error("empty image"))?;
    resvg::render(&tree, Default::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(plot_error)
}

/// Whether an axis can hold `v`: finite, and small enough that padding the range and
/// placing ticks stay finite (a loss of 2e307 made the log axis's tick search spin forever).
fn plottable(v: f64) -> bool {
    v.is_finite() && v.abs() < 1e300
}

/// The range of `values` padded by 5 % (a unit range around a single value).
fn padded(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|&v| plottable(v))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return None;
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
    Some((lo - pad, hi + pad))
}

/// A line chart of `lines` (log-scaled y when every value is positive and they span more
/// than a factor 20) into `area`.
fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
) -> Result<()> {
    let all = || {
        lines
            .iter()
            .flat_map(|l| l.points.iter())
            .filter(|p| plottable(p.0) && plottable(p.1))
    };
    let (x0, x1) = padded(all().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let (y0, y1) = padded(all().map(|p| p.1)).unwrap_or((0.0, 1.0));
    let min_y = all().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max_y = all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(78);
    macro_rules! draw_on {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .draw()
                .map_err(plot_error)?;
            for line in lines {
                let style = ShapeStyle::from(colour(line.colour)).stroke_width(2);
                let points = line
                    .points
                    .iter()
                    .copied()
                    .filter(|p| plottable(p.0) && plottable(p.1));
                if line.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(points, 8, 6, style))
                        .map_err(plot_error)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(points, style))
                        .map_err(plot_error)?;
                }
            }
        }};
    }
    if min_y > 0.0 && max_y / min_y > 20.0 {
        let chart = builder
            .build_cartesian_2d(
                x0..x1,
                (decade_below(min_y * 0.8)..max_y * 1.25).log_scale(),
            )
            .map_err(plot_error)?;
        draw_on!(chart);
    } else {
        let chart = builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_error)?;
        draw_on!(chart);
    }
    Ok(())
}

/// A legend entry: text, colour, dashed or solid.
type Entry = (String, usize, bool);

const LEGEND_ROW: u32 = 22;

/// A figure of `charts` (drawn into the upper part of `height` pixels) with the legend
/// `entries` in rows underneath, so that it never hides a line.
fn svg_of(
    height: u32,
    entries: &[Entry],
    charts: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<String> {
    let rows = entries.len() as u32;
    let legend_height = if rows == 0 { 0 } else { rows * LEGEND_ROW + 16 };
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (SIZE.0, height + legend_height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (upper, lower) = root.split_vertically(height);
        charts(&upper)?;
        for (row, (text, colour_index, dashed)) in entries.iter().enumerate() {
            let y = 8 + row as i32 * LEGEND_ROW as i32 + LEGEND_ROW as i32 / 2;
            let style = ShapeStyle::from(colour(*colour_index)).stroke_width(2);
            let (x0, x1) = (90, 130);
            if *dashed {
                for x in (x0..x1).step_by(12) {
                    lower
                        .draw(&PathElement::new(vec![(x, y), (x + 7, y)], style))
                        .map_err(plot_error)?;
                }
            } else {
                lower
                    .draw(&PathElement::new(vec![(x0, y), (x1, y)], style))
                    .map_err(plot_error)?;
            }
            lower
                .draw(&Text::new(
                    text.clone(),
                    (x1 + 10, y - 8),
                    ("sans-serif", 15).into_font(),
                ))
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The legend of `lines`: their labelled entries.
fn entries(lines: &[Line]) -> Vec<Entry> {
    lines
        .iter()
        .filter_map(|l| l.label.clone().map(|t| (t, l.colour, l.dashed)))
        .collect()
}

/// One line per run: its points, coloured by group, the group labelled once.
fn per_run_lines(
    report: &Report,
    points_of: impl Fn(&super::RunRecord) -> Vec<(f64, f64)>,
    dashed: bool,
    labelled: bool,
) -> Vec<Line> {
    let mut lines = Vec::new();
    for (g, group) in report.groups.iter().enumerate() {
        for (n, &i) in group.runs.iter().enumerate() {
            let points = points_of(&report.runs[i]);
            if points.is_empty() {
                continue;
            }
            let label = (labelled && n == 0).then(|| group.label(&report.keys));
            lines.push(Line {
                points,
                colour: g,
                label,
                dashed,
            });
        }
    }
    lines
}

/// Validation loss (with the task's memoryless baseline) or metric against the step.
fn curves(report: &Report, metric: bool) -> Result<Option<String>> {
    let mut lines = per_run_lines(
        report,
        |run| {
            let m = super::Metric::of_task(run.config.task);
            run.metrics
                .iter()
                .filter_map(|r| {
                    let y = if metric {
                        m.of_record(r)
                    } else {
                        Some(r.val_loss)
                    };
                    y.map(|y| (r.step as f64, y))
                })
                .collect()
        },
        false,
        true,
    );
    if lines.is_empty()
        || (metric
            && report
                .groups
                .iter()
                .all(|g| g.metric == super::Metric::Loss))
    {
        return Ok(None);
    }
    let last_step = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    if !metric {
        let mut baselines: Vec<f64> = report
            .runs
            .iter()
            .filter_map(|r| r.metrics.first().map(|m| m.baseline_loss))
            .collect();
        baselines.sort_by(f64::total_cmp);
        baselines.dedup();
        for (n, b) in baselines.into_iter().enumerate() {
            lines.push(Line {
                points: vec![(0.0, b), (last_step, b)],
                colour: 7,
                label: (n == 0).then(|| "memoryless baseline".to_string()),
                dashed: true,
            });
        }
    }
    let metric_name = report.groups.first().map_or("metric", |g| g.metric.name());
    let (title, y) = if metric {
        (
            "Validation metric during training",
            format!("validation {metric_name}"),
        )
    } else {
        (
            "Validation loss during training",
            "validation loss".to_string(),
        )
    };
    svg_of(SIZE.1, &entries(&lines), |root| {
        draw_lines(root, title, "training step", &y, &lines)
    })
    .map(Some)
}

/// The extreme singular values of q(W) and ||q(W)q(W)^T - I||_F against the step.
fn orthogonality(report: &Report) -> Result<Option<String>> {
    let series = |f: fn(&crate::train::Orthogonality) -> f64| {
        move |run: &super::RunRecord| -> Vec<(f64, f64)> {
            run.metrics
                .iter()
                .filter_map(|r| r.orthogonality.as_ref().map(|o| (r.step as f64, f(o))))
                .collect()
        }
    };
    let mut sigmas = per_run_lines(report, series(|o| o.quantized_sigma_max), false, false);
    if sigmas.is_empty() {
        return Ok(None);
    }
    sigmas.extend(per_run_lines(
        report,
        series(|o| o.quantized_sigma_min),
        true,
        false,
    ));
    let defects = per_run_lines(report, series(|o| o.quantized_defect), false, true);
    svg_of(2 * SIZE.1 - 100, &entries(&defects), |root| {
        let panels = root.split_evenly((2, 1));
        draw_lines(
            &panels[0],
            "Singular values of q(W): max (solid), min (dashed)",
            "training step",
            "singular value",
            &sigmas,
        )?;
        draw_lines(
            &panels[1],
            "Orthogonality defect of q(W) (legend below)",
            "training step",
            "||q(W) q(W)^T - I||_F",
            &defects,
        )
    })
    .map(Some)
}

/// The power of ten at or below `v`: a log axis that starts there has labelled ticks.
fn decade_below(v: f64) -> f64 {
    10f64.powf(v.log10().floor())
}

/// Size in bytes, mean and std of the test metric, and the bit width's label.
type FrontierPoint = (f64, f64, f64, String);

/// The test metric against the model's size in bytes: one series per configuration but
/// its bit width, each point labelled with its width.
fn frontier(report: &Report) -> Result<Option<String>> {
    let bits_key = report.keys.iter().position(|k| k == "bits");
    let mut families: Vec<(String, Vec<FrontierPoint>)> = Vec::new();
    for group in &report.groups {
        let finished: Vec<_> = report.finished(group).collect();
        let values: Vec<f64> = finished
            .iter()
            .filter_map(|s| group.metric.of_summary(s))
            .collect();
        let Some(size) = finished.first().map(|s| s.size_bytes as f64) else {
            continue;
        };
        if values.is_empty() {
            continue;
        }
        let (mean, std) = mean_std(&values);
        let family: Vec<String> = report
            .keys
            .iter()
            .zip(&group.values)
            .enumerate()
            .filter(|(k, _)| Some(*k) != bits_key)
            .map(|(_, (key, value))| format!("{key}={value}"))
            .collect();
        let family = if family.is_empty() {
            "all runs".to_string()
        } else {
            family.join(" ")
        };
        let bits = finished.first().map_or(String::new(), |s| {
            if s.bits >= crate::config::FULL_PRECISION_BITS {
                "fp".into()
            } else {
                format!("{}b", s.bits)
            }
        });
        match families.iter_mut().find(|(f, _)| *f == family) {
            Some((_, points)) => points.push((size, mean, std, bits)),
            None => families.push((family, vec![(size, mean, std, bits)])),
        }
    }
    if families.is_empty() {
        return Ok(None);
    }
    let metric_name = report.groups[0].metric.name();
    // A size of 0 bytes (a hand-edited summary) has no place on the log axis.
    let sizes = || {
        families
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.0))
            .filter(|&s| s >= 1.0 && plottable(s))
    };
    let (lo, hi) = match (sizes().reduce(f64::min), sizes().reduce(f64::max)) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => (1.0, 10.0),
    };
    let ys = || {
        families
            .iter()
            .flat_map(|(_, p)| p.iter().flat_map(|q| [q.1 - q.2, q.1 + q.2]))
    };
    let (y0, y1) = padded(ys()).unwrap_or((0.0, 1.0));
    let legend: Vec<Entry> = families
        .iter()
        .enumerate()
        .map(|(f, (family, _))| (family.clone(), f, false))
        .collect();
    svg_of(SIZE.1, &legend, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Test metric against model size", ("sans-serif", 22))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(78)
            .build_cartesian_2d((decade_below(lo / 1.3)..hi * 1.5).log_scale(), y0..y1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("model size (bytes, log scale)")
            .y_desc(format!("test {metric_name}"))
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .map_err(plot_error)?;
        for (f, (_, points)) in families.iter_mut().enumerate() {
            points.retain(|p| p.0 >= 1.0 && [p.0, p.1, p.2].iter().all(|&v| plottable(v)));
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let style = ShapeStyle::from(colour(f)).stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), style))
                .map_err(plot_error)?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|p| Circle::new((p.0, p.1), 4, style.filled())),
                )
                .map_err(plot_error)?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|p| PathElement::new(vec![(p.0, p.1 - p.2), (p.0, p.1 + p.2)], style)),
                )
                .map_err(plot_error)?;
            chart
                .draw_series(
                    points.iter().map(|p| {
                        Text::new(p.3.clone(), (p.0, p.1), ("sans-serif", 14).into_font())
                    }),
                )
                .map_err(plot_error)?;
        }
        Ok(())
    })
    .map(Some)
}
