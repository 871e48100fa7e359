//! The automated accessibility check: axe-core (vendored, `vendor/axe-core/`) run in the page
//! open in a [`Browser`], with the WCAG 2.0, 2.1 and 2.2 level A and AA rules.
//!
//! axe is put into the page through WebDriver's script execution, which Chromium runs as the
//! driver's own script, outside the page's Content-Security-Policy: the console's strict
//! policy (no inline script, no script from elsewhere) stays as served, and the check sees the
//! page exactly as a person's browser gets it. Homeward never serves axe; it is compiled into
//! the tests only (this kit's `browser` feature).
//!
//! [`Browser::axe`] returns what axe found; [`Browser::assert_accessible`] fails on any
//! serious or critical finding, printing every finding (minor and moderate ones too) in words
//! with the elements concerned; [`Browser::accessibility_problems`] prints the same and returns
//! the serious ones' report instead of failing.

use std::fmt;

use serde_json::{json, Value};

use crate::browser::Browser;

/// The version of axe-core in `vendor/axe-core/` (its README says how to update it).
pub const AXE_VERSION: &str = "4.14.1";

const AXE_SOURCE: &str = include_str!("../vendor/axe-core/axe.min.js");

/// The rule tags run: WCAG 2.0, 2.1 and 2.2, levels A and AA (axe tags WCAG 2.2's new
/// level A and AA rules `wcag22aa`; there is no separate `wcag22a`).
pub const WCAG_TAGS: &[&str] = &["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

/// How much a finding matters, in axe's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Impact {
    Minor,
    Moderate,
    Serious,
    Critical,
}

impl Impact {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "minor" => Self::Minor,
            "moderate" => Self::Moderate,
            "serious" => Self::Serious,
            "critical" => Self::Critical,
            _ => return None,
        })
    }
}

/// One rule broken on the page.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The rule (`color-contrast`, `label`, ...).
    pub id: String,
    /// The worst impact among its elements; `None` if axe gave none.
    pub impact: Option<Impact>,
    /// What the rule asks, in a sentence.
    pub help: String,
    /// axe's page about the rule.
    pub help_url: String,
    /// The WCAG tags of the rule (`wcag2aa`, `wcag143`, ...).
    pub tags: Vec<String>,
    /// The elements that break it.
    pub nodes: Vec<Node>,
}

/// One element that breaks a rule.
#[derive(Debug, Clone)]
pub struct Node {
    /// A CSS selector for the element (inside frames: one per frame, outermost first).
    pub target: String,
    /// The start of the element's markup.
    pub html: String,
    /// What to fix, in axe's words.
    pub failure_summary: String,
}

impl Violation {
    fn from_json(v: &Value) -> Self {
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Violation {
            id: text(v, "id"),
            impact: v["impact"].as_str().and_then(Impact::parse),
            help: text(v, "help"),
            help_url: text(v, "helpUrl"),
            tags: v["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            nodes: v["nodes"]
                .as_array()
                .map(|nodes| {
                    nodes
                        .iter()
                        .map(|n| Node {
                            target: target(&n["target"]),
                            html: text(n, "html"),
                            failure_summary: text(n, "failureSummary"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Serious or critical: what [`Browser::assert_accessible`] fails on.
    pub fn is_serious(&self) -> bool {
        self.impact >= Some(Impact::Serious)
    }
}

/// axe's target: a list of selectors (one per frame), each a string or, inside shadow DOM, a
/// list of strings.
fn target(v: &Value) -> String {
    match v {
        Value::Array(parts) => parts.iter().map(target).collect::<Vec<_>>().join(" >> "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let impact = self
            .impact
            .map_or("unknown".to_owned(), |i| format!("{i:?}").to_lowercase());
        let wcag: Vec<&str> = self
            .tags
            .iter()
            .filter(|t| t.starts_with("wcag"))
            .map(String::as_str)
            .collect();
        writeln!(
            f,
            "- {} ({impact}; {}): {}\n  {}",
            self.id,
            wcag.join(", "),
            self.help,
            self.help_url
        )?;
        for n in &self.nodes {
            writeln!(f, "  * {}\n    {}", n.target, n.html)?;
            for line in n.failure_summary.lines() {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

/// Runs axe on the document with [`WCAG_TAGS`] and hands its violations, and how many rules
/// passed, to WebDriver's callback (the last argument), or `{error}` if it failed.
const RUN: &str = "const done = arguments[arguments.length - 1];
    axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})
       .then(r => done({violations: r.violations, passed: r.passes.length}))
       .catch(e => done({error: String(e && e.stack || e)}));";

impl Browser {
    /// Runs axe-core's WCAG 2.0/2.1/2.2 A and AA rules on the page now open and returns what
    /// it found (every impact). Puts axe into the page first unless it is there already.
    pub async fn axe(&self) -> Vec<Violation> {
        let url = self.url().await;
        let loaded = self
            .client
            .execute("return typeof window.axe === 'object'", vec![])
            .await
            .unwrap_or_else(|e| panic!("asking {url} for axe: {e}"));
        if loaded != json!(true) {
            let version = self
                .client
                .execute(
                    &format!("{AXE_SOURCE}\n;return window.axe && window.axe.version"),
                    vec![],
                )
                .await
                .unwrap_or_else(|e| panic!("putting axe into {url}: {e}"));
            assert_eq!(
                version,
                json!(AXE_VERSION),
                "axe-core in {url} (a Content-Security-Policy that blocks WebDriver's scripts?)"
            );
        }
        let result = self
            .client
            .execute_async(RUN, vec![json!(WCAG_TAGS)])
            .await
            .unwrap_or_else(|e| panic!("running axe on {url}: {e}"));
        if let Some(error) = result["error"].as_str() {
            panic!("axe failed on {url}: {error}");
        }
        // A check that ran no rule proves nothing (a blank page, a tag list that matched none).
        assert!(
            result["passed"].as_u64() > Some(0),
            "axe found no rule that applies to {url} and passes: is the page empty? {result}"
        );
        result["violations"]
            .as_array()
            .unwrap_or_else(|| panic!("axe's answer has no violations list: {result}"))
            .iter()
            .map(Violation::from_json)
            .collect()
    }

    /// Runs [`Self::axe`] on the page now open (`what` names it) and prints every finding,
    /// whatever its impact, in words. Returns the report if any finding is serious or
    /// critical, for a test that checks several pages before failing.
    pub async fn accessibility_problems(&self, what: &str) -> Option<String> {
        let found = self.axe().await;
        if found.is_empty() {
            return None;
        }
        let url = self.url().await;
        let report: String = found.iter().map(ToString::to_string).collect();
        let serious = found.iter().filter(|v| v.is_serious()).count();
        // Shown with the test's output (nextest prints it for a failing test, or with
        // `--no-capture`).
        eprintln!(
            "axe {AXE_VERSION} on {what} ({url}): {} finding(s), {serious} serious or critical\n{report}",
            found.len()
        );
        (serious > 0).then(|| {
            format!(
                "{what} ({url}): {serious} serious or critical accessibility finding(s):\n{report}"
            )
        })
    }

    /// Asserts that axe finds nothing serious or critical on the page now open (`what` names
    /// it in the message), printing every finding.
    pub async fn assert_accessible(&self, what: &str) {
        if let Some(report) = self.accessibility_problems(what).await {
            panic!("{report}");
        }
    }
}
