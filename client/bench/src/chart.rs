//! The PNG chart of a comparison: throughput relative to the baseline (top) and latency
//! percentiles (bottom, log scale), per setting and target.
//!
//! Drawn with `plotters` on its bitmap backend. Text is rasterised by `ab_glyph` from DejaVu Sans
//! embedded in the binary (the `dejavu` crate), so the chart looks the same on every machine and
//! needs neither fontconfig nor freetype nor any installed font.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::compare::CompareReport;

/// The family name the embedded font is registered under.
const FONT: &str = "sans-serif";

pub const WIDTH: u32 = 1400;
pub const HEIGHT: u32 = 1000;

/// Target colours, baseline first (grey).
const COLORS: [RGBColor; 6] = [
    RGBColor(128, 128, 128),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// What the chart shows, taken out of a report so it can be tested on its own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChartData {
    pub title: String,
    /// One label per setting, in two lines (e.g. `text p16`, `100 KB`).
    pub settings: Vec<(String, String)>,
    /// Target names, the baseline first.
    pub targets: Vec<String>,
    /// `[setting][target]`: median throughput over the baseline's.
    pub ratios: Vec<Vec<Option<f64>>>,
    /// `[setting][target]`: median p50, p99 and p99.9 in µs.
    pub latencies: Vec<Vec<Option<[f64; 3]>>>,
}

impl ChartData {
    pub fn from_report(r: &CompareReport) -> ChartData {
        let targets: Vec<String> = r.servers.iter().map(|s| s.name.clone()).collect();
        let mut d = ChartData {
            title: format!("riven-bench compare, {} ({} cores)", r.machine.date, r.machine.cores),
            targets: targets.clone(),
            ..ChartData::default()
        };
        for s in &r.settings {
            d.settings
                .push((format!("{} p{}", s.protocol, s.pipeline), human_size(s.value_size)));
            let by_name = |name: &String| s.targets.iter().find(|t| &t.name == name);
            d.ratios
                .push(targets.iter().map(|n| by_name(n).and_then(|t| t.ops_ratio)).collect());
            d.latencies.push(
                targets
                    .iter()
                    .map(|n| {
                        let t = by_name(n)?;
                        Some([t.p50_us?, t.p99_us?, t.p999_us?])
                    })
                    .collect(),
            );
        }
        d
    }
}

/// `100 B`, `100 KB` (KiB, as the flags count them).
pub fn human_size(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KB", n / 1024)
    } else {
        format!("{n} B")
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TrueType file; if registering ever failed, text would be
        // missing from the chart, not the run.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws the chart of `report` into a PNG at `path`.
pub fn render(report: &CompareReport, path: &Path) -> Result<(), String> {
    render_data(&ChartData::from_report(report), path)
}

/// Draws `data` into a PNG at `path`.
pub fn render_data(data: &ChartData, path: &Path) -> Result<(), String> {
    register_font();
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    draw(data, &root).map_err(|e| format!("chart: {e}"))?;
    root.present().map_err(|e| format!("chart {}: {e}", path.display()))
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

fn draw(d: &ChartData, root: &DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult<()> {
    root.fill(&WHITE)?;
    let root = root.titled(&d.title, (FONT, 24))?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2 - 30);
    let n = d.settings.len().max(1);
    let k = d.targets.len().max(1);
    let x_range = -0.5f64..(n as f64 - 0.5);
    // Bars (and latency markers) of one setting share 80 % of its slot, side by side.
    let slot = |target: usize| 0.8 / k as f64 * (target as f64 + 0.5) - 0.4;
    let width = 0.8 / k as f64;

    // Throughput ratios.
    let max_ratio = d.ratios.iter().flatten().flatten().copied().fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&top)
        .caption("throughput / baseline (median of rounds)", (FONT, 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.clone(), 0f64..max_ratio * 1.15)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ops/s ratio")
        .label_style((FONT, 14))
        .draw()?;
    chart.draw_series(LineSeries::new(
        [(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
        BLACK.stroke_width(1),
    ))?;
    for (t, name) in d.targets.iter().enumerate() {
        let color = COLORS[t % COLORS.len()];
        let bars = d.ratios.iter().enumerate().filter_map(|(s, row)| {
            let r = row.get(t).copied().flatten()?;
            let x = s as f64 + slot(t);
            Some(Rectangle::new(
                [(x - width / 2.0, 0.0), (x + width / 2.0, r)],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
        let values = d.ratios.iter().enumerate().filter_map(|(s, row)| {
            let r = row.get(t).copied().flatten()?;
            let style = TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            Some(Text::new(format!("{r:.2}"), (s as f64 + slot(t), r), style))
        });
        chart.draw_series(values)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;
    label_settings(root.clone(), &chart, d)?;

    // Latency percentiles.
    let all: Vec<f64> = d
        .latencies
        .iter()
        .flatten()
        .flatten()
        .flat_map(|l| l.iter().copied())
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::MAX, f64::min).min(1.0e9) / 1.5;
    let hi = all.iter().copied().fold(1.0f64, f64::max) * 1.5;
    let lo = if lo.is_finite() && lo > 0.0 && lo < hi { lo } else { 1.0 };
    let mut chart = ChartBuilder::on(&bottom)
        .caption("latency µs (median of rounds): ● p50  ▲ p99  ✕ p99.9", (FONT, 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("µs")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 14))
        .draw()?;
    for t in 0..d.targets.len() {
        let color = COLORS[t % COLORS.len()];
        let points: Vec<(f64, [f64; 3])> = d
            .latencies
            .iter()
            .enumerate()
            .filter_map(|(s, row)| Some((s as f64 + slot(t), row.get(t).copied().flatten()?)))
            .collect();
        chart.draw_series(points.iter().map(|&(x, [p50, _, p999])| {
            PathElement::new([(x, p50.max(lo)), (x, p999.max(lo))], color.stroke_width(2))
        }))?;
        chart.draw_series(
            points
                .iter()
                .map(|&(x, [p50, ..])| Circle::new((x, p50.max(lo)), 5, color.filled())),
        )?;
        chart.draw_series(
            points
                .iter()
                .map(|&(x, [_, p99, _])| TriangleMarker::new((x, p99.max(lo)), 6, color.filled())),
        )?;
        chart.draw_series(
            points
                .iter()
                .map(|&(x, [.., p999])| Cross::new((x, p999.max(lo)), 5, color.stroke_width(2))),
        )?;
    }
    label_settings(root.clone(), &chart, d)?;
    Ok(())
}

/// Writes each setting's two-line label under its slot of `chart`'s x axis, in pixels of `root`
/// (plotters' own labels would fall on round numbers, not on the settings).
fn label_settings<Y: Ranged<ValueType = f64>>(
    root: DrawingArea<BitMapBackend<'_>, Shift>,
    chart: &ChartContext<'_, BitMapBackend<'_>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    d: &ChartData,
) -> DrawResult<()> {
    let y0 = chart.y_range().start;
    let (rx, ry) = root.get_base_pixel();
    let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, (a, b)) in d.settings.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64, y0));
        root.draw(&Text::new(a.clone(), (x - rx, y - ry + 8), style.clone()))?;
        root.draw(&Text::new(b.clone(), (x - rx, y - ry + 24), style.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ChartData {
        ChartData {
            title: "test chart".into(),
            settings: vec![
                ("text p1".into(), "100 B".into()),
                ("binary p16".into(), "100 KB".into()),
            ],
            targets: vec!["memcached".into(), "riven-node".into(), "riven-node/l1-l2".into()],
            ratios: vec![vec![Some(1.0), Some(0.93), None], vec![Some(1.0), Some(1.2), Some(0.5)]],
            latencies: vec![
                vec![Some([50.0, 120.0, 300.0]), Some([55.0, 130.0, 400.0]), None],
                vec![
                    Some([500.0, 900.0, 2000.0]),
                    Some([450.0, 800.0, 1500.0]),
                    Some([900.0, 5000.0, 9000.0]),
                ],
            ],
        }
    }

    /// Width and height from a PNG's IHDR chunk, after checking the signature.
    fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
        if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
            return None;
        }
        let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Some((be(16), be(20)))
    }

    #[test]
    fn renders_a_png() {
        let path = std::env::temp_dir().join(format!("riven-chart-test-{}.png", std::process::id()));
        render_data(&data(), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(png_size(&bytes), Some((WIDTH, HEIGHT)));
        // A blank canvas compresses to a few KB; bars, markers and text make it much larger.
        assert!(bytes.len() > 20_000, "{} bytes", bytes.len());

        // Nothing to show still makes a chart, not an error.
        let empty = std::env::temp_dir().join(format!("riven-chart-empty-{}.png", std::process::id()));
        render_data(&ChartData::default(), &empty).unwrap();
        let bytes = std::fs::read(&empty).unwrap();
        let _ = std::fs::remove_file(&empty);
        assert!(png_size(&bytes).is_some());
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(100), "100 B");
        assert_eq!(human_size(100 * 1024), "100 KB");
        assert_eq!(human_size(1000), "1000 B");
    }
}
