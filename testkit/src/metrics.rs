//! Values from the Prometheus text of `/metrics`. nextest runs each test in a process of its
//! own, so a test may read the application's metrics as exact values.

/// The value of one series (`name{labels}` exactly as exposed), if it is exposed.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The sum of the samples of `name` over every label set it has (0 when none is exposed).
/// `name` may be a whole series, `name{a="x"}`: then it is that series' value, or 0.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One label set of a Prometheus histogram: its cumulative buckets (upper bound, count), in
/// rising order, the last one `+Inf`.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// Observations recorded.
    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// The `q` quantile, interpolated linearly within its bucket as Prometheus'
    /// `histogram_quantile` does (from 0 in the first bucket). `None` when empty; when it
    /// falls in the `+Inf` bucket, the highest finite bound (the truth is above it).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut below = (0.0, 0.0);
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank {
                if bound.is_infinite() {
                    return Some(below.0);
                }
                let in_bucket = cumulative - below.1;
                if in_bucket <= 0.0 {
                    return Some(bound);
                }
                return Some(below.0 + (bound - below.0) * (rank - below.1) / in_bucket);
            }
            below = (bound, cumulative);
        }
        Some(below.0)
    }
}

/// The histogram `name`'s series, by the value of `label` (series without that label are
/// left out), from the `name_bucket{...,le="..."}` lines.
pub fn histograms_by(text: &str, name: &str, label: &str) -> Vec<(String, Histogram)> {
    let prefix = format!("{name}_bucket{{");
    let wanted = format!("{label}=\"");
    let mut out: Vec<(String, Histogram)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let field = |key: &str| {
            let start = labels.find(key)? + key.len();
            let end = labels[start..].find('"')?;
            Some(&labels[start..start + end])
        };
        let (Some(key), Some(le), Ok(count)) =
            (field(&wanted), field("le=\""), value.trim().parse::<f64>())
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse() {
                Ok(b) => b,
                Err(_) => continue,
            }
        };
        match out.iter_mut().find(|(k, _)| k == key) {
            Some((_, h)) => h.buckets.push((bound, count)),
            None => out.push((
                key.to_string(),
                Histogram {
                    buckets: vec![(bound, count)],
                },
            )),
        }
    }
    for (_, h) in &mut out {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "# TYPE x_total counter\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3\nx_total_more 7\ny 1.5\n";

    #[test]
    fn reads_one_series_and_sums_a_family() {
        assert_eq!(metric_value(TEXT, "y"), Some(1.5));
        assert_eq!(metric_value(TEXT, "x_total{a=\"2\"}"), Some(3.0));
        assert_eq!(metric_value(TEXT, "x_total"), None);
        assert_eq!(metric_sum(TEXT, "x_total"), 5.0, "not x_total_more");
        assert_eq!(metric_sum(TEXT, "x_total{a=\"1\"}"), 2.0);
        assert_eq!(metric_sum(TEXT, "z"), 0.0);
    }

    #[test]
    fn reads_a_histogram_by_label_and_interpolates_its_quantiles() {
        let text = "# TYPE h histogram\n\
            h_bucket{stage=\"a\",le=\"0.01\"} 50\n\
            h_bucket{stage=\"a\",le=\"0.1\"} 90\n\
            h_bucket{stage=\"a\",le=\"+Inf\"} 100\n\
            h_sum{stage=\"a\"} 3\n\
            h_count{stage=\"a\"} 100\n\
            h_bucket{stage=\"b\",le=\"0.01\"} 0\n\
            h_bucket{stage=\"b\",le=\"+Inf\"} 0\n\
            h_bucket{le=\"0.01\"} 7\n";
        let hs = histograms_by(text, "h", "stage");
        assert_eq!(hs.len(), 2);
        let (name, a) = &hs[0];
        assert_eq!(name, "a");
        assert_eq!(a.count(), 100.0);
        // Rank 50 is the top of the first bucket; rank 70 half-way through the second.
        assert!((a.quantile(0.5).unwrap() - 0.01).abs() < 1e-12);
        assert!((a.quantile(0.7).unwrap() - 0.055).abs() < 1e-12);
        // In +Inf: the highest finite bound.
        assert_eq!(a.quantile(0.99), Some(0.1));
        assert_eq!(hs[1].1.quantile(0.5), None, "empty");
    }
}
