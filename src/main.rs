//! The `homeward` binary: parse the command line, load the configuration, start telemetry,
//! run the subcommand. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use homeward::auth::Scope;
use homeward::cli::{AdminCommand, AuditCommand, Cli, Command, Derivation};
use homeward::config::Settings;
use homeward::{auth, db, devices, outcomes, startup::Application, telemetry};

/// mimalloc instead of the system allocator: the ingest path allocates per event (decoded
/// events, rows, queue nodes), and glibc's malloc and free were about 12 % of the server's CPU
/// samples under load, mimalloc's about 7 % (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&cli.overrides()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("homeward: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logs(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("homeward: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("homeward: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate { print_grants: true } => {
            print!("{}", db::roles::operator_sql());
            Ok(())
        }
        Command::Migrate {
            print_grants: false,
        } => {
            if settings.database.url.is_none() {
                settings.ensure_data_dir()?;
            }
            let database = db::Database::open_for_admin(&settings).await?;
            let mut client = database.pool.get().await?;
            let report = db::migrate::run(&mut client).await?;
            drop(client);
            println!(
                "storage: {}; applied {} migration(s){}; {}",
                report.mode.as_str(),
                report.applied.len(),
                if report.applied.is_empty() {
                    String::new()
                } else {
                    format!(": {}", report.applied.join(", "))
                },
                if report.granted {
                    "granted homeward_app and homeward_service their privileges"
                } else {
                    "roles homeward_app and homeward_service missing, nothing granted \
                     (see homeward migrate --print-grants)"
                }
            );
            database.close().await?;
            Ok(())
        }
        Command::Config => {
            println!("{settings:#?}");
            Ok(())
        }
        Command::Admin(cmd) => admin(cmd, settings).await,
        Command::Rebuild { only } => rebuild(only, settings).await,
        Command::Audit(AuditCommand::Verify { chain }) => audit_verify(chain, settings).await,
    }
}

/// `homeward audit verify`: exits non-zero (through the error) naming the first bad row.
async fn audit_verify(chain: Option<i32>, settings: Settings) -> anyhow::Result<()> {
    if settings.database.url.is_none() {
        settings.ensure_data_dir()?;
    }
    let database = db::Database::open_for_admin(&settings).await?;
    let result = async {
        let mut client = database.pool.get().await?;
        db::migrate::run(&mut client).await?;
        // One snapshot: rows written while the check runs are left for the next one.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut shown = std::time::Instant::now();
        let report = homeward::audit::verify(&*tx, chain, |c, n| {
            if shown.elapsed() >= std::time::Duration::from_secs(2) {
                eprintln!("chain {c}: {n} rows checked so far...");
                shown = std::time::Instant::now();
            }
        })
        .await?;
        tx.commit().await?;
        let period = match (report.first, report.last) {
            (Some(f), Some(l)) => format!("from {} to {}", f.to_rfc3339(), l.to_rfc3339()),
            _ => "no rows".into(),
        };
        if let Some(broken) = report.broken {
            anyhow::bail!(
                "audit log does not verify: {broken} ({} rows before it checked)",
                report.rows
            );
        }
        println!(
            "audit log verified: {} rows in {} chains, {period}",
            report.rows, report.chains
        );
        for (c, seq, hash) in &report.heads {
            println!("  chain {c}: head seq {seq} hash {hash}");
        }
        anyhow::Ok(())
    }
    .await;
    database.close().await?;
    result
}

async fn rebuild(only: Option<Derivation>, settings: Settings) -> anyhow::Result<()> {
    if settings.database.url.is_none() {
        settings.ensure_data_dir()?;
    }
    let database = db::Database::open_for_admin(&settings).await?;
    let result = async {
        let mut client = database.pool.get().await?;
        db::migrate::run(&mut client).await?;
        drop(client);
        if only.is_none() || only == Some(Derivation::Visits) {
            eprintln!("rebuilding visits...");
            let r = homeward::evv::rebuild_with(&database.pool, &settings.evv).await?;
            println!("visits: {} visits from {} devices and {} manual entries", r.visits, r.devices, r.manual_entries);
        }
        if only.is_none() || only == Some(Derivation::Alarms) {
            eprintln!("rebuilding alarms...");
            let r = homeward::alarms::rebuild_with(&database.pool, &settings.alarms, chrono::Utc::now()).await?;
            println!(
                "alarms: {} alarms from {} events and {} staff actions ({} actions no longer apply)",
                r.alarms, r.events, r.actions, r.skipped_actions
            );
        }
        anyhow::Ok(())
    }
    .await;
    database.close().await?;
    result
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let mqtt = app.mqtt_endpoint();
    let embedded = if app.settings().mqtt.url.is_none() {
        "embedded"
    } else {
        "external"
    };
    println!(
        "Homeward is running (storage: {}).",
        app.storage_mode().as_str()
    );
    let http = format!(
        "{}://{}",
        if app.https() { "https" } else { "http" },
        app.http_addr()
    );
    println!("  console:      {http}/console/");
    println!("  HTTP API:     {http}/v1/");
    println!("  health:       {http}/healthz  {http}/readyz");
    println!("  metrics:      {http}/metrics");
    println!(
        "  MQTT broker:  {}://{}:{} ({embedded})",
        if mqtt.tls { "mqtts" } else { "mqtt" },
        mqtt.host,
        mqtt.port
    );
    if let Some(addr) = app.mqtt_tls_addr() {
        println!("  MQTT TLS:     mqtts://{addr} (embedded)");
    }
    println!("Press Ctrl-C to stop.");
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn admin(cmd: AdminCommand, settings: Settings) -> anyhow::Result<()> {
    if let AdminCommand::MakeSelfSigned { out, hosts } = &cmd {
        let (cert, key) = homeward::tls::write_self_signed(out, hosts)?;
        println!("certificate: {}", cert.display());
        println!("private key: {}", key.display());
        println!(
            "(self-signed, for trials; clients must trust the certificate itself, e.g. \
             curl --cacert {0}, mosquitto_pub --cafile {0})",
            cert.display()
        );
        println!(
            "set tls.cert_file = \"{}\" and tls.key_file = \"{}\"",
            cert.display(),
            key.display()
        );
        return Ok(());
    }
    if settings.database.url.is_none() {
        settings.ensure_data_dir()?;
    }
    let database = db::Database::open_for_admin(&settings).await?;
    let result = admin_with(cmd, &database, &settings).await;
    database.close().await?;
    result
}

macro_rules! say {
    ($out:expr, $($t:tt)*) => { $out.push(format!($($t)*)) };
}

async fn admin_with(
    cmd: AdminCommand,
    database: &db::Database,
    settings: &Settings,
) -> anyhow::Result<()> {
    let mut client = database.pool.get().await?;
    db::migrate::run(&mut client).await?;
    // One transaction per command with its audit rows; nothing is printed (no token, no
    // secret) until it has committed.
    let tx = client.transaction().await?;
    let mut out = Vec::new();
    admin_in(cmd, &tx, settings, &mut out).await?;
    tx.commit().await?;
    for line in out {
        println!("{line}");
    }
    Ok(())
}

/// Writes an audit row for an operator's change.
async fn audited(
    client: &tokio_postgres::Transaction<'_>,
    org: Option<i32>,
    action: &str,
    object_type: &'static str,
    object_id: impl ToString,
    change: serde_json::Value,
) -> anyhow::Result<()> {
    homeward::audit::record(
        client,
        &homeward::audit::Actor::cli(),
        homeward::audit::Entry::new(org, action, object_type, object_id, change),
    )
    .await?;
    Ok(())
}

/// The organisation of a user, a device (by uid) or a token, for the audit row.
async fn org_of(
    client: &tokio_postgres::Transaction<'_>,
    sql: &str,
    key: &(dyn tokio_postgres::types::ToSql + Sync),
) -> anyhow::Result<Option<i32>> {
    Ok(client.query_opt(sql, &[key]).await?.map(|r| r.get(0)))
}

const USER_ORG: &str = "SELECT organisation_id FROM users WHERE id = $1";
const DEVICE_ORG: &str = "SELECT organisation_id FROM devices WHERE uid = $1";
const TOKEN_ORG: &str =
    "SELECT u.organisation_id FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1";

async fn admin_in(
    cmd: AdminCommand,
    tx: &deadpool_postgres::Transaction<'_>,
    settings: &Settings,
    out: &mut Vec<String>,
) -> anyhow::Result<()> {
    let client: &tokio_postgres::Transaction<'_> = tx;
    match cmd {
        AdminCommand::LinkDevice {
            uid,
            person,
            worker,
        } => link_device(tx, settings, &uid, person, worker, out).await?,
        AdminCommand::CreateOrganisation { name, kind } => {
            let org = auth::create_organisation(client, &name, kind).await?;
            audited(
                client,
                Some(org.id),
                "organisation.create",
                "organisation",
                org.id,
                serde_json::json!({"name": name, "kind": kind.as_str()}),
            )
            .await?;
            say!(
                out,
                "organisation {} `{}` ({})",
                org.id,
                org.name,
                org.kind.as_str()
            );
        }
        AdminCommand::CreateUser {
            org,
            name,
            role,
            email,
            service,
        } => {
            let org = auth::find_organisation(client, &org).await?;
            if let Some(email) = &email {
                // Checked before the user is made, so a taken address leaves nothing behind.
                if auth::password::parse_email(email).is_none() {
                    anyhow::bail!("`{email}` is not an email address");
                }
                let taken = client
                    .query_opt(
                        "SELECT 1 FROM users WHERE lower(email) = lower($1)",
                        &[&email.trim()],
                    )
                    .await?;
                if taken.is_some() {
                    anyhow::bail!("a user with the email address `{email}` already exists");
                }
            }
            let lifetime = token_lifetime(settings, service);
            let (id, token) = auth::create_user_with(client, &org, &name, role, lifetime).await?;
            audited(
                client,
                Some(org.id),
                "user.create",
                "user",
                id,
                serde_json::json!({"name": name, "role": role.as_str(), "email": email,
                                       "token_prefix": token.get(..11), "service": service}),
            )
            .await?;
            say!(
                out,
                "user {id} `{name}` ({}) in `{}`",
                role.as_str(),
                org.name
            );
            say!(out, "token: {token}");
            say!(
                out,
                "(shown once; {}; send it as `Authorization: Bearer <token>`)",
                describe(lifetime)
            );
            if let Some(email) = email {
                auth::password::set_user_email(client, Scope::Any, id, &email).await?;
                print_password_link(client, settings, id, out).await?;
            }
        }
        AdminCommand::PasswordLink { user, email } => {
            if let Some(email) = email {
                auth::password::set_user_email(client, Scope::Any, user, &email).await?;
            }
            print_password_link(client, settings, user, out).await?;
        }
        AdminCommand::CreateToken {
            user,
            label,
            service,
        } => {
            let lifetime = token_lifetime(settings, service);
            let token = auth::create_token(client, user, label.as_deref(), lifetime, None).await?;
            let org = org_of(client, USER_ORG, &user).await?;
            audited(
                client,
                org,
                "token.create",
                "user",
                user,
                serde_json::json!({"prefix": token.get(..11), "label": label, "service": service}),
            )
            .await?;
            say!(out, "token: {token}");
            say!(out, "(shown once; {})", describe(lifetime));
        }
        AdminCommand::ListTokens { user } => {
            let tokens = auth::list_tokens(client, Scope::Any, user, None, None).await?;
            say!(
                out,
                "id\tprefix\tstate\tservice\tcreated\texpires\tlast used\tlabel"
            );
            for t in tokens {
                let state = match (t.active, t.revoked_at) {
                    (true, _) => "active",
                    (false, Some(_)) => "revoked",
                    (false, None) => "expired",
                };
                let when = |d: Option<chrono::DateTime<chrono::Utc>>| {
                    d.map_or("-".to_owned(), |d| d.format("%Y-%m-%d %H:%M").to_string())
                };
                say!(
                    out,
                    "{}\t{}\t{state}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.prefix.as_deref().unwrap_or("-"),
                    if t.service { "yes" } else { "no" },
                    when(Some(t.created_at)),
                    when(t.expires_at),
                    when(t.last_used_at),
                    t.label.as_deref().unwrap_or(""),
                );
            }
        }
        AdminCommand::RevokeToken { id } => {
            let revoked = auth::revoke_token(client, Scope::Any, id, None).await?;
            let org = org_of(client, TOKEN_ORG, &id).await?;
            audited(
                client,
                org,
                "token.revoke",
                "token",
                id,
                serde_json::json!({"changed": revoked}),
            )
            .await?;
            say!(
                out,
                "token {id} {}",
                if revoked {
                    "revoked"
                } else {
                    "was already revoked"
                }
            );
        }
        AdminCommand::DisableUser { user } => set_user(client, user, true, out).await?,
        AdminCommand::EnableUser { user } => set_user(client, user, false, out).await?,
        AdminCommand::DisableDevice { uid } => set_device(client, &uid, true, out).await?,
        AdminCommand::EnableDevice { uid } => set_device(client, &uid, false, out).await?,
        AdminCommand::RotateDeviceSecret { uid } => {
            let secret = devices::rotate_device_secret(client, Scope::Any, &uid).await?;
            let org = org_of(client, DEVICE_ORG, &uid).await?;
            audited(
                client,
                org,
                "device.rotate_secret",
                "device",
                &uid,
                serde_json::json!({"secret": "(new, not logged)"}),
            )
            .await?;
            say!(out, "device `{uid}`: new secret: {secret}");
            say!(out, "(shown once; the old secret no longer works)");
        }
        AdminCommand::CreateContract {
            commissioner,
            provider,
            reference,
            starts_on,
            ends_on,
        } => {
            let c = auth::find_organisation(client, &commissioner).await?;
            let p = auth::find_organisation(client, &provider).await?;
            let id = outcomes::contracts::create_contract(
                client, &c, &p, &reference, starts_on, ends_on,
            )
            .await?;
            audited(
                client,
                Some(c.id),
                "contract.create",
                "contract",
                id,
                serde_json::json!({"provider_id": p.id, "reference": reference,
                                       "starts_on": starts_on, "ends_on": ends_on}),
            )
            .await?;
            say!(
                out,
                "contract {id} `{reference}`: {} commissions {}",
                c.name,
                p.name
            );
        }
        AdminCommand::ExportMosquitto {
            password_file,
            acl_file,
        } => {
            let export = homeward::devices::export::export_mosquitto(
                client,
                settings,
                &password_file,
                &acl_file,
            )
            .await?;
            audited(
                client,
                None,
                "device.export_mosquitto",
                "device",
                "*",
                serde_json::json!({"password_file": password_file, "acl_file": acl_file}),
            )
            .await?;
            for line in export.report() {
                say!(out, "{line}");
            }
        }
        // Written by `admin` before any database is opened.
        AdminCommand::MakeSelfSigned { .. } => {}
        AdminCommand::CreateDevice { org, uid, kind } => {
            let org = auth::find_organisation(client, &org).await?;
            let (id, secret) = devices::create_device(client, &org, &uid, kind).await?;
            audited(
                client,
                Some(org.id),
                "device.create",
                "device",
                &uid,
                serde_json::json!({"id": id, "uid": uid, "kind": kind.to_string()}),
            )
            .await?;
            say!(out, "device {id} `{uid}` ({kind}) in `{}`", org.name);
            say!(out, "secret: {secret}");
            say!(
                out,
                "(shown once; MQTT user name and client id `{uid}`, password the secret)"
            );
        }
    }
    Ok(())
}

async fn print_password_link(
    client: &tokio_postgres::Transaction<'_>,
    settings: &Settings,
    user: i32,
    out: &mut Vec<String>,
) -> anyhow::Result<()> {
    let link = auth::password::issue_password_link(
        client,
        Scope::Any,
        user,
        settings.console.password_link_hours,
        None,
    )
    .await?;
    let org = org_of(client, USER_ORG, &user).await?;
    audited(
        client,
        org,
        "user.password_link",
        "user",
        user,
        serde_json::json!({"expires_at": link.expires_at}),
    )
    .await?;
    say!(
        out,
        "set-password link: {}",
        link.url(&settings.console_url())
    );
    say!(
        out,
        "(shown once; it works once, until {}; the person opens it to set their console \
         password)",
        link.expires_at.format("%Y-%m-%d %H:%M UTC")
    );
    Ok(())
}

async fn set_user(
    client: &tokio_postgres::Transaction<'_>,
    user: i32,
    disable: bool,
    out: &mut Vec<String>,
) -> anyhow::Result<()> {
    let changed = auth::set_user_disabled(client, Scope::Any, user, disable).await?;
    let org = org_of(client, USER_ORG, &user).await?;
    let action = if disable {
        "user.disable"
    } else {
        "user.enable"
    };
    audited(
        client,
        org,
        action,
        "user",
        user,
        serde_json::json!({"after": {"disabled": disable}, "changed": changed}),
    )
    .await?;
    say!(out, "user {user} {}", state_word(disable, changed));
    Ok(())
}

/// `admin link-device`: the API's own checks and audit row, in the command's transaction; a
/// phone's visits are derived again in it.
async fn link_device(
    tx: &deadpool_postgres::Transaction<'_>,
    settings: &Settings,
    uid: &str,
    person: Option<i32>,
    worker: Option<i32>,
    out: &mut Vec<String>,
) -> anyhow::Result<()> {
    let org = org_of(tx, DEVICE_ORG, &uid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no device `{uid}`"))?;
    let body = devices::routes::LinkBody {
        person_id: person,
        worker_id: worker,
    };
    let linked = devices::routes::relink(tx, org, uid, &body).await?;
    homeward::audit::record(
        &**tx,
        &homeward::audit::Actor::cli(),
        linked.audit_entry(org, uid),
    )
    .await?;
    if let Some(phone) = linked.phone_to_derive() {
        homeward::evv::derive::derive_device(tx, &settings.evv, phone).await?;
    }
    let to = match (person, worker) {
        (Some(p), _) => format!("linked to person {p}"),
        (None, Some(w)) => format!("linked to worker {w}"),
        (None, None) => "not linked to anyone".to_owned(),
    };
    let changed = if linked.changed() { "" } else { " (already)" };
    say!(out, "device `{uid}` {to}{changed}");
    Ok(())
}

async fn set_device(
    client: &tokio_postgres::Transaction<'_>,
    uid: &str,
    disable: bool,
    out: &mut Vec<String>,
) -> anyhow::Result<()> {
    let changed = devices::set_device_disabled(client, Scope::Any, uid, disable).await?;
    let org = org_of(client, DEVICE_ORG, &uid).await?;
    let action = if disable {
        "device.disable"
    } else {
        "device.enable"
    };
    audited(
        client,
        org,
        action,
        "device",
        uid,
        serde_json::json!({"after": {"disabled": disable}, "changed": changed}),
    )
    .await?;
    say!(out, "device `{uid}` {}", state_word(disable, changed));
    Ok(())
}

fn token_lifetime(settings: &Settings, service: bool) -> auth::TokenLifetime {
    if service {
        auth::TokenLifetime::Service
    } else {
        auth::TokenLifetime::Days(settings.auth.token_ttl_days)
    }
}

fn describe(lifetime: auth::TokenLifetime) -> String {
    match lifetime {
        auth::TokenLifetime::Days(days) => format!("expires in {days} days"),
        auth::TokenLifetime::Service => "a service token: never expires".to_owned(),
    }
}

fn state_word(disable: bool, changed: bool) -> &'static str {
    match (disable, changed) {
        (true, true) => "disabled",
        (true, false) => "was already disabled",
        (false, true) => "enabled",
        (false, false) => "was not disabled",
    }
}
