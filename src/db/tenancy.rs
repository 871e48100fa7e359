//! Row-level security's half on the connection: which organisations a request-path connection
//! may see.
//!
//! Tenant tables carry a policy (migration 0018) that shows and accepts only rows of the
//! organisations in the session setting `homeward.orgs`. The request path sets it at checkout
//! ([`enter`], through `AppState::db`) from the caller's credential: the caller's own
//! organisation and, for a commissioner, the providers it contracts, the same set
//! `auth::visibility` reads. Every pool resets it when it hands out a connection
//! ([`RESET`]), so a connection nobody set sees no tenant rows at all: forgetting to set it
//! fails closed. The SQL in the handlers still filters by organisation; this is defence in
//! depth against a query that forgets to.

use deadpool_postgres::GenericClient;

/// Run on every connection a pool hands out (deadpool's recycling query): forgets the previous
/// user's organisations, and doubles as the check that the connection is alive.
pub const RESET: &str = "SELECT set_config('homeward.orgs', '', false)";

/// A connection from `pool` (the request path's) limited to what a caller from `organisation`
/// may see: how `AppState::db` takes every request's connection.
pub async fn checkout(
    pool: &deadpool_postgres::Pool,
    organisation: i32,
) -> Result<super::Client, CheckoutError> {
    let client = pool.get().await?;
    enter(&client, organisation).await?;
    Ok(client)
}

/// Why [`checkout`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// Limits `client`'s session to what a caller from `organisation` may see.
pub async fn enter(
    client: &impl GenericClient,
    organisation: i32,
) -> Result<(), tokio_postgres::Error> {
    super::cached::execute(
        client,
        "SELECT set_config('homeward.orgs', array_to_string(homeward_visible_orgs($1), ','), false)",
        &[&organisation],
    )
    .await?;
    Ok(())
}
