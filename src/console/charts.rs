//! Charts drawn on the server as inline SVG: figures with their intervals over quarters, and
//! funnel plots. No script and no chart library: the markup is built here from numbers, every
//! text escaped, and each chart is an image with a title whose figures a table beside it gives
//! in full (the pages put one after every chart), so nothing is known from the drawing alone.
//! Lines differ by dash pattern as well as colour, and points carry their number.

use std::fmt::Write;

use crate::outcomes::funnel::Limits;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 48.0;

/// Text made safe inside SVG markup.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One category's figure: a value, its interval, or neither (and why, in words).
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    pub interval: Option<[f64; 2]>,
    /// Shown instead of a point when there is no value ("too few", "no data").
    pub missing: &'static str,
}

/// A tidy upper end for an axis that must show `max`: 1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6 or 8 times
/// a power of ten (each divides into four round ticks).
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 1.2, 1.6, 2.0, 2.4, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|v| *v >= max * 1.000_001)
        .unwrap_or(10.0 * power)
}

/// A number on an axis or a label: no more decimals than it needs.
pub fn number(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn open_svg(out: &mut String, id: &str, title: &str) {
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-labelledby=\"{id}-title\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"{id}-title\">{}</title>",
        esc(title)
    );
}

/// Horizontal grid lines and their labels for `0..=top` (or `bottom..=top`).
fn y_axis(out: &mut String, bottom: f64, top: f64, y: &impl Fn(f64) -> f64, unit: &str) {
    for i in 0..=4 {
        let v = bottom + (top - bottom) * f64::from(i) / 4.0;
        let py = y(v);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/>\
             <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            number(v),
            esc(unit)
        );
    }
}

/// Figures over categories (quarters), each a point with its interval as a line with caps.
/// `unit` follows each axis label ("%" or ""). Values are drawn as given (multiply first).
pub fn intervals(id: &str, title: &str, unit: &str, bars: &[Bar]) -> String {
    let top = nice_ceiling(
        bars.iter()
            .filter_map(|b| b.interval.map(|i| i[1]).or(b.value))
            .fold(0.0, f64::max),
    );
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));
    let step = (WIDTH - LEFT - RIGHT) / bars.len().max(1) as f64;
    let mut out = String::new();
    open_svg(&mut out, id, title);
    y_axis(&mut out, 0.0, top, &y, unit);
    for (i, b) in bars.iter().enumerate() {
        let x = LEFT + step * (i as f64 + 0.5);
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            HEIGHT - BOTTOM + 20.0,
            esc(&b.label)
        );
        if let Some([lo, hi]) = b.interval {
            let (ylo, yhi) = (y(lo), y(hi));
            let _ = write!(
                out,
                "<line class=\"interval\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{ylo:.1}\" y2=\"{yhi:.1}\"/>\
                 <line class=\"interval\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ylo:.1}\" y2=\"{ylo:.1}\"/>\
                 <line class=\"interval\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{yhi:.1}\" y2=\"{yhi:.1}\"/>",
                x - 8.0,
                x + 8.0,
                x - 8.0,
                x + 8.0
            );
        }
        match b.value {
            Some(v) => {
                let _ = write!(
                    out,
                    "<circle class=\"point\" cx=\"{x:.1}\" cy=\"{:.1}\" r=\"5\"/>\
                     <text class=\"value\" x=\"{:.1}\" y=\"{:.1}\">{}{}</text>",
                    y(v),
                    x + 12.0,
                    y(v) + 4.0,
                    number(v),
                    esc(unit)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<text class=\"value\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    TOP + plot_h / 2.0,
                    esc(b.missing)
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

/// A provider's point on a funnel plot, in the shown unit.
pub struct FunnelPoint {
    /// The number shown at the point (its row in the table beside the plot).
    pub number: usize,
    pub denominator: f64,
    pub value: f64,
}

/// What a funnel plot shows.
pub struct FunnelChart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    /// What the denominator counts.
    pub x_label: &'a str,
    /// "%" or "".
    pub unit: &'a str,
    /// What values (and limits) are multiplied by to be shown.
    pub per: f64,
    pub target: f64,
    pub curve: &'a [Limits],
    pub points: &'a [FunnelPoint],
}

/// A funnel plot: the target (dashed), 95% limits (solid), 99.8% limits (dotted) along the
/// denominator, and each provider as a numbered point. Values are multiplied by `per`.
pub fn funnel(chart: &FunnelChart<'_>) -> String {
    let FunnelChart {
        id,
        title,
        x_label,
        unit,
        per,
        target,
        curve,
        points,
    } = *chart;
    let x_max = nice_ceiling(
        curve
            .iter()
            .map(|l| l.denominator)
            .chain(points.iter().map(|p| p.denominator))
            .fold(0.0, f64::max),
    );
    let y_values = curve
        .iter()
        .flat_map(|l| [l.lower_998, l.upper_998])
        .map(|v| v * per)
        .chain(points.iter().map(|p| p.value))
        .chain([target * per]);
    let (lo, hi) = y_values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let y_top = nice_ceiling(hi);
    let y_bottom = if lo.is_finite() && lo > y_top / 2.0 {
        (lo / (y_top / 10.0)).floor() * (y_top / 10.0)
    } else {
        0.0
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |d: f64| LEFT + plot_w * (d / x_max).clamp(0.0, 1.0);
    let y = |v: f64| TOP + plot_h * (1.0 - ((v - y_bottom) / (y_top - y_bottom)).clamp(0.0, 1.0));
    let mut out = String::new();
    open_svg(&mut out, id, title);
    y_axis(&mut out, y_bottom, y_top, &y, unit);
    for i in 0..=4 {
        let d = x_max * f64::from(i) / 4.0;
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(d),
            HEIGHT - BOTTOM + 18.0,
            number(d)
        );
    }
    let _ = write!(
        out,
        "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0,
        esc(x_label)
    );
    let line = |out: &mut String, class: &str, pick: &dyn Fn(&Limits) -> f64| {
        let pts: Vec<String> = curve
            .iter()
            .map(|l| format!("{:.1},{:.1}", x(l.denominator), y(pick(l) * per)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"{class}\" fill=\"none\" points=\"{}\"/>",
            pts.join(" ")
        );
    };
    line(&mut out, "limit95", &|l| l.lower_95);
    line(&mut out, "limit95", &|l| l.upper_95);
    line(&mut out, "limit998", &|l| l.lower_998);
    line(&mut out, "limit998", &|l| l.upper_998);
    let _ = write!(
        out,
        "<line class=\"target\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        WIDTH - RIGHT,
        y(target * per),
        y(target * per)
    );
    for p in points {
        let (px, py) = (x(p.denominator), y(p.value));
        let _ = write!(
            out,
            "<circle class=\"point\" cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"6\"/>\
             <text class=\"value\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            px + 9.0,
            py - 6.0,
            p.number
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.83), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.2);
        assert_eq!(nice_ceiling(2.2), 2.4);
        assert_eq!(nice_ceiling(37.0), 40.0);
        assert_eq!(nice_ceiling(74.0), 80.0);
        assert_eq!(nice_ceiling(1012.0), 1200.0);
        assert_eq!(number(2.50), "2.5");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(150.0), "150");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn text_is_escaped_and_missing_figures_say_why() {
        let svg = intervals(
            "c",
            "Falls <per> 1,000 days",
            "",
            &[
                Bar {
                    label: "Apr–Jun & more".into(),
                    value: Some(2.0),
                    interval: Some([1.0, 3.0]),
                    missing: "",
                },
                Bar {
                    label: "Jul–Sep".into(),
                    value: None,
                    interval: None,
                    missing: "too few",
                },
            ],
        );
        assert!(svg.contains("Falls &lt;per&gt; 1,000 days"));
        assert!(svg.contains("Apr–Jun &amp; more"));
        assert!(svg.contains(">too few<"));
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn a_funnel_draws_four_limits_a_target_and_numbered_points() {
        let curve: Vec<Limits> = (1..=10)
            .map(|i| Limits {
                denominator: f64::from(i) * 10.0,
                lower_95: 0.2,
                upper_95: 0.4,
                lower_998: 0.1,
                upper_998: 0.5,
            })
            .collect();
        let svg = funnel(&FunnelChart {
            id: "f",
            title: "Share <x>",
            x_label: "people",
            unit: "%",
            per: 100.0,
            target: 0.3,
            curve: &curve,
            points: &[FunnelPoint {
                number: 1,
                denominator: 50.0,
                value: 30.0,
            }],
        });
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("class=\"target\"").count(), 1);
        assert!(svg.contains(">1</text>"));
        assert!(svg.contains("Share &lt;x&gt;"));
        assert!(!svg.contains("NaN"));
    }
}
