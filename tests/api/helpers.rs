//! What only this test binary knows: where Cargo built the `homeward` binary. Everything else
//! these tests share comes from the test kit (`homeward_testkit`).

use std::process::{Command, Stdio};
use std::time::Duration;

use homeward_testkit::process::ServeProcess;

/// The `homeward` binary with a clean environment (no `HOMEWARD*` variable, `RUST_LOG=warn`).
pub fn homeward() -> Command {
    homeward_testkit::process::homeward_command(env!("CARGO_BIN_EXE_homeward"))
}

/// `homeward serve` as a process of its own (so it can be killed with SIGKILL) with these
/// environment variables, its broker on `mqtt_port`; returns once it is ready. Dropped, it is
/// killed, so a test that fails half-way leaves no server behind.
pub async fn serve(
    envs: &[(&str, String)],
    mqtt_port: u16,
    data_dir: &std::path::Path,
) -> ServeProcess {
    let mut cmd = homeward();
    cmd.envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            &format!("127.0.0.1:{mqtt_port}"),
            "serve",
        ])
        .stderr(Stdio::inherit());
    let server = ServeProcess::start(cmd, Duration::from_secs(120))
        .await
        .expect("serve printed its address");
    server
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("server ready");
    server
}
