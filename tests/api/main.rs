//! The server's integration tests: the real application on free ports, against a fresh
//! database cloned from a migrated template, talked to as clients do (HTTP and MQTT).

mod drain;
mod durability;
mod helpers;

mod accessibility;
mod admin_pages;
mod alarms;
mod audit;
mod auth;
mod board;
mod board_benchmark;
mod broker;
mod cli;
mod confirm_backoff;
mod confirmations;
mod confirmations_browser;
mod console;
mod console_kit;
mod credentials;
mod external_brokers;
mod figures;
mod flood;
mod health;
mod ingest;
mod isolation;
mod nul_text;
mod openapi;
mod outcome_pages;
mod outcomes;
mod outcomes_simulation;
mod paging;
mod payment;
mod plan_queues;
mod provider_pages;
mod reproducible;
mod retry;
mod routes;
mod row_security;
mod scaleout;
mod storage;
mod sweep;
mod tls;
mod visits;
mod writer;
