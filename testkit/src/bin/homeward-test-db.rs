//! Manages the PostgreSQL cluster shared by the test suite (see `homeward_testkit::cluster`).
//! `homeward-test-db stop` stops it and removes its files; `homeward-test-db path` prints where it lives.

fn main() -> std::process::ExitCode {
    let arg = std::env::args().nth(1).unwrap_or_default();
    match arg.as_str() {
        "path" => {
            println!("{}", homeward_testkit::cluster::cluster_dir().display());
            std::process::ExitCode::SUCCESS
        }
        "stop" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = rt.map_err(|e| e.to_string()).and_then(|rt| {
                rt.block_on(homeward_testkit::cluster::stop())
                    .map_err(|e| e.to_string())
            });
            match result {
                Ok(true) => println!("test PostgreSQL stopped and removed"),
                Ok(false) => {
                    println!("test PostgreSQL was not running (its files, if any, removed)")
                }
                Err(e) => {
                    eprintln!("homeward-test-db: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
            std::process::ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: homeward-test-db stop|path");
            std::process::ExitCode::from(2)
        }
    }
}
