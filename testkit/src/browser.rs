//! A real headless Chromium for the console's tests, driven over WebDriver ([`fantoccini`])
//! through a `chromedriver` of its own on a free port.
//!
//! Debian's `chromium` and `chromium-driver` packages provide both (`scripts/install-deps.sh
//! test` installs them when missing). Nothing is skipped: without them [`Browser::start`]
//! fails, saying how to install them. The driver runs in a process group of its own with the
//! browser it starts, and the whole group is killed when the [`Browser`] is dropped, so a
//! failing test leaves no browser behind. Each browser has a fresh profile in a temporary
//! folder (no cookies, no saved passwords).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const INSTALL: &str = "install Debian's chromium and chromium-driver packages: run \
                       `scripts/install-deps.sh test` (or `apt-get install chromium chromium-driver`)";

/// A headless Chromium and its driver; the window is as wide as asked (headless Chromium makes
/// that the viewport), down to phone widths ([`Browser::resize`]).
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    group: i32,
    _profile: tempfile::TempDir,
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts `chromedriver` on a free port and a headless Chromium session with a window
    /// `width` × `height` CSS pixels ([`Self::resize`]). Panics, saying how to install them, if
    /// either is missing.
    pub async fn start_sized(width: u32, height: u32) -> Browser {
        let driver_bin = on_path(&["chromedriver"])
            .unwrap_or_else(|| panic!("chromedriver is not installed: {INSTALL}"));
        let chromium = on_path(&["chromium", "chromium-browser"])
            .unwrap_or_else(|| panic!("Chromium is not installed: {INSTALL}"));
        let port = crate::free_port().expect("a free port for chromedriver");
        let driver = tokio::process::Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver_bin.display()));
        let group = driver.id().map_or(0, |id| id as i32);
        let profile = tempfile::tempdir().expect("a profile folder for Chromium");
        let url = format!("http://127.0.0.1:{port}");
        let ready = crate::eventually(Duration::from_secs(20), || async {
            let r = reqwest::get(format!("{url}/status")).await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        if ready.is_none() {
            panic!("chromedriver on port {port} did not answer within 20 s");
        }
        let client = connect(&url, &chromium, profile.path(), width, height).await;
        let browser = Browser {
            client,
            driver,
            group,
            _profile: profile,
        };
        browser.resize(width, height).await;
        browser
    }

    /// Makes the window `width` × `height` CSS pixels, and checks that the page sees that
    /// width. Chromium's `--window-size` alone is not enough: headless Chromium keeps a window
    /// at least 500 px wide when it starts, and only a WebDriver resize makes it narrower.
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("making the window {width} × {height}: {e}"));
        let seen = self
            .client
            .execute("return window.innerWidth", vec![])
            .await
            .unwrap_or_else(|e| panic!("asking the window's width: {e}"));
        assert_eq!(seen, json!(width), "the window is {width} px wide");
    }

    /// [`Self::start_sized`] with a desktop window (1280 × 900).
    pub async fn start() -> Browser {
        Self::start_sized(1280, 900).await
    }

    /// Opens `url` and waits for it to load.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Types `value` into the field matching the CSS selector, replacing what was there.
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap_or_else(|e| panic!("{css}: {e}"));
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
    }

    /// Clicks the element matching the CSS selector (a button submits its form).
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Clicks the element matching the CSS selector (a form's button) and waits until the page
    /// it leads to has loaded: the old page's root element is gone and the new one is complete.
    /// Clicking returns as soon as the click is sent, so without this a test could read the
    /// old page.
    pub async fn submit(&self, css: &str) {
        let old = self.find("html").await;
        self.click(css).await;
        let replaced = crate::eventually(Duration::from_secs(15), || async {
            // A stale element: the page was replaced.
            old.tag_name().await.is_err().then_some(())
        })
        .await;
        assert!(
            replaced.is_some(),
            "clicking {css} on {} led nowhere within 15 s",
            self.url().await
        );
        let loaded = crate::eventually(Duration::from_secs(15), || async {
            let state = self
                .client
                .execute("return document.readyState", vec![])
                .await
                .ok()?;
            (state == serde_json::Value::String("complete".into())).then_some(())
        })
        .await;
        assert!(
            loaded.is_some(),
            "the page after clicking {css} did not load"
        );
    }

    /// The element matching the CSS selector; panics with the page's address if none does.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!(
                "no `{css}` on {}: {e}\n{}",
                self.url().await,
                self.client.source().await.unwrap_or_default()
            ),
        }
    }

    /// The visible text of the element matching the CSS selector. A live page may replace the
    /// element between finding it and reading it ("stale element reference"): then it is found
    /// again, a few times.
    pub async fn text(&self, css: &str) -> String {
        let mut tries = 0;
        loop {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(e) if tries < 5 && e.to_string().contains("stale element") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("text of {css}: {e}"),
            }
        }
    }

    /// The current address.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Whether the page open is wider than the window, so that it scrolls sideways (WCAG
    /// 1.4.10, reflow, asks that it does not at 320 CSS px).
    pub async fn scrolls_sideways(&self) -> bool {
        let wider = self
            .client
            .execute(
                "return document.documentElement.scrollWidth > document.documentElement.clientWidth",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("measuring the page: {e}"));
        wider != json!(false)
    }

    /// The elements that reach past the right edge of the window (tag, id or class, and how far
    /// they reach), innermost last: what makes a page scroll sideways.
    pub async fn sideways_culprits(&self) -> String {
        self.client
            .execute(
                "const w = document.documentElement.clientWidth;
                 return Array.from(document.querySelectorAll('body *'))
                   .filter(e => e.getBoundingClientRect().right > w + 1)
                   .slice(-5)
                   .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                             + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '')
                             + ' to ' + Math.round(e.getBoundingClientRect().right) + ' px')
                   .join('; ')",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Whether the page open runs a script it puts in itself (an inline `<script>`): false
    /// under a Content-Security-Policy without `'unsafe-inline'`. Scripts WebDriver runs are not
    /// the page's and run either way.
    pub async fn runs_inline_script(&self) -> bool {
        let ran = self
            .client
            .execute(
                "const s = document.createElement('script');
                 s.textContent = 'window.inlineScriptRan = true';
                 document.head.appendChild(s);
                 return window.inlineScriptRan === true",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("trying an inline script: {e}"));
        ran == json!(true)
    }

    /// Saves a picture of the window as `<name>.png` in the folder `HOMEWARD_SCREENSHOTS`
    /// names, if it names one (how the pictures in `docs/console/` are made); otherwise does
    /// nothing.
    pub async fn picture(&self, name: &str) {
        if let Some(dir) = std::env::var_os("HOMEWARD_SCREENSHOTS") {
            let png = match self.client.screenshot().await {
                Ok(png) => png,
                Err(e) => panic!("a picture of {}: {e}", self.url().await),
            };
            let path = Path::new(&dir).join(format!("{name}.png"));
            std::fs::write(&path, png)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }

    /// Ends the session and the driver (dropping does too, more abruptly).
    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.driver.wait()).await;
    }
}

async fn connect(url: &str, chromium: &Path, profile: &Path, width: u32, height: u32) -> Client {
    let mut caps = Capabilities::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                // Tests run as root in containers, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--password-store=basic",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("starting a headless Chromium through chromedriver: {e}"))
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.group > 0 {
            // The driver and every browser process it started.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
