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
}
