//! An SVG line chart of memory over time, one labelled line per process
//! (`leak top --chart`) or per call stack (`leak trace --chart`): the
//! Grafana panel an SRE would squint at. Pure: takes plain series, writes
//! SVG text.

use std::io::{self, Write};

use plotters::prelude::*;

/// One line of the chart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ChartLine {
    /// Legend text, e.g. `seed (pid 4242): leaking`.
    pub label: String,
    /// `(seconds since start, bytes)`, in time order.
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub kind: LineKind,
}

/// How a line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// In a colour of its own.
    Own,
    /// Thin and dashed, in the colour of the line before it (another
    /// figure of the same process).
    Beside,
    /// A level to watch (a memory limit): dashed, in grey.
    Limit,
}

const MIB: f64 = 1024.0 * 1024.0;
const SIZE: (u32, u32) = (1200, 620);
/// Width of the legend column right of the plot.
const LEGEND_WIDTH: u32 = 330;

/// Line colours: strong, distinct on white (Tableau 10, then darker
/// variants), cycled past 16 lines.
const COLORS: [RGBColor; 16] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 63, 92),
    RGBColor(122, 0, 25),
    RGBColor(0, 100, 0),
    RGBColor(160, 82, 0),
    RGBColor(75, 0, 130),
    RGBColor(0, 0, 0),
];

/// The colour of line `i`.
pub(crate) fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Writes the chart of `lines` under `title` as an SVG document: time on
/// the x axis (seconds), `quantity` (e.g. "resident memory") on the y axis
/// from 0, in MiB (KiB when every line stays under 1 MiB), the legend (one
/// entry per line, in order) to the right of the plot.
pub(crate) fn write(
    title: &str,
    quantity: &str,
    lines: &[ChartLine],
    w: &mut dyn Write,
) -> io::Result<()> {
    let svg = render(title, quantity, lines).map_err(io::Error::other)?;
    w.write_all(svg.as_bytes())
}

/// The y axis unit for values up to `max_bytes`, and its size in bytes:
/// MiB, or KiB for lines that all stay under 1 MiB.
fn y_unit(max_bytes: f64) -> (&'static str, f64) {
    if max_bytes > 0.0 && max_bytes < MIB {
        ("KiB", 1024.0)
    } else {
        ("MiB", MIB)
    }
}

/// Decimals a tick label needs on an axis reaching `max`: whole numbers,
/// unless the ticks would repeat ("1, 1, 2, 2").
fn decimals(max: f64) -> usize {
    if max < 2.0 {
        2
    } else if max < 20.0 {
        1
    } else {
        0
    }
}

/// The SVG text of the chart.
pub(crate) fn render(title: &str, quantity: &str, lines: &[ChartLine]) -> Result<String, String> {
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let max_bytes = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let (unit, scale) = y_unit(max_bytes);
    let y_max = (max_bytes / scale).max(1.0) * 1.08;
    let places = decimals(y_max);
    let x_places = decimals(x_max);
    let y_desc = format!("{quantity} ({unit})");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| e.to_string())?;
        let (plot, legend) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.x_places$}"))
            .y_label_formatter(&|y| format!("{y:.places$}"))
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| e.to_string())?;
        for (line, colour) in lines.iter().zip(colours(lines)) {
            let points = line.points.iter().map(|&(t, b)| (t, b / scale));
            match line.kind {
                LineKind::Own => chart.draw_series(LineSeries::new(points, colour.stroke_width(2))),
                LineKind::Beside | LineKind::Limit => {
                    chart.draw_series(DashedLineSeries::new(points, 6, 4, colour.stroke_width(2)))
                }
            }
            .map_err(|e| e.to_string())?;
            // A process seen once has no line to draw: mark its point.
            if let [(t, b)] = line.points[..] {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (t, b / scale),
                        3,
                        colour.filled(),
                    )))
                    .map_err(|e| e.to_string())?;
            }
        }
        draw_legend(&legend, lines)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Each line's colour: its own, the one before it's, or grey for a limit.
fn colours(lines: &[ChartLine]) -> Vec<RGBColor> {
    let mut own = 0;
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        out.push(match line.kind {
            LineKind::Own => {
                own += 1;
                color(own - 1)
            }
            LineKind::Beside => color(own.saturating_sub(1)),
            LineKind::Limit => RGBColor(110, 110, 110),
        });
    }
    out
}

/// The legend, beside the plot so it never hides a line: each line's
/// colour and label.
fn draw_legend<DB: DrawingBackend>(
    legend: &DrawingArea<DB, plotters::coord::Shift>,
    lines: &[ChartLine],
) -> Result<(), String> {
    for (i, (line, colour)) in lines.iter().zip(colours(lines)).enumerate() {
        let y = 30 + 22 * i as i32;
        let sample = match line.kind {
            LineKind::Own => vec![vec![(4, y), (28, y)]],
            LineKind::Beside | LineKind::Limit => {
                vec![vec![(4, y), (12, y)], vec![(18, y), (28, y)]]
            }
        };
        for segment in sample {
            legend
                .draw(&PathElement::new(segment, colour.stroke_width(3)))
                .map_err(|e| e.to_string())?;
        }
        let label: String = line.label.chars().take(44).collect();
        legend
            .draw(&Text::new(
                label,
                (36, y - 8),
                ("sans-serif", 14).into_font().color(&BLACK),
            ))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(label: &str, f: impl Fn(f64) -> f64) -> ChartLine {
        ChartLine {
            label: label.to_string(),
            points: (0..=30)
                .map(|i| (i as f64 * 2.0, f(i as f64 * 2.0)))
                .collect(),
            kind: LineKind::Own,
        }
    }

    #[test]
    fn one_polyline_per_process_with_labels_and_axes() {
        let lines = vec![
            line("cleak (pid 2): leaking", |t| 2.0 * MIB + MIB * t),
            line("steady (pid 3): steady", |_| 30.0 * MIB),
        ];
        let svg = render("leak top: resident memory", "resident memory", &lines).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        // One polyline per process in its own colour, plus its legend
        // sample (axes and grid are polylines too, in black and grey).
        for i in 0..lines.len() {
            let c = color(i);
            let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
            let polylines = svg
                .split("<polyline")
                .skip(1)
                .filter(|p| p.split("/>").next().unwrap().contains(&stroke))
                .count();
            assert_eq!(polylines, 2, "line {i} ({stroke}): {svg}");
        }
        for text in [
            "cleak (pid 2): leaking",
            "steady (pid 3): steady",
            "time since start (s)",
            "resident memory (MiB)",
            "leak top: resident memory",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    #[test]
    fn a_single_reading_is_a_dot() {
        let lines = vec![ChartLine {
            label: "short (pid 9): steady".into(),
            points: vec![(4.0, 50.0 * MIB)],
            kind: LineKind::Own,
        }];
        let svg = render("one point", "resident memory", &lines).unwrap();
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
    }

    /// A Go process's heap after GC is dashed in its process's colour, a
    /// limit dashed in grey, each with its legend entry.
    #[test]
    fn companion_and_limit_lines_are_dashed() {
        let mut lines = vec![
            line("go (pid 2): leaking", |t| 100.0 * MIB + MIB * t),
            line("go (pid 2): Go heap after GC", |t| {
                40.0 * MIB + MIB * t / 2.0
            }),
            ChartLine {
                label: "memory limit of /leak".into(),
                points: vec![(0.0, 300.0 * MIB), (60.0, 300.0 * MIB)],
                kind: LineKind::Limit,
            },
        ];
        lines[1].kind = LineKind::Beside;
        let c = colours(&lines);
        assert_eq!(c[0], c[1]);
        assert_ne!(c[2], c[0]);
        let svg = render("go", "resident memory", &lines).unwrap();
        assert!(svg.contains("Go heap after GC"));
        assert!(svg.contains("memory limit of /leak"));
        // The plotted range reaches the limit: a tick at 300 (MiB).
        assert!(svg.contains("\n300\n"), "y axis: {svg}");
    }

    #[test]
    fn empty_chart_still_draws_axes() {
        let svg = render("nothing", "resident memory", &[]).unwrap();
        assert!(svg.contains("time since start (s)"));
        assert!(svg.contains("resident memory (MiB)"));
    }

    #[test]
    fn small_values_get_kib_and_ticks_that_do_not_repeat() {
        assert_eq!(y_unit(300.0 * 1024.0), ("KiB", 1024.0));
        assert_eq!(y_unit(3.0 * MIB).0, "MiB");
        assert_eq!(y_unit(0.0).0, "MiB");
        assert_eq!((decimals(1.5), decimals(8.0), decimals(300.0)), (2, 1, 0));
        let lines = vec![line("bytes.Repeat: growing", |t| t * 0.02 * MIB)];
        let svg = render("leak trace", "bytes held", &lines).unwrap();
        assert!(svg.contains("bytes held (MiB)"), "{svg}");
    }
}
