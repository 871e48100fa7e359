//! `homeward-sim`: runs virtual Homeward pendants and hubs against a real MQTT broker.
//! See `--help` and `device-firmware/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use homeward_device_core::device::Role;
use homeward_proto::Encoding;
use homeward_sim::board::BrokerAddr;
use homeward_sim::creds::{self, Credential};
use homeward_sim::fleet::{run_fleet, DeviceSpec, FleetOptions, FleetReport};
use homeward_sim::motion::{self, MotionSource};
use homeward_sim::scenario::Scenario;

/// Fleet simulator for Homeward: many virtual pendants and hubs, each running the real device
/// core (fall detector, cancel window, store and forward) with its own MQTT connection and
/// credentials, against a real broker and server.
///
/// Device time runs on a virtual clock: in real time while a device waits for the network,
/// jumping ahead otherwise, so hours offline pass in seconds. Device times start at 02:00 UTC
/// in the past and never run ahead of the real clock.
#[derive(Parser, Debug)]
#[command(name = "homeward-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a fleet through scenarios until every scenario has ended and every event is
    /// acknowledged end to end by Homeward (exit 1 if that does not happen by --timeout-secs).
    Run(RunArgs),
    /// Create devices with `homeward admin create-device` and write a credentials file.
    CreateDevices(CreateArgs),
    /// List the scenarios.
    Scenarios,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port (MQTT 3.1.1, plain TCP).
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Credentials file: `uid,secret,kind` lines (kind pendant or hub), as written by
    /// `create-devices`. Pendants and hubs are taken from it in order. Without it, devices
    /// connect without a password, as `<prefix>-pendant-NNN` and `<prefix>-hub-NNN`.
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// Number of pendants (default: every pendant in the credentials file, else 1).
    #[arg(long)]
    pendants: Option<usize>,
    /// Number of hubs (default: every hub in the credentials file, else 1).
    #[arg(long)]
    hubs: Option<usize>,
    /// Device id prefix without a credentials file.
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Scenarios, handed out to the devices in turn (each device gets the next one that fits
    /// it: falls need pendants, night-door a hub). Repeat or separate with commas. Default:
    /// all of them.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// Heartbeat period, virtual minutes.
    #[arg(long, default_value_t = 15)]
    heartbeat_min: u32,
    /// Resend an event not acknowledged after this many seconds.
    #[arg(long, default_value_t = 30)]
    resend_secs: u32,
    /// How long `offline-backlog` stays offline, virtual hours.
    #[arg(long, default_value_t = 3.0)]
    offline_hours: f64,
    /// Accelerometer data for the fall scenarios: SisFall recordings (if the folder is found)
    /// or synthetic falls.
    #[arg(long, value_enum, default_value_t = MotionArg::Sisfall)]
    motion: MotionArg,
    /// SisFall folder (default: ../shared/datasets/sisfall from here or from the workspace).
    #[arg(long)]
    sisfall_dir: Option<PathBuf>,
    /// Event encoding.
    #[arg(long, value_enum, default_value_t = EncodingArg::Cbor)]
    encoding: EncodingArg,
    /// Give up after this many real seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Print every event as it is first sent (and resends), with device times.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// Provider organisation (id or name) the devices belong to.
    #[arg(long)]
    org: String,
    /// Pendants to create.
    #[arg(long, default_value_t = 1)]
    pendants: usize,
    /// Hubs to create.
    #[arg(long, default_value_t = 1)]
    hubs: usize,
    /// Device ids are `<prefix>-pendant-NNN` and `<prefix>-hub-NNN`.
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Where to write the credentials.
    #[arg(long, default_value = "sim-credentials.csv")]
    out: PathBuf,
    /// The homeward binary.
    #[arg(long, default_value = "homeward")]
    homeward: PathBuf,
    /// An argument for homeward before `admin` (repeat), e.g. `--homeward-arg=--config
    /// --homeward-arg=homeward.toml`.
    #[arg(long, allow_hyphen_values = true)]
    homeward_arg: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MotionArg {
    Sisfall,
    Synthetic,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EncodingArg {
    Cbor,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("homeward-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Scenarios => {
            for s in Scenario::ALL {
                let doc = s
                    .to_possible_value()
                    .and_then(|v| v.get_help().map(ToString::to_string))
                    .unwrap_or_default();
                println!("{:16} {doc}", s.name());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CreateDevices(args) => {
            let mut out = Vec::new();
            for (role, count) in [(Role::Pendant, args.pendants), (Role::Hub, args.hubs)] {
                for i in 1..=count {
                    let uid = format!("{}-{}-{i:03}", args.prefix, creds::kind_name(role));
                    out.push(creds::create_device(
                        &args.homeward,
                        &args.homeward_arg,
                        &args.org,
                        &uid,
                        role,
                    )?);
                }
            }
            creds::write_file(&args.out, &out)?;
            println!("{} devices written to {}", out.len(), args.out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let report = run_args(args).await?;
            print_report(&report);
            Ok(if report.completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn run_args(args: RunArgs) -> anyhow::Result<FleetReport> {
    let devices = devices(&args)?;
    let scenarios = if args.scenario.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenario.clone()
    };
    let mut specs = Vec::new();
    for (next, (uid, secret, role)) in devices.into_iter().enumerate() {
        let scenario = (0..scenarios.len())
            .map(|k| scenarios[(next + k) % scenarios.len()])
            .find(|s| s.fits(role))
            .with_context(|| format!("no scenario given fits a {role:?} ({uid})"))?;
        specs.push(DeviceSpec {
            uid,
            secret,
            role,
            scenario,
        });
    }
    let motion = match args.motion {
        MotionArg::Synthetic => MotionSource::Synthetic,
        MotionArg::Sisfall => match args
            .sisfall_dir
            .clone()
            .or_else(motion::default_sisfall_dir)
        {
            Some(dir) => MotionSource::SisFall(dir),
            None => {
                eprintln!("no SisFall folder found: using synthetic falls");
                MotionSource::Synthetic
            }
        },
    };
    if !(0.0..=100.0).contains(&args.offline_hours) {
        bail!("--offline-hours must be 0 to 100");
    }
    let mut opts = FleetOptions::new(BrokerAddr {
        host: args.host.clone(),
        port: args.port,
    });
    opts.heartbeat_ms = args.heartbeat_min.max(1) * 60_000;
    opts.resend_ms = args.resend_secs.max(1) * 1000;
    opts.offline_ms = (args.offline_hours * 3_600_000.0) as u64;
    opts.motion = motion;
    opts.encoding = match args.encoding {
        EncodingArg::Cbor => Encoding::Cbor,
        EncodingArg::Json => Encoding::Json,
    };
    opts.timeout = Duration::from_secs(args.timeout_secs);
    opts.verbose = args.verbose;
    run_fleet(specs, opts).await
}

/// (uid, secret, role) for every device to run.
fn devices(args: &RunArgs) -> anyhow::Result<Vec<(String, Option<String>, Role)>> {
    let Some(path) = &args.credentials else {
        let mut out = Vec::new();
        for (role, count) in [
            (Role::Pendant, args.pendants.unwrap_or(1)),
            (Role::Hub, args.hubs.unwrap_or(1)),
        ] {
            for i in 1..=count {
                out.push((
                    format!("{}-{}-{i:03}", args.prefix, creds::kind_name(role)),
                    None,
                    role,
                ));
            }
        }
        return Ok(out);
    };
    let all = creds::read_file(path)?;
    let pick = |role: Role, want: Option<usize>| -> anyhow::Result<Vec<Credential>> {
        let of_role: Vec<Credential> = all.iter().filter(|c| c.role == role).cloned().collect();
        let want = want.unwrap_or(of_role.len());
        if want > of_role.len() {
            bail!(
                "{} has {} {}s, {want} wanted",
                path.display(),
                of_role.len(),
                creds::kind_name(role)
            );
        }
        Ok(of_role.into_iter().take(want).collect())
    };
    let mut chosen = pick(Role::Pendant, args.pendants)?;
    chosen.extend(pick(Role::Hub, args.hubs)?);
    Ok(chosen
        .into_iter()
        .map(|c| (c.uid, Some(c.secret), c.role))
        .collect())
}

fn print_report(report: &FleetReport) {
    println!(
        "{} devices, {:.1} virtual hours from {} in {:.1} s: {}",
        report.devices.len(),
        report.virtual_ms as f64 / 3_600_000.0,
        homeward_sim::fmt_utc(report.start_unix_ms),
        report.real.as_secs_f64(),
        if report.completed {
            "every event acknowledged"
        } else {
            "TIMED OUT with unacknowledged events"
        }
    );
    println!(
        "{:24} {:8} {:16} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7}  kinds",
        "device", "role", "scenario", "events", "resent", "acked", "left", "evicted", "refused"
    );
    for d in &report.devices {
        let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
        for e in &d.events {
            *kinds.entry(e.kind.as_str()).or_default() += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}×{n}")).collect();
        println!(
            "{:24} {:8} {:16} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7}  {}",
            d.uid,
            creds::kind_name(d.role),
            d.scenario.name(),
            d.queue.pushed,
            d.queue.resent,
            d.queue.acked,
            d.unacked,
            d.queue.evicted,
            d.queue.refused,
            kinds.join(" ")
        );
    }
}
