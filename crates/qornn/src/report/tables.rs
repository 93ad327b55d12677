//! The report's tables: one row per configuration, in Markdown, CSV and LaTeX.

use super::{mean_std, Group, Report};
use crate::error::{Error, Result};
use crate::sweep::csv_field;
use std::path::{Path, PathBuf};

/// One row, as numbers; each format writes it its own way.
struct Row {
    values: Vec<String>,
    seeds: usize,
    unfinished: usize,
    metric_name: &'static str,
    /// Mean and std of the test metric and test loss over the finished seeds.
    metric: Option<(f64, f64)>,
    loss: Option<(f64, f64)>,
    size_bytes: Option<u64>,
    steps: Option<u64>,
    seconds: Option<f64>,
}

fn row(report: &Report, group: &Group) -> Row {
    let finished: Vec<_> = report.finished(group).collect();
    let stat = |values: Vec<f64>| (!values.is_empty()).then(|| mean_std(&values));
    let metric = stat(
        finished
            .iter()
            .filter_map(|s| group.metric.of_summary(s))
            .collect(),
    );
    let loss = stat(finished.iter().map(|s| s.test.loss).collect());
    let seconds = stat(finished.iter().map(|s| s.seconds).collect()).map(|(m, _)| m);
    Row {
        values: group.values.clone(),
        seeds: finished.len(),
        unfinished: group.runs.len() - finished.len(),
        metric_name: group.metric.name(),
        metric,
        loss,
        size_bytes: finished.first().map(|s| s.size_bytes),
        steps: finished.first().map(|s| s.steps),
        seconds,
    }
}

/// `mean ± std` with `digits` decimals, the std left out for one seed.
fn pm(stat: Option<(f64, f64)>, seeds: usize, digits: usize, plus_minus: &str) -> String {
    match stat {
        None => "-".into(),
        Some((mean, _)) if seeds < 2 => format!("{mean:.digits$}"),
        Some((mean, std)) => format!("{mean:.digits$}{plus_minus}{std:.digits$}"),
    }
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or("-".into(), |v| v.to_string())
}

/// Decimals for a metric: accuracy in percent with 1, losses with 4.
fn digits(name: &str) -> usize {
    if name.starts_with("accuracy") || name == "perplexity" {
        1
    } else {
        4
    }
}

pub(super) fn write(report: &Report, out: &Path) -> Result<Vec<PathBuf>> {
    let rows: Vec<Row> = report.groups.iter().map(|g| row(report, g)).collect();
    let files = [
        ("results.md", markdown(report, &rows)),
        ("results.csv", csv(report, &rows)),
        ("results.tex", latex(report, &rows)),
    ];
    files
        .into_iter()
        .map(|(name, text)| {
            let path = out.join(name);
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
            Ok(path)
        })
        .collect()
}

const HEADER: [&str; 8] = [
    "seeds",
    "metric",
    "test metric",
    "test loss",
    "size (bytes)",
    "steps",
    "time (s)",
    "unfinished",
];

fn cells(row: &Row, plus_minus: &str) -> Vec<String> {
    let d = digits(row.metric_name);
    let mut cells = row.values.clone();
    cells.extend([
        row.seeds.to_string(),
        row.metric_name.to_string(),
        pm(row.metric, row.seeds, d, plus_minus),
        pm(row.loss, row.seeds, 4, plus_minus),
        opt(row.size_bytes),
        opt(row.steps),
        opt(row.seconds.map(|s| format!("{s:.0}"))),
        row.unfinished.to_string(),
    ]);
    cells
}

fn header(report: &Report) -> Vec<String> {
    report
        .keys
        .iter()
        .cloned()
        .chain(HEADER.iter().map(|h| h.to_string()))
        .collect()
}

fn markdown(report: &Report, rows: &[Row]) -> String {
    let head = header(report);
    let mut text = format!("| {} |\n", head.join(" | "));
    text.push_str(&format!("|{}\n", "---|".repeat(head.len())));
    for row in rows {
        text.push_str(&format!("| {} |\n", cells(row, " ± ").join(" | ")));
    }
    text.push_str(&format!(
        "\n{} runs; the test metric is the best model's (by validation loss), mean ± sample \
         std over the finished seeds.\n",
        report.runs.len()
    ));
    text
}

fn csv(report: &Report, rows: &[Row]) -> String {
    let mut head: Vec<String> = report.keys.clone();
    head.extend(
        [
            "seeds",
            "metric",
            "test_metric_mean",
            "test_metric_std",
            "test_loss_mean",
            "test_loss_std",
            "size_bytes",
            "steps",
            "seconds_mean",
            "unfinished",
        ]
        .map(String::from),
    );
    let mut text = head.join(",") + "\n";
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    for row in rows {
        let mut fields: Vec<String> = row.values.iter().map(|v| csv_field(v)).collect();
        fields.extend([
            row.seeds.to_string(),
            csv_field(row.metric_name),
            num(row.metric.map(|m| m.0)),
            num(row.metric.map(|m| m.1)),
            num(row.loss.map(|m| m.0)),
            num(row.loss.map(|m| m.1)),
            row.size_bytes.map_or(String::new(), |v| v.to_string()),
            row.steps.map_or(String::new(), |v| v.to_string()),
            num(row.seconds),
            row.unfinished.to_string(),
        ]);
        text.push_str(&(fields.join(",") + "\n"));
    }
    text
}

/// LaTeX special characters in a cell.
fn tex(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn latex(report: &Report, rows: &[Row]) -> String {
    let head = header(report);
    let mut text = format!(
        "% qornn report: {} runs\n\\begin{{tabular}}{{{}}}\n\\hline\n",
        report.runs.len(),
        "l".repeat(report.keys.len()) + &"r".repeat(HEADER.len())
    );
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .map(|c| tex(c).replace('±', "$\\pm$"))
            .collect::<Vec<_>>()
            .join(" & ")
            + " \\\\\n"
    };
    text.push_str(&line(head));
    text.push_str("\\hline\n");
    for row in rows {
        text.push_str(&line(cells(row, " ± ")));
    }
    text.push_str("\\hline\n\\end{tabular}\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_minus_leaves_the_std_out_for_one_seed() {
        assert_eq!(pm(Some((99.5, 0.25)), 3, 1, " ± "), "99.5 ± 0.2");
        assert_eq!(pm(Some((99.5, 0.0)), 1, 1, " ± "), "99.5");
        assert_eq!(pm(None, 0, 1, " ± "), "-");
        assert_eq!(tex("a_b 5%"), "a\\_b 5\\%");
    }
}
